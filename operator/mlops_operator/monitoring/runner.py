"""`mlops-operator drift-check --namespace N --name M`: one drift check, run by the DriftMonitor's CronJob in the
operator's image under a ServiceAccount that may only read its DriftMonitor (and the ModelDeployment it watches)
and write its status.

It writes `status.lastRun` (only on success: a failed check never replaces a good result, so no false alarm) and
`status.lastAttempt` (always). Conditions, events, alerts and retraining are the operator's, which watches the
status this writes.

The current data is read as a dataset (datasets.py): only the partitions of the window, only the monitored
columns, only the rows of `spec.current.revision` (stable by default) when the data has a revision column.

`MLOPS_PROFILE_CACHE` (a folder, e.g. on a volume that outlives the pod) keeps reference profiles between runs,
keyed by the reference's URI and its files' names, sizes and modification times (or ETags), so a large reference
is profiled, and read, once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pathlib
import sys
from datetime import datetime, timezone
from typing import Any

import urllib3

from .. import datasets as data
from ..api import DRIFT_MONITOR, InvalidSpec, parse_spec
from ..api.common import duration_seconds
from ..api.driftmonitor import CurrentData
from ..drift.engine import DriftInputError, InsufficientData, compute_drift, feature_specs
from ..drift.performance import PerformanceInputError
from ..drift.profile import ReferenceProfile, build_profile
from ..k8s.conditions import format_time
from . import checks

log = logging.getLogger("mlops_operator.drift_check")
GROUP_PATH = "/apis/mlops.dev/v1alpha1"


class NotFound(Exception):
    pass


CONNECT_TIMEOUT, READ_TIMEOUT, TRIES = 5, 30, 4  # seconds, seconds, attempts per call


class Api:
    """The few calls the runner makes, through the official client (in-cluster or kubeconfig)."""

    def __init__(self) -> None:
        from kubernetes import client, config

        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        self.client = client.ApiClient()

    def _call(self, method: str, path: str, body: dict | None = None,
              content_type: str = "application/json") -> Any:
        cfg = self.client.configuration
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        token = cfg.get_api_key_with_prefix("BearerToken") or cfg.get_api_key_with_prefix("authorization")
        if token:
            headers["Authorization"] = token
        # Bounded: a connection that never answers fails after the timeout and the call is made again on a new
        # one, instead of hanging the check until its Job's deadline.
        for attempt in range(1, TRIES + 1):
            try:
                resp = self.client.call_api(method, cfg.host + path, header_params=headers, body=body,
                                            _request_timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
                break
            except urllib3.exceptions.HTTPError as err:
                if attempt == TRIES:
                    raise
                print(f"drift-check: {method} {path}: {err}; trying again", file=sys.stderr, flush=True)
        raw = resp.read()
        if resp.status == 404:
            raise NotFound(f"{method} {path}: 404")
        if resp.status >= 300:
            raise RuntimeError(f"{method} {path}: {resp.status} {raw[:300]!r}")
        return json.loads(raw) if raw else None

    def get(self, path: str) -> dict:
        obj: dict = self._call("GET", path)
        return obj

    def patch_status(self, path: str, status: dict) -> None:
        self._call("PATCH", path + "/status", {"status": status}, "application/merge-patch+json")


def _profile(reference: data.Source, names: list[str]) -> ReferenceProfile:
    """The reference's profile over `names`, from MLOPS_PROFILE_CACHE when its files are unchanged (then the
    reference is not read at all)."""
    cache = os.environ.get("MLOPS_PROFILE_CACHE")
    key_path = None
    if cache:
        key = hashlib.sha256(f"{reference.fingerprint()}|{','.join(names)}".encode()).hexdigest()[:24]
        key_path = pathlib.Path(cache) / f"{key}.npz"
        if key_path.exists():
            return ReferenceProfile.load(key_path)
    profile = build_profile(data.to_arrays(reference.read(names), names))
    if key_path is not None:
        key_path.parent.mkdir(parents=True, exist_ok=True)
        profile.save(key_path)
    return profile


def failed(stamp: str, reason: str, message: str) -> dict:
    """The status of a check that gave no verdict: lastAttempt only, the previous lastRun stays."""
    return {"lastAttempt": {"time": stamp, "succeeded": False, "reason": reason, "message": message}}


def check(dm: dict, md: dict | None, now: datetime) -> dict:
    """The status fields of one check of DriftMonitor `dm` against ModelDeployment `md` (None when the check
    needs nothing of it), pure apart from reading the data."""
    spec = parse_spec(DRIFT_MONITOR, dm.get("spec"))
    current = spec.current or CurrentData()
    current_uri = current.uri or prediction_log_uri(md)
    stamp = format_time(now)
    try:
        reference_uri = spec.reference.uri or model_file(served_model(md), spec.reference.from_model or "")
        if not current_uri:
            raise data.DataError("DataUnreadable", "no current data: set spec.current.uri or the ModelDeployment's "
                                                   "spec.monitoring.predictionLog")
        window = data.Window(
            duration_seconds=duration_seconds(current.window) if current.window is not None else None,
            timestamp_column=current.timestamp_column, last_rows=current.last_rows)
        reference = data.open_source(reference_uri, spec.reference.format)
        live = data.open_source(current_uri, current.format, window, now)
        wanted = [f.name for f in spec.features] or None
        names = data.feature_columns(reference.schema, live.schema, wanted, skip=(window.timestamp_column,))
        profile = _profile(reference, names)
        model_checks = any(c is not None for c in (spec.quality, spec.performance, spec.estimated_performance,
                                                    spec.multivariate, spec.prediction_drift))
        ref_cols, cur_cols = checks.needed_columns(spec, names) if model_checks else (set(names), set(names))
        table = live.read(sorted(cur_cols), window, now, current.revision)
        specs = feature_specs([f.to_dict() for f in spec.features]) if spec.features else None
        result = compute_drift(profile, data.to_arrays(table, names), specs, spec.drift_share, spec.min_rows)
        extra: dict = {}
        if model_checks:
            columns = data.to_arrays(table, sorted(cur_cols))
            feedback = None
            if spec.performance is not None:
                ts = window.timestamp_column
                feedback = _feedback(current_uri, window.duration_seconds, now)
                if feedback is not None and feedback.times is not None and ts in table.column_names:
                    columns[ts] = data.epoch_seconds(table, ts)  # the label delay: label time - prediction time
            extra = checks.evaluate(spec, data.to_arrays(reference.read(sorted(ref_cols)), sorted(ref_cols)),
                                    columns, names, feedback, profile, window.timestamp_column)
    except data.DataError as err:
        return failed(stamp, err.reason, err.message)
    except InsufficientData as err:
        return failed(stamp, "InsufficientData", str(err))
    except (DriftInputError, PerformanceInputError) as err:
        return failed(stamp, "InvalidData", str(err))
    return {"lastRun": {"time": stamp, **result.to_status(), **extra, "referenceUri": reference_uri},
            "lastAttempt": {"time": stamp, "succeeded": True}}


def _feedback(current_uri: str, window_seconds: int | None, now: datetime) -> checks.Feedback | None:
    """The labels posted to the agent's /v1/feedback (`<log>/feedback/`), or None when there are none: the
    performance check then takes labels from the current window's own label column. With a time window, only the
    labels posted since the window began (a label comes after its prediction): the read grows with the window,
    not with the feedback's history."""
    labels_window = data.Window(duration_seconds=window_seconds)  # the agent's feedback rows: by `timestamp`
    try:
        source = data.open_source(current_uri.rstrip("/") + "/" + data.FEEDBACK, "parquet", labels_window, now)
        table = source.read(["request_id", "label"], labels_window, now)
    except data.DataError:
        return None
    columns = data.to_arrays(table, ["request_id", "label"])
    ts = labels_window.timestamp_column
    times = data.epoch_seconds(table, ts) if ts in table.column_names else None
    return checks.Feedback(request_ids=columns["request_id"], labels=columns["label"], times=times)


