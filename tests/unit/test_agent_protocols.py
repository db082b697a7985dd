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


def test_v1_columns_by_transpose_equal_rows_made_one_by_one():
    # The sink's fast path (equal-width lists transposed at once) against a dict per instance, on random bodies:
    # ragged rows, dicts and scalars among lists, fewer or more predictions than instances, a feature named
    # "prediction", names that fit or do not.
    import random

    rng = random.Random(11)
    rows_of_one_width = 0
    for _ in range(500):
        width = rng.randrange(0, 4)
        instances = []
        for _ in range(rng.randrange(1, 6)):
            shape = rng.random()
            if shape < 0.8:
                instances.append([rng.choice([rng.random(), None, 3]) for _ in range(width)])
            elif shape < 0.9:
                instances.append([1.0] * rng.randrange(0, 4))
            else:
                instances.append(rng.choice([{"a": 1}, 7, "x"]))
        columns = rng.choice([None, ["a", "b", "c"][:width], ["prediction", "x", "y"][:width], ["q"]])
        response = rng.choice([None, {"predictions": [rng.random() for _ in range(rng.randrange(0, 7))]}])
        predictions = response["predictions"] if response else None
        one_by_one = protocols.rows_of(protocols.table_of(protocols.v1_rows_one_by_one(instances, predictions,
                                                                                        columns)))
        assert protocols.v1_rows({"instances": instances}, response, columns) == one_by_one, (
            instances, response, columns)
        rows_of_one_width += all(isinstance(i, list) and len(i) == width for i in instances)
    assert rows_of_one_width > 150  # the bodies the fast path takes are among them


def test_v2_columns_by_transpose_equal_the_ragged_way():
    request = {"inputs": [{"name": "x", "shape": [3, 2], "data": [[1, 2], [3, 4], [5, 6]]}]}
    ragged = {"inputs": [{"name": "x", "shape": [3, 2], "data": [[1, 2], [3], [5, 6, 7]]}]}
    response = {"outputs": [{"name": "y", "shape": [2], "data": [0, 1]}]}  # one answer short
    assert protocols.v2_rows(request, response) == [
        {"x_0": 1, "x_1": 2, "output_y": 0}, {"x_0": 3, "x_1": 4, "output_y": 1},
        {"x_0": 5, "x_1": 6, "output_y": None}]
    assert protocols.v2_rows(ragged, response) == [
        {"x_0": 1, "x_1": 2, "output_y": 0}, {"x_0": 3, "x_1": None, "output_y": 1},
        {"x_0": 5, "x_1": 6, "output_y": None}]

