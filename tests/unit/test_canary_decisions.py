"""The canary rollout with analysis: steps advance on a successful analysis, failures beyond the limit roll back
(held until the canary changes or a person decides), inconclusive holds, autoPromote promotes, and the
reconcile counts an interval only with the status write that records it."""

from __future__ import annotations

import asyncio
import copy
from datetime import datetime, timedelta, timezone

from fake_kube import FakeClient
from test_serving_reconcile import SETTINGS, cache_with, live, md, ready_pod

from mlops_operator import metrics
from mlops_operator.api.modeldeployment import ModelDeploymentSpec
from mlops_operator.serving.analysis import canary_digest
from mlops_operator.serving.canary import CanaryObservation, analysis_due, plan
from mlops_operator.serving.reconcile import ModelDeploymentReconciler

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
CANARY_URI = "s3://models/iris/v2"
ANALYSIS = {"interval": "1m", "failureLimit": 1, "inconclusiveLimit": 2, "successRate": {"min": 0.99}}


def spec(steps=None, **analysis) -> ModelDeploymentSpec:
    canary = {"model": {"uri": CANARY_URI}, "steps": steps or [{"weight": 25, "pause": "1m"}, {"weight": 50}],
              "analysis": {**ANALYSIS, **analysis}}
    return ModelDeploymentSpec.model_validate({"model": {"uri": "s3://models/iris/v1"},
                                               "runtime": {"preset": "sklearn"}, "replicas": 4,
                                               "rollout": {"canary": canary}})


def ready(replicas: int) -> CanaryObservation:
    return CanaryObservation(ready=True, replicas=replicas, ready_pods=replicas)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def result(verdict: str, value: float | None = 0.995, when: datetime = T0) -> list[dict]:
    return [{"name": "successRate", "verdict": verdict, "value": value, "threshold": ">= 0.99",
             "message": {"Successful": "success rate 0.995 is at least 0.99",
                         "Failed": f"success rate {value} is below the minimum 0.99",
                         "Inconclusive": "the canary answered 3 requests in 60s, fewer than minRequests 10"}[verdict],
             "time": when.strftime("%Y-%m-%dT%H:%M:%SZ")}]


def started(s: ModelDeploymentSpec) -> dict:
    """status.canary once step 0's pod is Ready at T0."""
    first = plan(s, None, 4, ready(1), T0)
    return plan(s, first.status, 4, ready(1), T0).status


def kinds(events) -> list[tuple[str, str]]:
    return [(t, r) for t, r, _ in events]


def test_a_step_advances_only_after_its_pause_and_a_successful_analysis():
    s = spec()
    status = started(s)
    assert not analysis_due(s, status, at(59)) and analysis_due(s, status, at(60))
    # Pause over, no analysis yet: the step waits and the condition says for what.
    waiting = plan(s, status, 4, ready(1), at(60))
    assert waiting.status["step"] == 0 and waiting.blocked[0] == "AnalysisPending"
    advanced = plan(s, status, 4, ready(1), at(60), result("Successful", when=at(60)))
    assert advanced.status["step"] == 1 and ("Normal", "CanaryStep") in kinds(advanced.events)
    assert advanced.status["analysis"]["verdict"] == "Successful" and advanced.checked is not None
    # Step 1 has no pause: with analysis it advances on one successful analysis of its own, not the previous one.
    step1 = plan(s, advanced.status, 4, ready(4), at(61)).status
    assert step1["stepStartTime"] == "2024-05-01T12:01:01Z" and not analysis_due(s, step1, at(120))
    done = plan(s, step1, 4, ready(4), at(121))
    assert done.blocked[0] == "AnalysisPending" and done.requeue_after == 0 + 1.0
    last = plan(s, step1, 4, ready(4), at(121), result("Successful", when=at(121)))
    assert (last.status["phase"], last.blocked[0]) == ("Paused", "CanaryPaused")  # no autoPromote: a person decides


def test_the_reconcile_is_requeued_at_the_next_analysis():
    s = spec(steps=[{"weight": 25, "pause": "10m"}])
    status = started(s)
    assert plan(s, status, 4, ready(1), at(20)).requeue_after == 40
    after = plan(s, status, 4, ready(1), at(60), result("Successful", when=at(60)))
    assert after.requeue_after == 60 and after.blocked is None


