"""ModelDeployment against the real control plane, the node simulator and the operator as a process."""

from __future__ import annotations

import threading
import time

import pytest
from kubernetes import client, watch

from helpers import Background, apply, request, wait_for

GROUP_PATH = "/apis/mlops.dev/v1alpha1"
FAILURE = "sim.mlops.dev/failure"


class Models:
    """Real model files; the serving pods' fetch-model init container copies them (run as a local process by
    the node simulator, since it is the operator's own image)."""

    def __init__(self, root):
        self.uris = {}
        for version in ("v1", "v2"):
            path = root / version / "model.joblib"
            path.parent.mkdir(parents=True)
            path.write_bytes(f"model {version}".encode())
            self.uris[version] = f"file://{path}"
        self.v1, self.v2 = self.uris["v1"], self.uris["v2"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return Models(tmp_path_factory.mktemp("models"))


def md_manifest(namespace: str, name: str, **spec) -> dict:
    base = {"model": {"uri": MODELS.v1}, "runtime": {"preset": "sklearn"},
            "replicas": 1, "resources": {"cpu": "100m", "memory": "256Mi"}}
    base.update(spec)
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": name, "namespace": namespace}, "spec": base}


def get_md(kube, namespace: str, name: str) -> dict:
    code, body = request(kube, "GET", f"{GROUP_PATH}/namespaces/{namespace}/modeldeployments/{name}")
    assert code == 200, body
    return body


def condition(md: dict, type_: str) -> dict:
    return next((c for c in (md.get("status") or {}).get("conditions", []) if c["type"] == type_), {})


def wait_ready(kube, namespace: str, name: str, status: str = "True", reason: str | None = None,
               timeout: float = 60) -> dict:
    def check():
        md = get_md(kube, namespace, name)
        ready = condition(md, "Ready")
        gen_ok = (md.get("status") or {}).get("observedGeneration") == md["metadata"]["generation"]
        if gen_ok and ready.get("status") == status and (reason is None or ready.get("reason") == reason):
            return md
        return None

    return wait_for(check, timeout=timeout, message=f"{name} Ready={status} {reason or ''}")


def events_for(kube, namespace: str, name: str) -> list:
    return [e for e in client.CoreV1Api(kube).list_namespaced_event(namespace).items
            if e.involved_object.name == name and e.involved_object.kind == "ModelDeployment"]


MODELS: Models


@pytest.fixture
def md_ns(namespace, operator, needs_scheduler, needs_controller_manager, needs_simulator, models):
    global MODELS
    MODELS = models
    return namespace


def test_gpu_model_lands_on_gpu_nodes_and_becomes_ready(kube, md_ns):
    apply(kube, md_manifest(md_ns, "llm", runtime={"preset": "vllm"},
                            resources={"cpu": "2", "memory": "8Gi",
                                       "gpu": {"count": 2, "product": "NVIDIA-H100-80GB-HBM3"}}))
    md = wait_ready(kube, md_ns, "llm")
    dep = client.AppsV1Api(kube).read_namespaced_deployment("llm", md_ns)
    pod_spec = dep.spec.template.spec
    server = pod_spec.containers[0]
    assert server.resources.limits["nvidia.com/gpu"] == "2"
    assert pod_spec.node_selector == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert any(t.key == "nvidia.com/gpu" and t.effect == "NoSchedule" for t in pod_spec.tolerations)
    shm = next(v for v in pod_spec.volumes if v.name == "dshm")
    assert shm.empty_dir.medium == "Memory"
    assert pod_spec.security_context.run_as_non_root is True
    assert server.security_context.allow_privilege_escalation is False
    assert server.security_context.capabilities.drop == ["ALL"]
    assert pod_spec.automount_service_account_token is False
    # Children carry owner references and the recommended labels.
    assert dep.metadata.owner_references[0].kind == "ModelDeployment"
    assert dep.metadata.owner_references[0].controller is True
    assert dep.metadata.labels["app.kubernetes.io/managed-by"] == "mlops-operator"
    assert dep.metadata.labels["mlops.dev/modeldeployment"] == "llm"
    pods = client.CoreV1Api(kube).list_namespaced_pod(md_ns, label_selector="mlops.dev/modeldeployment=llm").items
    assert pods and all(p.spec.node_name.startswith("gpu-") for p in pods)
    assert md["status"]["readyReplicas"] == 1
    assert md["status"]["url"] == f"http://llm.{md_ns}.svc.cluster.local"
    svc = client.CoreV1Api(kube).read_namespaced_service("llm", md_ns)
    assert svc.spec.selector == {"mlops.dev/modeldeployment": "llm", "app.kubernetes.io/component": "server"}


def test_too_many_gpus_is_unschedulable_with_the_schedulers_words(kube, md_ns):
    apply(kube, md_manifest(md_ns, "huge", resources={"gpu": {"count": 64}}))
    md = wait_ready(kube, md_ns, "huge", "False", "Unschedulable")
    assert "Insufficient nvidia.com/gpu" in condition(md, "Ready")["message"]
    assert any(e.reason == "Unschedulable" and e.type == "Warning" for e in events_for(kube, md_ns, "huge"))


@pytest.mark.parametrize("mode, reason", [("CrashLoopBackOff", "CrashLoopBackOff"),
                                          ("ImagePullBackOff", "ImagePullBackOff"),
                                          ("OOMKilled", "OOMKilled")])
def test_pod_failures_surface_and_recovery_turns_ready_again(kube, md_ns, mode, reason):
    name = f"fail-{mode.lower()}"
    apply(kube, md_manifest(md_ns, name, podAnnotations={FAILURE: mode}))
    md = wait_ready(kube, md_ns, name, "False", reason)
    assert condition(md, "Available")["status"] == "False"
    apply(kube, md_manifest(md_ns, name))  # the fix: new pods without the failure
    wait_ready(kube, md_ns, name, "True")


def test_invalid_spec_leaves_the_running_deployment_exactly_as_it_was(kube, md_ns):
    apply(kube, md_manifest(md_ns, "steady", replicas=2))
    wait_ready(kube, md_ns, "steady")
    apps = client.AppsV1Api(kube)
    before = apps.read_namespaced_deployment("steady", md_ns)
    # Schema-valid, meaningless: canary weights that decrease from step to step.
    apply(kube, md_manifest(md_ns, "steady", replicas=2, rollout={"canary": {
        "model": {"uri": "s3://bucket/v2/"}, "steps": [{"weight": 50}, {"weight": 20}]}}))
    md = wait_ready(kube, md_ns, "steady", "False", "InvalidSpec")
    assert "spec.rollout.canary.steps[1].weight" in condition(md, "Ready")["message"]
    time.sleep(1)
    after = apps.read_namespaced_deployment("steady", md_ns)
    assert after.metadata.resource_version == before.metadata.resource_version
    assert after.status.ready_replicas == 2
    assert any(e.reason == "InvalidSpec" and e.type == "Warning" for e in events_for(kube, md_ns, "steady"))
    with pytest.raises(client.ApiException):
        apps.read_namespaced_deployment("steady-canary", md_ns)


def test_hpa_and_pdb_follow_the_spec_and_deletion_removes_every_child(kube, md_ns):
    apply(kube, md_manifest(md_ns, "scaled", replicas=3))
    wait_ready(kube, md_ns, "scaled")
    policy_path = f"/apis/policy/v1beta1/namespaces/{md_ns}/poddisruptionbudgets/scaled"
    hpa_path = f"/apis/autoscaling/v2beta2/namespaces/{md_ns}/horizontalpodautoscalers/scaled"
    wait_for(lambda: request(kube, "GET", policy_path)[0] == 200, message="PDB with 3 replicas")
    assert request(kube, "GET", hpa_path)[0] == 404

    apply(kube, md_manifest(md_ns, "scaled", replicas=1,
                            autoscaling={"minReplicas": 2, "maxReplicas": 5, "targetCPUUtilization": 70}))
    code, hpa = wait_for(lambda: (lambda r: r if r[0] == 200 else None)(request(kube, "GET", hpa_path)),
                         message="HPA with autoscaling")
    assert hpa["spec"]["minReplicas"] == 2 and hpa["spec"]["maxReplicas"] == 5
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 70

    apply(kube, md_manifest(md_ns, "scaled", replicas=1))
    wait_for(lambda: request(kube, "GET", hpa_path)[0] == 404, message="HPA gone")
    wait_for(lambda: request(kube, "GET", policy_path)[0] == 404, message="PDB gone with one replica")

    request(kube, "DELETE", f"{GROUP_PATH}/namespaces/{md_ns}/modeldeployments/scaled")
    core, apps = client.CoreV1Api(kube), client.AppsV1Api(kube)
    wait_for(lambda: not apps.list_namespaced_deployment(md_ns).items
             and not core.list_namespaced_service(md_ns).items
             and not core.list_namespaced_pod(md_ns).items, timeout=60, message="children garbage-collected")


class ReplicaWatcher(Background):
    """Watches one Deployment and records every spec.replicas it is ever written with."""

    def __init__(self, kube, namespace: str, name: str):
        super().__init__(self._watch, join_timeout=30)
        self.apps = client.AppsV1Api(kube)
        self.namespace, self.name = namespace, name
        self.seen: list[int] = []
        self._rv = None

    def _watch(self) -> None:
        selector = f"metadata.name={self.name}"
        if self._rv is None:
            listed = self.apps.list_namespaced_deployment(self.namespace, field_selector=selector)
            self.seen += [d.spec.replicas for d in listed.items]
            self._rv = listed.metadata.resource_version
        for event in watch.Watch().stream(self.apps.list_namespaced_deployment, self.namespace,
                                          field_selector=selector, resource_version=self._rv,
                                          timeout_seconds=2, _request_timeout=10):
            self._rv = event["object"].metadata.resource_version
            self.seen.append(event["object"].spec.replicas)
            if self.stopping.is_set():
                return


def deployment_replicas(kube, namespace: str, name: str) -> int:
    return client.AppsV1Api(kube).read_namespaced_deployment(name, namespace).spec.replicas


def test_autoscaling_on_and_off_keeps_the_replica_count(kube, md_ns):
    """The HPA cannot compute metrics here (no metrics server), so it never scales: any drop below 8 would be the
    operator's (server-side apply resetting replicas it stopped setting)."""
    scaling = {"minReplicas": 2, "maxReplicas": 10, "targetCPUUtilization": 70}
    hpa_path = f"/apis/autoscaling/v2beta2/namespaces/{md_ns}/horizontalpodautoscalers/busy"
    apply(kube, md_manifest(md_ns, "busy", replicas=8))
    wait_ready(kube, md_ns, "busy", timeout=90)
    with ReplicaWatcher(kube, md_ns, "busy") as on:
        apply(kube, md_manifest(md_ns, "busy", replicas=8, autoscaling=scaling))
        wait_for(lambda: request(kube, "GET", hpa_path)[0] == 200, message="HPA created")
        # Until the HPA controller has looked at it (it reports currentReplicas even without metrics).
        wait_for(lambda: (request(kube, "GET", hpa_path)[1].get("status") or {}).get("currentReplicas") == 8,
                 timeout=60, message="the HPA sees 8 replicas")
        wait_ready(kube, md_ns, "busy")
        time.sleep(2)
    assert on.seen and min(on.seen) == 8, on.seen
    assert deployment_replicas(kube, md_ns, "busy") == 8

    with ReplicaWatcher(kube, md_ns, "busy") as off:
        apply(kube, md_manifest(md_ns, "busy", replicas=8))
        wait_for(lambda: request(kube, "GET", hpa_path)[0] == 404, message="HPA gone")
        dep = wait_for(lambda: (lambda d: d if "mlops.dev/replicas-handover" not in (d.metadata.annotations or {})
                                else None)(client.AppsV1Api(kube).read_namespaced_deployment("busy", md_ns)),
                       message="the handover released")
        time.sleep(2)
    assert off.seen and min(off.seen) == 8, off.seen
    assert dep.spec.replicas == 8
    # The operator's own apply owns replicas again: a later change of spec.replicas is applied.
    apply(kube, md_manifest(md_ns, "busy", replicas=3))
    wait_for(lambda: deployment_replicas(kube, md_ns, "busy") == 3, message="spec.replicas applied again")


def test_an_autoscaled_deployment_starts_at_min_replicas_and_stays_there(kube, md_ns):
    apply(kube, md_manifest(md_ns, "born", autoscaling={"minReplicas": 3, "maxReplicas": 6,
                                                        "targetCPUUtilization": 70}))
    with ReplicaWatcher(kube, md_ns, "born") as born:
        wait_ready(kube, md_ns, "born", timeout=90)
        wait_for(lambda: "mlops.dev/replicas-handover" in (client.AppsV1Api(kube).read_namespaced_deployment(
            "born", md_ns).metadata.annotations or {}), message="replicas handed over")
        time.sleep(2)
    assert born.seen and min(born.seen) == 3, born.seen


class EndpointWatcher(Background):
    """Samples the Service's ready endpoints in the background; records whether the stable ever had none."""

    def __init__(self, kube, namespace: str, name: str):
        super().__init__(self._sample, interval=0.1, join_timeout=5)
        self.core = client.CoreV1Api(kube)
        self.namespace, self.name = namespace, name
        self.gaps, self.samples = 0, 0

    def _stable_ips(self) -> set[str]:
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=(
            f"mlops.dev/modeldeployment={self.name},mlops.dev/track=stable")).items
        return {p.status.pod_ip for p in pods if p.status.pod_ip}

    def _sample(self) -> None:
        ep = self.core.read_namespaced_endpoints(self.name, self.namespace)
        ready = {a.ip for s in ep.subsets or [] for a in s.addresses or []}
        self.samples += 1
        if not ready & self._stable_ips():
            self.gaps += 1


