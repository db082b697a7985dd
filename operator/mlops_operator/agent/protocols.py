"""Rows from inference request and response bodies: Open Inference Protocol v2, KServe v1, OpenAI-compatible.

Pure functions over parsed JSON (dicts and lists): no I/O, no clock. The sink calls them off the request path,
on sampled requests only. A body that does not parse or does not fit its protocol yields no columns, never an
error: logging must not fail what the model served.
"""

from __future__ import annotations

import json
from typing import Any

V2 = "v2"
V1 = "v1"
OPENAI = "openai"

Row = dict[str, Any]


def detect(method: str, path: str) -> str | None:
    """The protocol of an inference call by method and path; None for anything else (health, metadata...)."""
    if method != "POST":
        return None
    if path.startswith("/v2/models/") and path.endswith("/infer"):
        return V2
    if path.startswith("/v1/models/") and path.endswith(":predict"):
        return V1
    if path.endswith("/chat/completions") or path.endswith("/completions"):
        return OPENAI
    return None


def loads(body: bytes) -> Any:
    """Parsed JSON, or None when the body is empty or not JSON."""
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def rows(protocol: str, request: bytes, response: bytes, *, columns: list[str] | None = None,
         log_payloads: bool = False, streamed: bool = False) -> list[Row]:
    """The rows one call contributes (at least one, so every sampled call is counted): its own columns only;
    the caller adds timestamp, request id, revision and the rest."""
    req = loads(request)
    if protocol == OPENAI:
        resp = sse_summary(response, log_payloads) if streamed else loads(response)
        return [openai_row(req, resp, log_payloads=log_payloads, streamed=streamed)]
    resp = loads(response)
    found = v2_rows(req, resp, columns) if protocol == V2 else v1_rows(req, resp, columns)
    return found or [{}]


def _shape_rows(data: Any, shape: Any) -> list[Any]:
    """A tensor's data as a list of rows: nested lists as they are, flat (row-major) data cut by its shape."""
    if not isinstance(data, list):
        return []
    if data and isinstance(data[0], list):
        return data
    if isinstance(shape, list) and len(shape) >= 2 and isinstance(shape[0], int) and shape[0] > 0:
        width = len(data) // shape[0]
        if width * shape[0] == len(data) and width > 0:
            if width == 1:
                return list(data)
            return [data[i * width:(i + 1) * width] for i in range(shape[0])]
    return list(data)


def _tensor_columns(tensors: Any, columns: list[str] | None, prefix: str) -> tuple[dict[str, list[Any]], int]:
    """Columns of a v2 `inputs` or `outputs` list: one per named tensor of one value per row, one per feature of
    a single 2-D tensor (names from `columns`, else `<tensor>_<i>`)."""
    out: dict[str, list[Any]] = {}
    if not isinstance(tensors, list):
        return out, 0
    tensors = [t for t in tensors if isinstance(t, dict) and isinstance(t.get("name"), str)]
    n = 0
    for tensor in tensors:
        values = _shape_rows(tensor.get("data"), tensor.get("shape"))
        n = max(n, len(values))
        name = prefix + tensor["name"]
        if values and isinstance(values[0], list):
            width = len(values[0])
            if len(tensors) == 1 and width > 1:
                names = columns if columns and len(columns) == width else [f"{name}_{i}" for i in range(width)]
                for i, col in enumerate(names):
                    out[col] = [v[i] if isinstance(v, list) and i < len(v) else None for v in values]
                continue
            if width == 1:
                values = [v[0] if isinstance(v, list) and v else None for v in values]
        out[name] = values
    return out, n


def _zip_columns(*parts: tuple[dict[str, list[Any]], int]) -> list[Row]:
    n = max((count for _, count in parts), default=0)
    found: list[Row] = [{} for _ in range(n)]
    for cols, _ in parts:
        for name, values in cols.items():
            for i, value in enumerate(values[:n]):
                found[i][name] = value
    return found


def v2_rows(request: Any, response: Any, columns: list[str] | None = None) -> list[Row]:
    """Open Inference Protocol v2: one row per element of the first dimension. Inputs keep their names (or the
    feature names of one 2-D input); outputs are prefixed `output_` so they never collide with a feature."""
    inputs = _tensor_columns(request.get("inputs") if isinstance(request, dict) else None, columns, "")
    outputs = _tensor_columns(response.get("outputs") if isinstance(response, dict) else None, None, "output_")
    return _zip_columns(inputs, outputs)


