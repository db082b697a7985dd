"""The Argo CD health checks of docs/gitops.md, run by a real Lua 5.1 (Argo CD's gopher-lua speaks 5.1) on
statuses the operator writes."""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]


def scripts() -> dict[str, str]:
    text = (ROOT / "docs" / "gitops.md").read_text()
    for block in re.findall(r"```yaml\n(.*?)```", text, flags=re.S):
        doc = yaml.safe_load(block)
        if isinstance(doc, dict) and doc.get("kind") == "ConfigMap":
            prefix = "resource.customizations.health.mlops.dev_"
            return {k[len(prefix):]: v for k, v in doc["data"].items() if k.startswith(prefix)}
    raise AssertionError("no argocd-cm block in docs/gitops.md")


def lua_literal(value) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{lua_literal(k)}] = {lua_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "{" + ", ".join(lua_literal(v) for v in value) + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def health(kind: str, obj: dict) -> tuple[str, str]:
    lua = shutil.which("lua5.1") or shutil.which("lua")
    if lua is None:
        pytest.skip("no Lua 5.1 (apt-get install lua5.1)")
    program = (f"obj = {lua_literal(obj)}\nlocal function check()\n{scripts()[kind]}\nend\n"
               "local hs = check()\nio.write(hs.status, '\\t', hs.message or '')\n")
    out = subprocess.run([lua, "-"], input=program, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    status, _, message = out.stdout.partition("\t")
    return status, message


def cond(type_, status, reason, message="m"):
    return {"type": type_, "status": status, "reason": reason, "message": message}


def obj(status, generation=1):
    return {"metadata": {"generation": generation}, "status": status}


def test_every_kind_has_a_check():
    assert set(scripts()) == {"ModelDeployment", "TrainingJob", "DriftMonitor"}


@pytest.mark.parametrize("status, want", [
    (None, "Progressing"),
    ({"observedGeneration": 1, "conditions": [cond("Ready", "True", "AllReplicasReady"),
                                              cond("Progressing", "False", "RolloutComplete")]}, "Healthy"),
    ({"observedGeneration": 0, "conditions": [cond("Ready", "True", "AllReplicasReady")]}, "Progressing"),
    ({"observedGeneration": 1, "conditions": [cond("Ready", "True", "AllReplicasReady"),
                                              cond("Progressing", "True", "CanaryProgressing")]}, "Progressing"),
    ({"observedGeneration": 1, "conditions": [cond("Ready", "True", "AllReplicasReady"),
                                              cond("Progressing", "False", "CanaryPaused")]}, "Suspended"),
    ({"observedGeneration": 1, "conditions": [cond("Ready", "False", "ModelFetchFailed")]}, "Degraded"),
    ({"observedGeneration": 1, "conditions": [cond("Ready", "False", "InvalidSpec")]}, "Degraded"),
    ({"observedGeneration": 1, "conditions": [cond("Ready", "False", "Unschedulable")]}, "Progressing"),
    ({"observedGeneration": 1, "conditions": [cond("Ready", "False", "ScaledToZero")]}, "Suspended"),
])
def test_model_deployment(status, want):
    assert health("ModelDeployment", obj(status))[0] == want


@pytest.mark.parametrize("status, want", [
    (None, "Progressing"),
    ({"phase": "Running", "conditions": [cond("Ready", "True", "Running")]}, "Progressing"),
    ({"phase": "Succeeded"}, "Healthy"),
    ({"phase": "Failed", "failure": {"reason": "OOMKilled", "message": "worker 0"}}, "Degraded"),
    ({"phase": "Suspended"}, "Suspended"),
    ({"conditions": [cond("Ready", "False", "InvalidSpec")]}, "Degraded"),
])
def test_training_job(status, want):
    assert health("TrainingJob", obj(status))[0] == want


@pytest.mark.parametrize("status, want", [
    (None, "Progressing"),
    ({"conditions": [cond("Ready", "False", "AwaitingFirstCheck"), cond("DriftDetected", "Unknown", "NoResult")]},
     "Healthy"),
    ({"conditions": [cond("Ready", "True", "CheckSucceeded"), cond("DriftDetected", "False", "NoDrift")]}, "Healthy"),
    ({"conditions": [cond("Ready", "True", "CheckSucceeded"), cond("DriftDetected", "True", "DatasetDrift")]},
     "Degraded"),
    ({"conditions": [cond("Ready", "False", "DataUnreadable")]}, "Degraded"),
])
def test_drift_monitor(status, want):
    assert health("DriftMonitor", obj(status))[0] == want
