"""Rows from inference request and response bodies: Open Inference Protocol v2, KServe v1, OpenAI-compatible.

Pure functions over parsed JSON (dicts and lists): no I/O, no clock. The sink calls them off the request path,
on sampled requests only. A body that does not parse or does not fit its protocol yields no columns, never an
error: logging must not fail what the model served.

The sink takes a call's rows as a `Table` (columns), the way the Parquet file stores them: a 2-D tensor becomes
its columns by one transpose, not a dict per row. `rows` gives the same table as dicts, one per row.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

V2 = "v2"
V1 = "v1"
OPENAI = "openai"

Row = dict[str, Any]
# A call's rows as columns, and how many rows: every column has one value per row (None where a row has none).
Table = tuple[Mapping[str, Sequence[Any]], int]


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


def table(protocol: str, request: bytes, response: bytes, *, columns: list[str] | None = None,
          log_payloads: bool = False, streamed: bool = False) -> Table:
    """The rows one call contributes (at least one, so every sampled call is counted), as columns: its own
    columns only; the caller adds timestamp, request id, revision and the rest."""
    req = loads(request)
    if protocol == OPENAI:
        resp = sse_summary(response, log_payloads) if streamed else loads(response)
        return table_of([openai_row(req, resp, log_payloads=log_payloads, streamed=streamed)])
    resp = loads(response)
    cols, n = v2_table(req, resp, columns) if protocol == V2 else v1_table(req, resp, columns)
    return (cols, n) if n else ({}, 1)


def rows(protocol: str, request: bytes, response: bytes, *, columns: list[str] | None = None,
         log_payloads: bool = False, streamed: bool = False) -> list[Row]:
    """`table` as one dict per row."""
    return rows_of(table(protocol, request, response, columns=columns, log_payloads=log_payloads,
                         streamed=streamed))


def rows_of(found: Table) -> list[Row]:
    cols, n = found
    return [dict(zip(cols, values)) for values in zip(*cols.values())] if cols else [{} for _ in range(n)]


def table_of(found: list[Row]) -> Table:
    """Rows (dicts whose keys may differ) as a table: the union of their columns in the order they first appear,
    None where a row lacks one."""
    cols: dict[str, list[Any]] = {}
    for i, row in enumerate(found):
        for name, value in row.items():
            values = cols.get(name)
            if values is None:
                values = cols[name] = [None] * i
            values.append(value)
        for values in cols.values():
            if len(values) <= i:
                values.append(None)
    return cols, len(found)


def _padded(values: Sequence[Any], n: int) -> Sequence[Any]:
    return values if len(values) == n else [*values[:n], *[None] * (n - len(values))]


def _merged(*parts: Table) -> Table:
    """Columns of parts that may differ in length, as one table of the longest's rows: a later part's column of
    a name already there takes its place for the rows it has."""
    n = max((count for _, count in parts), default=0)
    out: dict[str, Sequence[Any]] = {}
    for cols, _ in parts:
        for name, values in cols.items():
            if not values:
                continue
            before = out.get(name)
            out[name] = (_padded(values, n) if before is None or len(values) >= n
                         else [*values, *before[len(values):]])
    return out, n


@lru_cache(maxsize=64)
def _feature_names(prefix: str, width: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}" for i in range(width))


def _transposed(values: list[Any], names: Sequence[str]) -> dict[str, Sequence[Any]] | None:
    """Rows that are all lists of len(names) values, as one column per name; None when they are not."""
    width = len(names)
    if not all(type(v) is list and len(v) == width for v in values):
        return None
    return dict(zip(names, zip(*values))) if values else {name: () for name in names}


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


def _tensor_columns(tensors: Any, columns: list[str] | None, prefix: str) -> Table:
    """Columns of a v2 `inputs` or `outputs` list: one per named tensor of one value per row, one per feature of
    a single 2-D tensor (names from `columns`, else `<tensor>_<i>`)."""
    out: dict[str, Sequence[Any]] = {}
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
                names = columns if columns and len(columns) == width else _feature_names(f"{name}_", width)
                transposed = _transposed(values, names)
                if transposed is not None:
                    out.update(transposed)
                    continue
                for i, col in enumerate(names):
                    out[col] = [v[i] if isinstance(v, list) and i < len(v) else None for v in values]
                continue
            if width == 1:
                values = [v[0] if isinstance(v, list) and v else None for v in values]
        out[name] = values
    return out, n


def v2_table(request: Any, response: Any, columns: list[str] | None = None) -> Table:
    """Open Inference Protocol v2: one row per element of the first dimension. Inputs keep their names (or the
    feature names of one 2-D input); outputs are prefixed `output_` so they never collide with a feature."""
    inputs = _tensor_columns(request.get("inputs") if isinstance(request, dict) else None, columns, "")
    outputs = _tensor_columns(response.get("outputs") if isinstance(response, dict) else None, None, "output_")
    return _merged(inputs, outputs)


def v2_rows(request: Any, response: Any, columns: list[str] | None = None) -> list[Row]:
    return rows_of(v2_table(request, response, columns))


def v1_table(request: Any, response: Any, columns: list[str] | None = None) -> Table:
    """KServe v1: `instances` (lists of features, dicts of named features, or scalars) and `predictions`."""
    instances = request.get("instances") if isinstance(request, dict) else None
    predictions = response.get("predictions") if isinstance(response, dict) else None
    if not isinstance(instances, list):
        return {}, 0
    n = len(instances)
    first = instances[0] if instances else None
    if isinstance(first, list):  # the usual body: rows of features, all as wide as the first
        width = len(first)
        names = columns if columns and len(columns) == width else _feature_names("f", width)
        cols: dict[str, Sequence[Any]] | None = _transposed(instances, names)
        # A feature named "prediction" keeps its own values in the rows past the predictions: the slow way below.
        short = isinstance(predictions, list) and len(predictions) < n
        if cols is not None and not (short and "prediction" in cols):
            if isinstance(predictions, list) and predictions:
                cols["prediction"] = _padded(predictions, n)
            return cols, n
    return table_of(v1_rows_one_by_one(instances, predictions, columns))


def v1_rows_one_by_one(instances: list[Any], predictions: Any, columns: list[str] | None) -> list[Row]:
    """KServe v1 a dict per instance, whatever each is: the way for bodies that are not rows of one width."""
    found: list[Row] = []
    for i, instance in enumerate(instances):
        if isinstance(instance, dict):
            row = dict(instance)
        elif isinstance(instance, list):
            names = columns if columns and len(columns) == len(instance) else _feature_names("f", len(instance))
            row = dict(zip(names, instance))
        else:
            row = {(columns[0] if columns and len(columns) == 1 else "f0"): instance}
        if isinstance(predictions, list) and i < len(predictions):
            row["prediction"] = predictions[i]
        found.append(row)
    return found


def v1_rows(request: Any, response: Any, columns: list[str] | None = None) -> list[Row]:
    return rows_of(v1_table(request, response, columns))


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