def test_failures_within_the_limit_hold_the_step_and_beyond_it_roll_back():
    s = spec()
    status = started(s)
    first = plan(s, status, 4, ready(1), at(60), result("Failed", 0.62, at(60)))
    assert first.status["step"] == 0 and first.deploy and first.status["analysis"]["failed"] == 1
    assert first.blocked[0] == "AnalysisFailed" and "successRate: success rate 0.62" in first.blocked[1]
    assert kinds(first.events) == [("Warning", "AnalysisFailed")]
    assert not analysis_due(s, first.status, at(119)) and analysis_due(s, first.status, at(120))

    rolled = plan(s, first.status, 4, ready(1), at(120), result("Failed", 0.5, at(120)))
    assert (rolled.deploy, rolled.canary_replicas, rolled.stable_from_canary) == (False, 0, False)
    assert rolled.status["phase"] == "RolledBack" and rolled.status["analysis"]["decision"] == "Rollback"
    assert kinds(rolled.events) == [("Warning", "CanaryRolledBack")]
    message = rolled.events[0][2]
    assert "successRate" in message and "0.5" in message and "0.99" in message and "2 failed analyses" in message
    assert rolled.blocked == ("CanaryRolledBack", message)

    # It holds, quietly, and is not analysed again.
    held = plan(s, rolled.status, 4, ready(0), at(600))
    assert (held.deploy, held.status, held.events, held.blocked) == (False, rolled.status, [], rolled.blocked)
    assert not analysis_due(s, rolled.status, at(6000))


def test_a_rollback_holds_until_the_canary_changes_or_a_person_decides():
    s = spec()
    status = started(s)
    once = plan(s, status, 4, ready(1), at(60), result("Failed", 0.5, at(60)))
    rolled = plan(s, once.status, 4, ready(1), at(120), result("Failed", 0.5, at(120))).status
    assert rolled["phase"] == "RolledBack"

    raw = s.model_dump(by_alias=True, exclude_none=True)
    new_runtime = copy.deepcopy(raw)
    new_runtime["rollout"]["canary"]["runtime"] = {"image": "reg/sklearn:4"}
    again = plan(ModelDeploymentSpec.model_validate(new_runtime), rolled, 4, CanaryObservation(), at(200))
    assert again.deploy and again.status["step"] == 0 and again.status["phase"] == "Progressing"
    assert "analysis" not in again.status and kinds(again.events) == [("Normal", "CanaryStarted")]

    promote = copy.deepcopy(raw)
    promote["rollout"]["canary"]["promote"] = True
    promoting = plan(ModelDeploymentSpec.model_validate(promote), rolled, 4, CanaryObservation(), at(200))
    assert promoting.stable_from_canary and promoting.status["phase"] == "Progressing"

    abort = copy.deepcopy(raw)
    abort["rollout"]["canary"]["abort"] = True
    aborted = plan(ModelDeploymentSpec.model_validate(abort), rolled, 4, CanaryObservation(), at(200))
    assert not aborted.deploy and aborted.status["phase"] == "Aborted"


def test_inconclusive_never_promotes_nor_rolls_back_and_says_so_at_the_limit():
    s = spec(steps=[{"weight": 25}], autoPromote=True)
    status = started(s)
    events = []
    for interval in range(1, 6):
        now = at(60 * interval)
        step = plan(s, status, 4, ready(1), now, result("Inconclusive", None, now))
        assert step.deploy and not step.stable_from_canary and step.status["phase"] == "Progressing"
        assert step.blocked[0] == "AnalysisInconclusive" and "fewer than minRequests" in step.blocked[1]
        events += kinds(step.events)
        status = step.status
    assert events == [("Warning", "AnalysisInconclusive")]  # once, when the streak reached inconclusiveLimit 2
    assert (status["analysis"]["inconclusive"], status["analysis"]["failed"]) == (5, 0)
    # Traffic comes back: the next successful analysis promotes.
    good = plan(s, status, 4, ready(1), at(360), result("Successful", when=at(360)))
    assert good.stable_from_canary and good.status["analysis"]["decision"] == "Promote"


