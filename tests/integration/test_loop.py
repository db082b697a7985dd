"""The closed loop for real, as `make demo` tells it (mlops_localcluster/demo.py, examples/loop/): a TrainingJob
trains the fraud model in a python:3.11 worker, MLServer and the inference agent serve it, a traffic pod sends
labelled payments, a DriftMonitor sees the traffic shift, alerts Alertmanager and retrains, the new model's canary
is judged by Prometheus' counts and by accuracy on the feedback labels and promoted, the drift clears, and a
retraining with shuffled labels is rolled back. Every program is real; nothing is stubbed.

One test, in the story's order, with assertions at each step: it takes about four minutes of real time (the
DriftMonitor checks once a minute, and two canaries need two analyses each).
"""

from __future__ import annotations

import json
import pathlib
import urllib.request
import uuid

import numpy as np
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from helpers import Background, request, wait_for

ROOT = pathlib.Path(__file__).resolve().parents[2]
FEATURES = ["amount", "distance_km", "hour_of_day", "merchant_risk"]
ROWS = [[20.0, 2.0, 14.0, 0.1], [400.0, 80.0, 2.0, 0.9], [95.0, 30.0, 3.0, 0.6], [60.0, 5.0, 22.0, 0.3]]
# (the rows the test sends land in the prediction log too: a few among hundreds, not enough to look like drift)


def infer(port: int, rows: list[list[float]], request_id: str | None = None) -> tuple[int, list | None, str]:
    body = json.dumps({"inputs": [{"name": "payment", "shape": [len(rows), 4], "datatype": "FP64",
                                   "data": rows}]}).encode()
    headers = {"Content-Type": "application/json", **({"X-Request-Id": request_id} if request_id else {})}
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v2/models/fraud/infer", data=body, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())["outputs"][0]["data"], resp.headers.get("X-Request-Id", "")
    except (OSError, ValueError, KeyError):
        return 0, None, ""