def test_canary_walks_its_steps_to_promotion_without_losing_stable_endpoints(kube, md_ns):
    stable_uri, canary_uri = MODELS.v1, MODELS.v2
    apply(kube, md_manifest(md_ns, "walk", replicas=4, model={"uri": stable_uri}))
    wait_ready(kube, md_ns, "walk")
    steps = [{"weight": 25, "pause": 1}, {"weight": 50, "pause": 1}]
    with EndpointWatcher(kube, md_ns, "walk") as watcher:
        apply(kube, md_manifest(md_ns, "walk", replicas=4, model={"uri": stable_uri},
                                rollout={"canary": {"model": {"uri": canary_uri}, "steps": steps}}))
        md = wait_for(lambda: (lambda m: m if (m["status"].get("canary") or {}).get("phase") == "Paused" else None)(
            get_md(kube, md_ns, "walk")), timeout=60, message="canary done with its steps")
        assert md["status"]["canary"]["step"] == 1
        # 4 canary pods on top of the 4 stable ones, from the live objects; the stable kept all of its pods.
        assert md["status"]["canary"]["weight"] == 50 and md["status"]["readyReplicas"] == 8
        apply(kube, md_manifest(md_ns, "walk", replicas=4, model={"uri": stable_uri},
                                rollout={"canary": {"model": {"uri": canary_uri}, "steps": steps, "promote": True}}))
        md = wait_for(lambda: (lambda m: m if (m["status"].get("canary") or {}).get("phase") == "Promoted" else None)(
            get_md(kube, md_ns, "walk")), timeout=90, message="canary promoted")
    assert watcher.samples > 10 and watcher.gaps == 0
    # What serves comes from the ready pods: the new model once the stable's new pods are the ready ones.
    wait_for(lambda: get_md(kube, md_ns, "walk")["status"]["stable"]["modelUri"] == canary_uri,
             message="the stable pods serve the canary model")
    apps = client.AppsV1Api(kube)
    wait_for(lambda: not any(d.metadata.name == "walk-canary" for d in apps.list_namespaced_deployment(md_ns).items),
             message="canary Deployment removed after promotion")
    reasons = [e.reason for e in events_for(kube, md_ns, "walk")]
    assert {"CanaryStarted", "CanaryStep", "CanaryPromoted"} <= set(reasons)
    # GitOps finish: the canary's model becomes spec.model; nothing rolls again.
    before = apps.read_namespaced_deployment("walk", md_ns).metadata.generation
    apply(kube, md_manifest(md_ns, "walk", replicas=4, model={"uri": canary_uri}))
    wait_ready(kube, md_ns, "walk")
    time.sleep(1)
    assert apps.read_namespaced_deployment("walk", md_ns).metadata.generation == before


