"""Rows from inference bodies (agent/protocols.py): plain dicts in, plain rows out."""

import json

import pytest

from mlops_operator.agent import protocols


def test_detect_by_method_and_path():
    assert protocols.detect("POST", "/v2/models/iris/infer") == "v2"
    assert protocols.detect("POST", "/v2/models/iris/versions/3/infer") == "v2"
    assert protocols.detect("POST", "/v1/models/iris:predict") == "v1"
    assert protocols.detect("POST", "/v1/chat/completions") == "openai"
    assert protocols.detect("POST", "/openai/v1/completions") == "openai"
    assert protocols.detect("GET", "/v2/models/iris/infer") is None
    assert protocols.detect("POST", "/v2/health/ready") is None


def test_v2_one_2d_input_gets_a_column_per_feature_named_from_columns():
    request = {"inputs": [{"name": "input-0", "shape": [2, 3], "datatype": "FP64",
                           "data": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]}]}
    response = {"outputs": [{"name": "predict", "shape": [2], "datatype": "INT64", "data": [0, 1]}]}
    assert protocols.v2_rows(request, response, ["a", "b", "c"]) == [
        {"a": 1.0, "b": 2.0, "c": 3.0, "output_predict": 0},
        {"a": 4.0, "b": 5.0, "c": 6.0, "output_predict": 1},
    ]
    # Without names, or with names of another width: <input>_<i>.
    assert list(protocols.v2_rows(request, response, ["a"])[0]) == ["input-0_0", "input-0_1", "input-0_2",
                                                                     "output_predict"]


def test_v2_flat_data_is_cut_by_its_shape():
    request = {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
    response = {"outputs": [{"name": "y", "shape": [2, 1], "datatype": "FP32", "data": [0.5, 0.7]}]}
    assert protocols.v2_rows(request, response) == [{"x_0": 1, "x_1": 2, "output_y": 0.5},
                                                      {"x_0": 3, "x_1": 4, "output_y": 0.7}]


def test_v2_named_inputs_one_value_each():
    request = {"inputs": [{"name": "age", "shape": [2], "data": [30, 40]},
                          {"name": "city", "shape": [2, 1], "datatype": "BYTES", "data": [["x"], ["y"]]}]}
    assert protocols.v2_rows(request, None) == [{"age": 30, "city": "x"}, {"age": 40, "city": "y"}]


def test_v1_instances_as_lists_dicts_and_scalars():
    response = {"predictions": [1, 0]}
    assert protocols.v1_rows({"instances": [[1, 2], [3, 4]]}, response, ["a", "b"]) == [
        {"a": 1, "b": 2, "prediction": 1}, {"a": 3, "b": 4, "prediction": 0}]
    assert protocols.v1_rows({"instances": [{"a": 1}, {"a": 2}]}, response) == [
        {"a": 1, "prediction": 1}, {"a": 2, "prediction": 0}]
    assert protocols.v1_rows({"instances": [7]}, {"predictions": []}) == [{"f0": 7}]


def test_openai_chat_logs_counts_and_finish_reason_and_text_only_when_asked():
    request = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    response = {"model": "m-1", "choices": [{"message": {"role": "assistant", "content": "hello"},
                                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1}}
    row = protocols.openai_row(request, response)
    assert row == {"model": "m-1", "prompt_tokens": 3, "completion_tokens": 1, "finish_reason": "stop",
                   "stream": False}
    with_text = protocols.openai_row(request, response, log_payloads=True)
    assert with_text["prompt"] == "user: hi" and with_text["completion"] == "hello"


def test_openai_stream_is_folded_from_its_events():
    events = [{"model": "m", "choices": [{"delta": {"content": "Hel"}, "finish_reason": None}]},
              {"model": "m", "choices": [{"delta": {"content": "lo"}, "finish_reason": "length"}]},
              {"model": "m", "choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 2}}]
    body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    request = json.dumps({"model": "m", "prompt": "say hello", "stream": True}).encode()
    assert protocols.rows("openai", request, body, streamed=True, log_payloads=True) == [
        {"model": "m", "prompt_tokens": 2, "completion_tokens": 2, "finish_reason": "length", "stream": True,
         "prompt": "say hello", "completion": "Hello"}]
    assert "completion" not in protocols.rows("openai", request, body, streamed=True)[0]


def test_bodies_that_are_not_the_protocol_still_give_one_row():
    assert protocols.rows("v2", b"not json", b"") == [{}]
    assert protocols.rows("v1", b'{"instances": 3}', b"[]") == [{}]
    assert protocols.rows("openai", b"", b"<html>") == [{"model": None, "prompt_tokens": None,
                                                         "completion_tokens": None, "finish_reason": None,
                                                         "stream": False}]


def test_feedback_items_and_errors_name_the_field():
    assert protocols.feedback_rows({"request_id": "a", "label": 1}) == [{"request_id": "a", "label": 1}]
    assert protocols.feedback_rows({"feedback": [{"request_id": "a", "label": 1, "x": 2}]}) == [
        {"request_id": "a", "label": 1}]
    with pytest.raises(ValueError, match=r"feedback\[1\]\.request_id"):
        protocols.feedback_rows({"feedback": [{"request_id": "a", "label": 1}, {"label": 2}]})
    with pytest.raises(ValueError, match=r"feedback\[0\]\.label"):
        protocols.feedback_rows({"request_id": "a"})
    with pytest.raises(ValueError, match="non-empty list"):
        protocols.feedback_rows({"feedback": []})