def test_auto_promote_at_the_last_step_is_decided_once_in_status():
    s = spec(steps=[{"weight": 25, "pause": "1m"}], autoPromote=True)
    status = started(s)
    promoting = plan(s, status, 4, ready(1), at(60), result("Successful", when=at(60)))
    assert promoting.stable_from_canary and promoting.deploy
    assert kinds(promoting.events) == [("Normal", "CanaryAutoPromoted")]
    assert promoting.status["analysis"]["decision"] == "Promote" and promoting.blocked[0] == "Promoting"
    # Later reconciles keep promoting without a new analysis, and end Promoted like promote: true.
    assert not analysis_due(s, promoting.status, at(600))
    still = plan(s, promoting.status, 4, ready(1), at(90))
    assert still.stable_from_canary and still.events == []
    done = plan(s, promoting.status, 4, CanaryObservation(stable_promoted=True), at(120))
    assert done.status["phase"] == "Promoted" and kinds(done.events) == [("Normal", "CanaryPromoted")]
    # The spec still names the canary (autoPromote edits nothing): it stays promoted, it does not start over.
    after = plan(s, done.status, 4, CanaryObservation(stable_promoted=True), at(180))
    assert after.status["phase"] == "Promoted" and after.events == [] and after.stable_from_canary


def test_a_restart_resumes_from_the_status():
    """Nothing but the status carries the analysis: the same status gives the same decision at any time later."""
    s = spec()
    status = started(s)
    first = plan(s, status, 4, ready(1), at(60), result("Failed", 0.6, at(60))).status
    assert first["analysis"]["canary"] == canary_digest(s.rollout.canary)
    # An operator started at 12:01:30 waits for 12:02:00, then its one failure more rolls back.
    assert not analysis_due(s, first, at(90))
    assert plan(s, first, 4, ready(1), at(120), result("Failed", 0.6, at(120))).status["phase"] == "RolledBack"


def test_no_analysis_while_the_canary_pods_are_not_ready():
    s = spec()
    status = started(s)
    unready = plan(s, status, 4, CanaryObservation(ready=False, replicas=1), at(60), result("Failed", 0.1, at(60)))
    assert unready.status["phase"] == "Progressing" and "analysis" not in unready.status and unready.checked is None
    assert not analysis_due(s, unready.status, at(600))


# --- through the reconcile ---------------------------------------------------------------------------------------


def canary_md(status_canary: dict) -> dict:
    body = md(status={"canary": status_canary, "observedGeneration": 3}, replicas=4,
              rollout={"canary": {"model": {"uri": CANARY_URI}, "steps": [{"weight": 25, "pause": "1m"}],
                                  "analysis": {**ANALYSIS, "prometheusUrl": "http://127.0.0.1:9"}}})
    return body


def run(body: dict, client: FakeClient, now: datetime, children: list[dict] = (), pods: list[dict] = ()
        ) -> float | None:
    reconciler = ModelDeploymentReconciler(client=client, cache=cache_with(body, *children, pods=pods),
                                           settings=SETTINGS, clock=lambda: now)
    return asyncio.run(reconciler.reconcile(("ml", "iris")))


def running(body: dict) -> tuple[list[dict], list[dict]]:
    """The children the reconcile applies for `body`, rolled out, and Ready pods: 4 stable, 1 canary."""
    client = FakeClient()
    run(body, client, T0)
    children = [live(obj) for _, obj in client.applied()]
    canary_pod = ready_pod("iris-canary-0", CANARY_URI)
    canary_pod["metadata"]["labels"]["mlops.dev/track"] = "canary"
    return children, [ready_pod(f"iris-{i}") for i in range(4)] + [canary_pod]


def checks_counted(result: str) -> float:
    return metrics.CANARY_CHECKS.labels("ml", "iris", "successRate", result)._value.get()