def test_a_canary_aborted_mid_way_goes_away_and_the_stable_keeps_serving(kube, md_ns):
    stable_uri, canary_uri = MODELS.v1, MODELS.v2
    apply(kube, md_manifest(md_ns, "abort", replicas=2, model={"uri": stable_uri}))
    wait_ready(kube, md_ns, "abort")
    canary = {"model": {"uri": canary_uri}, "steps": [{"weight": 50, "pause": 3600}, {"weight": 100}]}
    with EndpointWatcher(kube, md_ns, "abort") as watcher:
        apply(kube, md_manifest(md_ns, "abort", replicas=2, model={"uri": stable_uri}, rollout={"canary": canary}))
        wait_for(lambda: (get_md(kube, md_ns, "abort")["status"].get("canary") or {}).get("weight") == 50,
                 timeout=60, message="canary serving half")
        apply(kube, md_manifest(md_ns, "abort", replicas=2, model={"uri": stable_uri},
                                rollout={"canary": {**canary, "abort": True}}))
        md = wait_for(lambda: (lambda m: m if (m["status"].get("canary") or {}).get("phase") == "Aborted"
                               and m["status"]["replicas"] == 2 else None)(get_md(kube, md_ns, "abort")),
                      timeout=60, message="canary aborted and gone")
    assert watcher.gaps == 0
    assert md["status"]["stable"]["modelUri"] == stable_uri
    assert "CanaryAborted" in [e.reason for e in events_for(kube, md_ns, "abort")]


