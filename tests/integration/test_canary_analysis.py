"""Canary analysis end to end on the local cluster: the operator (a process) queries a real Prometheus that scrapes
agent metrics served by this test for the ModelDeployment's stable and canary, then rolls the canary back or
promotes it. The serving pods are the node simulator's; only the request metrics are stand-ins."""

from __future__ import annotations

import pytest
from kubernetes import client
from test_canary_prometheus import FakeAgent, scraping
from test_modeldeployment import condition, events_for, get_md, md_manifest, models, wait_ready

from helpers import apply, wait_for

__all__ = ["models"]  # the model files fixture, shared with test_modeldeployment


@pytest.fixture
def analysed_ns(namespace, operator, needs_scheduler, needs_controller_manager, needs_simulator, models):
    import test_modeldeployment

    test_modeldeployment.MODELS = models
    return namespace


def phase_is(kube, namespace: str, name: str, phase: str):
    md = get_md(kube, namespace, name)
    return md if ((md.get("status") or {}).get("canary") or {}).get("phase") == phase else None


def test_a_failing_canary_is_rolled_back_on_its_success_rate(kube, analysed_ns, tmp_path):
    from test_modeldeployment import MODELS

    agents = (FakeAgent("stable", 0.02, namespace=analysed_ns, model="bad"),
              FakeAgent("canary", 0.02, fail_every=10, namespace=analysed_ns, model="bad"))
    with scraping(tmp_path, *agents) as prometheus:
        apply(kube, md_manifest(analysed_ns, "bad", replicas=2))
        wait_ready(kube, analysed_ns, "bad")
        canary = {"model": {"uri": MODELS.v2}, "steps": [{"weight": 50, "pause": 3600}, {"weight": 100}],
                  "analysis": {"interval": "10s", "minRequests": 10, "prometheusUrl": prometheus,
                               "successRate": {"min": 0.95}}}
        manifest = md_manifest(analysed_ns, "bad", replicas=2, rollout={"canary": canary})
        applied = apply(kube, manifest)
        md = wait_for(lambda: phase_is(kube, analysed_ns, "bad", "RolledBack"), timeout=180,
                      message="canary rolled back")
    analysis = md["status"]["canary"]["analysis"]
    assert (analysis["decision"], analysis["failed"], analysis["verdict"]) == ("Rollback", 1, "Failed")
    [rate] = analysis["checks"]
    assert (rate["name"], rate["value"], rate["threshold"]) == ("successRate", 0.9, ">= 0.95")
    progressing = condition(md, "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("False", "CanaryRolledBack")
    [event] = [e for e in events_for(kube, analysed_ns, "bad") if e.reason == "CanaryRolledBack"]
    assert event.type == "Warning" and "successRate" in event.message and "0.9" in event.message
    # The spec is not edited (GitOps sees no drift).
    assert md["metadata"]["generation"] == applied["metadata"]["generation"]
    assert md["spec"]["rollout"]["canary"]["abort"] is False
    apps = client.AppsV1Api(kube)
    wait_for(lambda: "bad-canary" not in {d.metadata.name for d in apps.list_namespaced_deployment(analysed_ns).items},
             timeout=60, message="canary Deployment gone")
    assert apps.read_namespaced_deployment("bad", analysed_ns).spec.replicas == 2  # the stable kept everything


def test_a_healthy_canary_advances_on_analysis_and_is_promoted(kube, analysed_ns, tmp_path):
    from test_modeldeployment import MODELS

    agents = (FakeAgent("stable", 0.02, namespace=analysed_ns, model="good"),
              FakeAgent("canary", 0.02, namespace=analysed_ns, model="good"))
    with scraping(tmp_path, *agents) as prometheus:
        apply(kube, md_manifest(analysed_ns, "good", replicas=2))
        wait_ready(kube, analysed_ns, "good")
        canary = {"model": {"uri": MODELS.v2}, "steps": [{"weight": 25}, {"weight": 50}],
                  "analysis": {"interval": "10s", "minRequests": 10, "prometheusUrl": prometheus,
                               "successRate": {"min": 0.99}, "latency": {"max": "100ms"}, "autoPromote": True}}
        apply(kube, md_manifest(analysed_ns, "good", replicas=2, rollout={"canary": canary}))
        md = wait_for(lambda: phase_is(kube, analysed_ns, "good", "Promoted"), timeout=240,
                      message="canary promoted on analysis")
    assert md["status"]["canary"]["analysis"]["decision"] == "Promote"
    assert md["status"]["canary"]["analysis"]["failed"] == 0
    reasons = [e.reason for e in events_for(kube, analysed_ns, "good")]
    assert reasons.count("CanaryStep") == 1 and reasons.count("CanaryAutoPromoted") == 1
    assert reasons.count("CanaryPromoted") == 1