def example():
    """examples/loop/fraud.py as a module: the traffic's own payments."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("fraud_example", ROOT / "examples" / "loop" / "fraud.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def model_of(uri: str):
    import joblib

    return joblib.load(pathlib.Path(uri.removeprefix("file://")) / "model.joblib")


def logged(log: pathlib.Path, columns: list[str]):
    return ds.dataset(str(log), format="parquet", ignore_prefixes=["feedback", ".", "_"]).to_table(columns=columns)


@pytest.fixture
def loop(kube, namespace, operator, needs_scheduler, needs_controller_manager, needs_simulator, local_cluster,
         tmp_path):
    if local_cluster is None or local_cluster.pod_network() is None:
        pytest.skip("the loop needs the local cluster's pod network (NodePorts on 127.0.0.1, DNS names in pods)")
    from mlops_localcluster import mlserver
    from mlops_localcluster.demo import Loop

    mlserver.ensure(local_cluster.layout.log("mlserver"))
    story = Loop(kube, namespace, tmp_path)
    yield story
    story.stop_traffic()


@pytest.mark.timeout(900)
def test_the_loop_retrains_on_drift_promotes_the_good_canary_and_rolls_back_the_bad(loop, kube):
    loop.setup()

    # 1. the first model, trained for real and served: its answers are the trained model's
    first = loop.train_first()
    port = loop.serve(first)
    v1 = model_of(first)
    status, answer, _ = infer(port, ROWS)
    assert status == 200 and [int(v) for v in answer] == [int(v) for v in v1.predict(np.array(ROWS))]
    promotion = wait_for(lambda: loop.status("TrainingJob", "fraud-v1").get("promotion"), timeout=90,
                         message="fraud-v1's promotion recorded (retried every 30 s until the target existed)")
    assert promotion["modelDeployment"] == "fraud"

    # 2. labelled traffic, a check without drift
    loop.start_traffic()
    quiet = loop.no_drift_first()
    assert quiet["lastRun"]["referenceUri"] == first.rstrip("/") + "/reference.parquet"

    # 3. the shift: drift, one alert, one retraining on the recent labelled traffic
    loop.shift()
    drifted, retrain = loop.drift_and_retrain(quiet["lastRun"]["time"])
    assert drifted["lastRun"]["datasetDrift"] and loop.alerts()
    job = loop.get("TrainingJob", retrain)
    assert job["metadata"]["annotations"]["mlops.dev/drift-result"] == drifted["lastRun"]["time"]  # lineage
    assert job["spec"]["output"]["modelUri"].endswith(f"/models/{retrain}/")

    # 4 and 5, with requests of known ids through both rollouts: none may go unlogged. They are payments of the
    # traffic's own era: the drift checks read them too, and must see the traffic's distribution.
    answered: dict[str, int] = {}
    fraud, rng = example(), np.random.default_rng(5)

    def ask() -> None:
        rid = uuid.uuid4().hex
        code, _, echoed = infer(port, fraud.payments(1, 1, rng)[0].tolist(), rid)
        if echoed:
            answered[echoed] = code

    with Background(ask, interval=0.2):
        good = loop.canary_outcome(retrain, ("Promoted", "RolledBack"))
        assert good["phase"] == "Promoted", good
        assert {c["name"]: c["verdict"] for c in good["analysis"]["checks"]} == {
            "successRate": "Successful", "accuracy": "Successful"}
        loop.stable_serves(good["modelUri"])
        bad = loop.canary_outcome(loop.bad_retrain(), ("Promoted", "RolledBack"))
    assert bad["phase"] == "RolledBack", bad
    failed = {c["name"]: c for c in bad["analysis"]["checks"]}
    assert failed["accuracy"]["verdict"] == "Failed" and failed["successRate"]["verdict"] == "Successful"
    md = loop.get("ModelDeployment", "fraud")
    # the promoted canary became the stable model with the next promotion; the stable still serves it
    assert md["spec"]["model"]["uri"] == good["modelUri"] == md["status"]["stable"]["modelUri"]
    status, answer, _ = infer(port, ROWS)
    assert status == 200 and [int(v) for v in answer] == [int(v) for v in model_of(good["modelUri"]).predict(
        np.array(ROWS))]
    cleared = loop.drift_cleared(drifted["lastRun"]["time"])
    assert cleared["lastRun"]["referenceUri"] == good["modelUri"].rstrip("/") + "/reference.parquet"

    # exactly one retraining for the drift episode (checks during the canary fell in the cooldown)
    code, jobs = request(kube, "GET", f"/apis/mlops.dev/v1alpha1/namespaces/{loop.namespace}/trainingjobs",
                         query={"labelSelector": "mlops.dev/driftmonitor=fraud"})
    assert code == 200 and [j["metadata"]["name"] for j in jobs["items"]] == [retrain]

    # nothing lost from the prediction log across the two rollouts
    ok = {rid for rid, code in answered.items() if code == 200}
    assert len(ok) > 100
    wait_for(lambda: ok <= set(logged(loop.root / "log", ["request_id"]).column("request_id").to_pylist()),
             timeout=30, message="every answered request in the prediction log")

    # the drift statistics are the engine's on the logged rows: traffic stopped, a check on a log that no
    # longer grows, recomputed here from the files and the reference alone
    loop.stop_traffic()
    wait_for(lambda: not [p for p in loop.request("GET", f"/api/v1/namespaces/{loop.namespace}/pods",
                                                  query={"labelSelector": "app=traffic"})[1]["items"]],
             timeout=60, message="the traffic pod gone")
    import time

    time.sleep(3)  # the agents' last flush (flushInterval 2s)
    code, _ = loop.request("PATCH", f"/apis/mlops.dev/v1alpha1/namespaces/{loop.namespace}/driftmonitors/fraud",
                           {"metadata": {"annotations": {"mlops.dev/run-now": "frozen"}}},
                           "application/merge-patch+json")
    assert code == 200
    last = wait_for(lambda: (lambda st: st if st.get("runNow") == "frozen" and (st.get("lastAttempt") or {}).get(
        "time", "") >= cleared["lastRun"]["time"] and st["lastRun"]["time"] > cleared["lastRun"]["time"] else None)(
        loop.status("DriftMonitor", "fraud")), timeout=120, message="the run-now check")["lastRun"]
    from mlops_operator.drift.engine import compute_drift, feature_specs
    from mlops_operator.drift.profile import build_profile

    stable = logged(loop.root / "log", [*FEATURES, "timestamp", "revision"])
    stable = stable.filter(pc.equal(stable["revision"], "stable")).sort_by("timestamp")
    window = stable.slice(stable.num_rows - last["rows"]["current"])  # the newest rows: the window's
    reference = pq.read_table(last["referenceUri"].removeprefix("file://"), columns=FEATURES)
    ours = compute_drift(build_profile({f: reference[f].to_numpy() for f in FEATURES}),
                         {f: window[f].to_numpy().astype(float) for f in FEATURES},
                         feature_specs(loop.docs["DriftMonitor/fraud"]["spec"]["features"]), 0.5, 100)
    assert {f["name"]: f["statistic"] for f in last["features"]} == pytest.approx(
        {f.name: f.statistic for f in ours.features}, rel=1e-9)
    assert [f["drifted"] for f in last["features"]] == [f.drifted for f in ours.features]
    assert last["datasetDrift"] is ours.dataset_drift