def test_a_crashing_canary_does_not_advance(kube, md_ns):
    apply(kube, md_manifest(md_ns, "hold", replicas=2))
    wait_ready(kube, md_ns, "hold")
    apply(kube, md_manifest(md_ns, "hold", replicas=2, rollout={"canary": {
        "model": {"uri": MODELS.v2}, "steps": [{"weight": 50, "pause": 0}, {"weight": 100}],
        "podAnnotations": {FAILURE: "CrashLoopBackOff"}}}))
    md = wait_for(lambda: (lambda m: m if condition(m, "Progressing").get("reason") == "CanaryCrashLoopBackOff"
                           else None)(get_md(kube, md_ns, "hold")), timeout=60, message="canary blocked")
    time.sleep(2)
    md = get_md(kube, md_ns, "hold")
    assert md["status"]["canary"]["step"] == 0
    assert md["status"]["canary"]["phase"] == "Failed" and condition(md, "Progressing")["status"] == "False"
    assert condition(md, "Ready")["status"] == "True"  # the stable still serves, with both its pods
    assert client.AppsV1Api(kube).read_namespaced_deployment("hold", md_ns).status.ready_replicas == 2
    warnings = [e for e in events_for(kube, md_ns, "hold") if e.reason == "CanaryCrashLoopBackOff"]
    assert len(warnings) == 1 and warnings[0].type == "Warning"

    # Promoting a canary that never had a ready pod leaves the stable alone and says why.
    apply(kube, md_manifest(md_ns, "hold", replicas=2, rollout={"canary": {
        "model": {"uri": MODELS.v2}, "steps": [{"weight": 50, "pause": 0}, {"weight": 100}], "promote": True,
        "podAnnotations": {FAILURE: "CrashLoopBackOff"}}}))
    md = wait_for(lambda: (lambda m: m if m["status"].get("observedGeneration") == m["metadata"]["generation"]
                           else None)(get_md(kube, md_ns, "hold")), message="promotion seen")
    time.sleep(2)
    md = get_md(kube, md_ns, "hold")
    assert md["status"]["canary"]["phase"] == "Failed" and "promotion waits" in condition(md, "Progressing")["message"]
    stable = client.AppsV1Api(kube).read_namespaced_deployment("hold", md_ns)
    assert stable.spec.template.metadata.annotations["mlops.dev/model-uri"] == MODELS.v1
    assert md["status"]["stable"]["modelUri"] == MODELS.v1


