"""Server-side apply bodies are YAML to the API server: every string must come back as it was sent."""

from __future__ import annotations

import json

import pytest
import yaml

from mlops_operator.k8s.client import yaml_safe_json

ODD = ["plain", "é ñ 中文", "\U0001F680 rocket", "a\U0010FFFFb", "\x85 NEL", "\u2028\u2029", "\x7f\x80\x9f",
       "\x00\x01\t\n\r", "\ufeff\ufffe\uffff", "'\"\\ #: - {a: b}", ""]


@pytest.mark.parametrize("value", ODD)
def test_strings_survive_a_yaml_1_1_reader_and_a_json_reader(value):
    body = {"metadata": {"annotations": {"k": value}}, "args": [value, 1, None, True]}
    text = yaml_safe_json(body)
    assert json.loads(text) == body
    assert yaml.safe_load(text) == body  # PyYAML reads YAML 1.1, as go-yaml does


def test_plain_json_is_not_enough_for_characters_beyond_the_bmp():
    # json.dumps writes an emoji as a surrogate pair, which a YAML reader does not join again (go-yaml refuses it)
    assert yaml.safe_load(json.dumps({"k": "\U0001F680"})) != {"k": "\U0001F680"}
    assert "\U0001F680" in yaml_safe_json({"k": "\U0001F680"})