def v1_rows(request: Any, response: Any, columns: list[str] | None = None) -> list[Row]:
    """KServe v1: `instances` (lists of features, dicts of named features, or scalars) and `predictions`."""
    instances = request.get("instances") if isinstance(request, dict) else None
    predictions = response.get("predictions") if isinstance(response, dict) else None
    found: list[Row] = []
    for i, instance in enumerate(instances if isinstance(instances, list) else []):
        if isinstance(instance, dict):
            row = dict(instance)
        elif isinstance(instance, list):
            names = columns if columns and len(columns) == len(instance) else [f"f{j}" for j in range(len(instance))]
            row = dict(zip(names, instance))
        else:
            row = {(columns[0] if columns and len(columns) == 1 else "f0"): instance}
        if isinstance(predictions, list) and i < len(predictions):
            row["prediction"] = predictions[i]
        found.append(row)
    return found


def _text_of_messages(messages: Any) -> str | None:
    if not isinstance(messages, list):
        return None
    parts = []
    for message in messages:
        if isinstance(message, dict):
            content = message.get("content")
            if isinstance(content, list):  # content parts: keep the text ones
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            parts.append(f"{message.get('role', '')}: {content if isinstance(content, str) else ''}")
    return "\n".join(parts)


def openai_row(request: Any, response: Any, *, log_payloads: bool = False, streamed: bool = False) -> Row:
    """OpenAI-compatible chat/completions: model, token counts, finish reason; prompt and completion text only
    when `log_payloads` is set."""
    req = request if isinstance(request, dict) else {}
    resp = response if isinstance(response, dict) else {}
    usage: dict[str, Any] = resp["usage"] if isinstance(resp.get("usage"), dict) else {}
    choices = resp.get("choices") if isinstance(resp.get("choices"), list) else []
    first = choices[0] if choices and isinstance(choices[0], dict) else {}
    row: Row = {
        "model": resp.get("model") or req.get("model"),
        "prompt_tokens": usage.get("prompt_tokens"),
        "completion_tokens": usage.get("completion_tokens"),
        "finish_reason": first.get("finish_reason"),
        "stream": streamed,
    }
    if log_payloads:
        prompt = _text_of_messages(req.get("messages")) if "messages" in req else req.get("prompt")
        row["prompt"] = prompt if isinstance(prompt, str) else (json.dumps(prompt) if prompt is not None else None)
        message = first.get("message")
        text = message.get("content") if isinstance(message, dict) else first.get("text")
        row["completion"] = text if isinstance(text, str) else None
    return row


def sse_summary(body: bytes, keep_text: bool) -> dict[str, Any]:
    """A streamed OpenAI answer (server-sent events) folded into the shape of an unstreamed one: model, usage
    (present when the client asked for `stream_options.include_usage`), the last finish reason, and the text."""
    model = None
    usage: dict[str, Any] | None = None
    finish = None
    text: list[str] = []
    for line in body.splitlines():
        if not line.startswith(b"data:"):
            continue
        event = loads(line[5:].strip())
        if not isinstance(event, dict):
            continue
        model = event.get("model") or model
        if isinstance(event.get("usage"), dict):
            usage = event["usage"]
        for choice in event.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            finish = choice.get("finish_reason") or finish
            if keep_text:
                delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
                piece = delta.get("content") if delta else choice.get("text")
                if isinstance(piece, str):
                    text.append(piece)
    choice_out: dict[str, Any] = {"finish_reason": finish}
    if keep_text:
        choice_out["text"] = "".join(text)
    return {"model": model, "usage": usage or {}, "choices": [choice_out]}


def feedback_rows(body: Any) -> list[Row]:
    """Ground truth posted to /v1/feedback: `{"feedback": [{"request_id": ..., "label": ...}, ...]}` or one such
    object. Raises ValueError naming the field that is wrong."""
    items = body.get("feedback") if isinstance(body, dict) and "feedback" in body else [body]
    if not isinstance(items, list) or not items:
        raise ValueError("feedback: expected a non-empty list of {request_id, label} objects")
    found = []
    for i, item in enumerate(items):
        where = f"feedback[{i}]"
        if not isinstance(item, dict):
            raise ValueError(f"{where}: expected an object with request_id and label")
        if not isinstance(item.get("request_id"), str) or not item["request_id"]:
            raise ValueError(f"{where}.request_id: expected a non-empty string")
        if "label" not in item:
            raise ValueError(f"{where}.label: missing")
        found.append({"request_id": item["request_id"], "label": item["label"]})
    return found