def test_a_converged_deployment_and_an_operator_restart_make_no_writes(kube, md_ns, operator, audit):
    start = audit.mark()
    apply(kube, md_manifest(md_ns, "quiet", replicas=2))
    apply(kube, md_manifest(md_ns, "quiet-canary-md", replicas=2, rollout={"canary": {
        "model": {"uri": MODELS.v2}, "weight": 50}}))
    wait_ready(kube, md_ns, "quiet")
    wait_for(lambda: (get_md(kube, md_ns, "quiet-canary-md")["status"].get("canary") or {}).get("phase") == "Paused",
             timeout=60, message="fixed-weight canary settled")
    time.sleep(2)
    # The audit log does see the operator: creating these took applies and status writes.
    created = audit.writes(start, md_ns)
    assert {"deployments", "services", "modeldeployments"} <= {w["resource"] for w in created}
    assert any(w["subresource"] == "status" for w in created)
    mark = audit.mark()
    time.sleep(3)
    assert audit.writes(mark, md_ns) == [], "the operator wrote while nothing changed"
    mark = audit.mark()
    operator.restart()
    time.sleep(5)
    assert audit.writes(mark, md_ns) == [], "the operator wrote on a restart resync"
    # And it still acts after the restart.
    apply(kube, md_manifest(md_ns, "quiet", replicas=3))
    md = wait_ready(kube, md_ns, "quiet")
    assert md["status"]["readyReplicas"] == 3


