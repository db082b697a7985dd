"""The inventory gauges: objects by kind and phase, GPUs by owner kind and pod phase, counted from cache dicts."""

from mlops_operator import metrics
from mlops_operator.runtime import inventory


def md(ready: str | None = None, reason: str = "RollingOut") -> dict:
    if ready is None:
        return {"metadata": {"name": "m"}}
    return {"metadata": {"name": "m"}, "status": {"conditions": [{"type": "Ready", "status": ready, "reason": reason}]}}


def pod(kind: str, phase: str | None, gpus: int, uid: str) -> dict:
    res = {"limits": {"nvidia.com/gpu": str(gpus), "cpu": "1"}} if gpus else {"requests": {"cpu": "1"}}
    return {"metadata": {"uid": uid, "labels": {f"mlops.dev/{kind}": "x"}},
            "spec": {"containers": [{"name": "c", "resources": res}]},
            "status": {"phase": phase} if phase else {}}


def test_phase_from_status_phase_or_ready_condition():
    assert inventory.phase_of({"status": {"phase": "Running"}}) == "Running"
    assert inventory.phase_of(md()) == "Pending"
    assert inventory.phase_of(md("True", "AllReplicasReady")) == "Ready"
    assert inventory.phase_of(md("False", "InvalidSpec")) == "InvalidSpec"


def test_count_objects_by_kind_and_phase():
    counts = inventory.count_objects({
        "modeldeployment": [md("True"), md("True"), md()],
        "trainingjob": [{"status": {"phase": "Succeeded"}}],
        "driftmonitor": []})
    assert counts == {("modeldeployment", "Ready"): 2, ("modeldeployment", "Pending"): 1,
                      ("trainingjob", "Succeeded"): 1}


def test_count_gpus_by_owner_kind_and_pod_phase():
    pods = [pod("trainingjob", "Running", 8, "a"), pod("trainingjob", "Running", 8, "b"),
            pod("modeldeployment", None, 1, "c"), pod("modeldeployment", "Running", 0, "d")]
    assert inventory.count_gpus(pods) == {("trainingjob", "Running"): 16, ("modeldeployment", "Pending"): 1}


def test_export_counts_a_pod_once_and_drops_series_that_are_gone():
    class FakeCache:
        def __init__(self, data):
            self.data = data

        def values(self, index):
            return iter(self.data.get(index, []))

    shared = pod("trainingjob", "Running", 4, "same")
    inventory.export(FakeCache({"trainingjobs_idx": [{"status": {"phase": "Running"}}],
                                "pods_idx": [shared, shared]}))
    assert metrics.GPUS_REQUESTED.labels("trainingjob", "Running")._value.get() == 4
    assert metrics.MANAGED_OBJECTS.labels("trainingjob", "Running")._value.get() == 1
    inventory.export(FakeCache({"trainingjobs_idx": [{"status": {"phase": "Succeeded"}}]}))
    samples = {(s.labels["kind"], s.labels["phase"]): s.value
               for family in metrics.MANAGED_OBJECTS.collect() for s in family.samples}
    assert samples == {("trainingjob", "Succeeded"): 1}


def test_finished_pods_hold_no_gpus():
    pods = [pod("trainingjob", "Succeeded", 8, "done-0"), pod("trainingjob", "Failed", 8, "failed-0"),
            pod("trainingjob", "Running", 8, "running-0"), pod("trainingjob", None, 8, "pending-0")]
    assert inventory.count_gpus(pods) == {("trainingjob", "Running"): 8, ("trainingjob", "Pending"): 8}