def test_the_reconcile_counts_an_interval_only_with_its_status_write():
    """Prometheus at a closed port: the interval is inconclusive. A stale read (409) records and counts nothing."""
    prev = {"modelUri": CANARY_URI, "step": 0, "phase": "Progressing", "stepStartTime": "2024-05-01T12:00:00Z",
            "requestedWeight": 25, "plannedWeight": 20, "replicas": 1, "everReady": True}
    children, pods = running(canary_md(prev))
    before = checks_counted("inconclusive")
    stale = FakeClient(conflict_on_status=True)
    run(canary_md(prev), stale, at(60), children, pods)
    assert checks_counted("inconclusive") == before and stale.events() == []

    client = FakeClient()
    assert run(canary_md(prev), client, at(60), children, pods) == 60  # the next analysis
    assert [d["spec"]["replicas"] for _, d in client.applied("Deployment")] == []  # nothing changed but status
    [status] = [body["status"] for verb, _, path, body in client.writes if path.endswith("/status")]
    recorded = status["canary"]["analysis"]
    assert (recorded["verdict"], recorded["inconclusive"], recorded["lastTime"]) == (
        "Inconclusive", 1, "2024-05-01T12:01:00Z")
    assert "127.0.0.1:9 unreachable" in recorded["checks"][0]["message"]
    assert checks_counted("inconclusive") == before + 1


def test_an_analysis_without_any_prometheus_url_is_an_invalid_spec():
    body = canary_md({})
    del body["spec"]["rollout"]["canary"]["analysis"]["prometheusUrl"]
    client = FakeClient()
    run(body, client, T0)
    [status] = [b["status"] for _, _, path, b in client.writes if path.endswith("/status")]
    [ready_condition] = [c for c in status["conditions"] if c["type"] == "Ready"]
    assert ready_condition["reason"] == "InvalidSpec" and "--prometheus-url" in ready_condition["message"]
    assert not client.applied()


def test_model_checks_are_read_and_judged_off_the_event_loop(monkeypatch):
    """The first predictionDrift judgement after a start imports the drift engine (scipy: seconds; 21 s seen on a
    busy machine, when every reconcile of the operator stood still). Here the judgement, once begun, waits for a
    gate that only the event loop opens: it opens only if the judgement runs in a thread."""
    import threading

    from mlops_operator.serving import analysis, predictiondrift, prometheus

    async def no_prometheus(*_args, **_kwargs):
        return {}

    read: list[str] = []
    started, gate = threading.Event(), threading.Event()
    opened: list[bool] = []

    def judge(*_args, **_kwargs):
        started.set()
        opened.append(gate.wait(5))
        return []

    def predictions(log_uri, *_args):
        read.append(log_uri)
        return predictiondrift.Predictions()

    monkeypatch.setattr(prometheus, "measure", no_prometheus)
    monkeypatch.setattr(predictiondrift, "predictions", predictions)
    monkeypatch.setattr(analysis, "judge", judge)
    s = ModelDeploymentSpec.model_validate({
        "model": {"uri": "s3://models/iris/v1"}, "runtime": {"preset": "sklearn"}, "replicas": 4,
        "monitoring": {"predictionLog": {"uri": "file:///tmp/no-log"}},
        "rollout": {"canary": {"model": {"uri": CANARY_URI}, "steps": [{"weight": 25, "pause": "1m"}],
                               "analysis": {**ANALYSIS, "predictionDrift": {"test": "chisquare"}}}}})
    prev = {"modelUri": CANARY_URI, "step": 0, "phase": "Progressing", "stepStartTime": "2024-05-01T12:00:00Z",
            "requestedWeight": 25, "plannedWeight": 20, "replicas": 1, "everReady": True}
    reconciler = ModelDeploymentReconciler(client=FakeClient(), cache=cache_with(md()), settings=SETTINGS,
                                           clock=lambda: at(60))

    async def analysed() -> None:
        async def open_gate() -> None:  # once the judgement has begun, from the event loop
            while not started.is_set():
                await asyncio.sleep(0.01)
            gate.set()

        opener = asyncio.create_task(open_gate())
        assert await reconciler.analyse(("ml", "iris"), s, prev, at(60)) == []
        await opener

    asyncio.run(analysed())
    assert opened == [True] and read == ["file:///tmp/no-log"]