class ModelServer:
    """A real HTTP server serving one model file (404 for anything else); stopped afterwards. It listens where
    the cluster's pods reach the host: the host's end of the pod network's link, else loopback."""

    def __init__(self, payload: bytes, host: str = "127.0.0.1"):
        import http.server

        payload_ = payload

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                if self.path == "/models/iris.joblib":
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(payload_)))
                    self.end_headers()
                    self.wfile.write(payload_)
                else:
                    self.send_error(404)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_the_model_is_fetched_over_http_by_the_operators_own_image(kube, md_ns, local_cluster):
    payload = b"pretend this is a pickled sklearn model"
    net = local_cluster.pod_network() if local_cluster is not None else None
    with ModelServer(payload, net.host_address if net else "127.0.0.1") as server:
        apply(kube, md_manifest(md_ns, "fetched", model={"uri": f"{server.url}/models/iris.joblib"}))
        wait_ready(kube, md_ns, "fetched")
        pod = client.CoreV1Api(kube).list_namespaced_pod(
            md_ns, label_selector="mlops.dev/modeldeployment=fetched").items[0]
        init = pod.spec.init_containers[0]
        assert init.image == "mlops-operator:test"
        assert init.command[:2] == ["mlops-operator", "fetch-model"]
        assert pod.status.init_container_statuses[0].state.terminated.exit_code == 0
        if local_cluster is not None:  # the simulator ran it here: the bytes are in the pod's model volume
            fetched = local_cluster.layout.root / "sim" / "pods" / md_ns / pod.metadata.name / "volumes" / "model"
            assert (fetched / "iris.joblib").read_bytes() == payload

        apply(kube, md_manifest(md_ns, "missing", model={"uri": f"{server.url}/models/absent.joblib"}))
        md = wait_ready(kube, md_ns, "missing", "False", "ModelFetchFailed")
    assert "404" in condition(md, "Ready")["message"]


def test_a_child_the_api_server_rejects_is_an_invalid_spec_not_a_retry_loop(kube, md_ns, operator, audit):
    apply(kube, md_manifest(md_ns, "odd", replicas=1))
    wait_ready(kube, md_ns, "odd")
    before = client.AppsV1Api(kube).read_namespaced_deployment("odd", md_ns).metadata.resource_version
    # affinity passes through our schema unchecked; the Deployment's schema has no such field.
    apply(kube, md_manifest(md_ns, "odd", replicas=1,
                            scheduling={"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnored": []}}}))
    md = wait_ready(kube, md_ns, "odd", "False", "InvalidSpec")
    assert "rejected the Deployment" in condition(md, "Ready")["message"]
    assert "affinity" in condition(md, "Ready")["message"]
    mark = audit.mark()
    time.sleep(3)
    retries = [w for w in audit.writes(mark, md_ns) if w["resource"] == "deployments"]
    assert retries == [], "the operator kept trying the rejected Deployment"
    after = client.AppsV1Api(kube).read_namespaced_deployment("odd", md_ns).metadata.resource_version
    assert after == before
