"""The operator's log: one INFO line per action on an object, naming it (status transitions, events posted), and
`--log-format json` giving one JSON object a line."""

import asyncio
import json
import logging

import kopf

from mlops_operator.cli import build_parser
from mlops_operator.k8s.events import emit
from mlops_operator.k8s.status import log_transition

MD = {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment",
      "metadata": {"name": "iris", "namespace": "ml", "uid": "u1"}}


def ready(status: str, reason: str, message: str = "") -> dict:
    return {"conditions": [{"type": "Ready", "status": status, "reason": reason, "message": message}]}


def test_a_ready_transition_is_one_line_naming_the_object(caplog):
    caplog.set_level(logging.INFO, logger="mlops_operator")
    log_transition({**MD, "status": ready("False", "RollingOut")}, ready("True", "AllReplicasReady", "2/2 ready"))
    (line,) = caplog.messages
    assert line == "ModelDeployment ml/iris: Ready False/RollingOut -> True/AllReplicasReady: 2/2 ready"


def test_a_phase_change_is_logged_and_an_unchanged_status_is_not(caplog):
    caplog.set_level(logging.INFO, logger="mlops_operator")
    tj = {**MD, "kind": "TrainingJob", "status": {"phase": "Running", **ready("True", "Running")}}
    log_transition(tj, {"phase": "Running", **ready("True", "Running", "another message")})
    assert caplog.messages == []  # the message alone is no transition
    log_transition(tj, {"phase": "Succeeded", **ready("True", "Succeeded")})
    (line,) = caplog.messages
    assert line.startswith("TrainingJob ml/iris: phase Running -> Succeeded; Ready True/Running -> True/Succeeded")


def test_a_posted_event_is_logged(caplog):
    class Client:
        async def create(self, path, body):
            return body

    caplog.set_level(logging.INFO, logger="mlops_operator")
    asyncio.run(emit(Client(), MD, "Warning", "ImagePullBackOff", "cannot pull"))
    assert caplog.messages == ["ModelDeployment ml/iris: event Warning ImagePullBackOff: cannot pull"]


def test_json_log_format_writes_one_object_a_line(monkeypatch):
    assert build_parser().parse_args(["run", "-A"]).log_format == "plain"
    assert build_parser().parse_args(["run", "-A", "--log-format", "json"]).log_format == "json"
    monkeypatch.setenv("MLOPS_LOG_FORMAT", "json")
    assert build_parser().parse_args(["run", "-A"]).log_format == "json"
    record = logging.LogRecord("mlops_operator.status", logging.INFO, __file__, 1,
                               "%s %s/%s: %s", ("ModelDeployment", "ml", "iris", "Ready -/- -> True/Ok"), None)
    formatter = _json_formatter()
    out = json.loads(formatter.format(record))
    assert out["message"] == "ModelDeployment ml/iris: Ready -/- -> True/Ok" and out["severity"] == "info"


def _json_formatter():
    """The formatter `kopf.configure(log_format=JSON)` installs on the root logger (what cli.py calls)."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        kopf.configure(log_format=kopf.LogFormat.JSON)
        return root.handlers[-1].formatter
    finally:
        root.handlers[:], root.level = saved