def run(namespace: str, name: str) -> int:
    api = Api()
    path = f"{GROUP_PATH}/namespaces/{namespace}/driftmonitors/{name}"
    dm = api.get(path)
    now = datetime.now(timezone.utc)
    try:
        status = check(dm, model_deployment(api, namespace, dm), now)
    except InvalidSpec as err:
        status = failed(format_time(now), "InvalidSpec", err.message)
    except NotFound as err:
        status = failed(format_time(now), "ModelDeploymentNotFound", str(err))
    api.patch_status(path, status)
    attempt = status["lastAttempt"]
    if attempt["succeeded"]:
        last = status["lastRun"]
        print(f"drift-check {namespace}/{name}: datasetDrift={last['datasetDrift']} "
              f"share={last['driftShare']:.3f} rows={last['rows']} reference={last['referenceUri']}")
        return 0
    print(f"drift-check {namespace}/{name}: {attempt['reason']}: {attempt['message']}")
    return 1


def model_deployment(api: Api, namespace: str, dm: dict) -> dict | None:
    """The monitored ModelDeployment when the check needs it (its prediction log is the current data, or the
    reference lies next to its served model), else None; raises NotFound (with a message naming it) when that
    ModelDeployment does not exist."""
    spec = dm.get("spec") or {}
    if (spec.get("current") or {}).get("uri") and not (spec.get("reference") or {}).get("fromModel"):
        return None
    md_name = (spec.get("modelDeployment") or {}).get("name")
    try:
        return api.get(f"{GROUP_PATH}/namespaces/{namespace}/modeldeployments/{md_name}")
    except NotFound:
        raise NotFound(f"ModelDeployment {md_name!r} (whose prediction log or served model the check reads) does "
                       f"not exist in namespace {namespace!r}") from None


def prediction_log_uri(md: dict | None) -> str | None:
    return ((((md or {}).get("spec") or {}).get("monitoring") or {}).get("predictionLog") or {}).get("uri")


def served_model(md: dict | None) -> str:
    """The model the ModelDeployment's Ready stable pods serve (status.stable.modelUri), else its spec's."""
    md = md or {}
    served = ((md.get("status") or {}).get("stable") or {}).get("modelUri")
    return served or ((md.get("spec") or {}).get("model") or {}).get("uri") or ""


def model_file(model_uri: str, relative: str) -> str:
    """`relative` inside the model folder `model_uri` (a file URI's own folder when it names a file)."""
    if not model_uri:
        raise data.DataError("DataUnreadable", "reference.fromModel: the ModelDeployment names no model")
    last = model_uri.rstrip("/").rsplit("/", 1)
    folder = last[0] if not model_uri.endswith("/") and last[-1].endswith(MODEL_FILES) else model_uri.rstrip("/")
    return folder + "/" + relative.lstrip("/")


MODEL_FILES = (".joblib", ".pkl", ".pickle", ".json", ".ubj", ".bst", ".onnx", ".pt", ".pth", ".safetensors")
"""The endings of a model URI that names one file (the runtimes' formats), not a folder."""
