"""The node simulator's pure parts: lifecycle decisions, status bodies (simulated and process pods), image table,
path remapping, Secret/ConfigMap checks, probes, log rendering."""

from __future__ import annotations

import copy
import pathlib
import socket
import subprocess
import sys

import pytest

from mlops_localcluster import kubeletapi, nodes, probes, simprocess
from mlops_localcluster.simstatus import (
    ANN_FAILURE,
    ANN_FAILURE_AFTER,
    ANN_FAILURE_CONTAINER,
    ANN_RUN_SECONDS,
    CONFIG_RECHECK_SECONDS,
    STUCK_DELETION_SECONDS,
    Facts,
    Failure,
    Settings,
    Terminated,
    already_applied,
    config_waiting_status,
    decide,
    finished_status,
    gang_key,
    image_name,
    is_own_image,
    needs_worker,
    parse_failure,
    pod_phase,
    process_status,
    rendezvous,
    running_status,
    runs_label,
    ts,
    uses_local_processes,
    views_from_status,
)
from mlops_localcluster.simulator import IpAllocator, load_config

T0 = 1_700_000_000.0
S = Settings(start_delay=0.5, run_seconds=1.0, crash_backoff=2.0, crash_backoff_max=60.0)


def pod(restart="Always", annotations=None, image="nginx:1.19", init=None, containers=None, **spec):
    p = {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "annotations": annotations or {}},
        "spec": {"nodeName": "gpu-node-0", "restartPolicy": restart,
                 "containers": containers or [{"name": "main", "image": image}], **spec},
        "status": {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": ts(T0)}]},
    }
    if init:
        p["spec"]["initContainers"] = init
    return p


def facts(**kw):
    return Facts(**{"host_ip": "172.20.0.10", "pod_ip": "10.244.0.7", "seen_at": T0, **kw})


def apply(p, body):
    """What a strategic merge patch of the body does to the pod's status (enough for these tests)."""
    p = copy.deepcopy(p)
    status = p["status"]
    for k, v in body["status"].items():
        if k == "conditions":
            by_type = {c["type"]: c for c in status.get("conditions", [])}
            by_type.update({c["type"]: c for c in v})
            status["conditions"] = list(by_type.values())
        else:
            status[k] = v
    return p


def cond(p, type_):
    return next(c for c in p["status"]["conditions"] if c["type"] == type_)


def run_to_end(p, settings=S, limit=20, start=T0):
    """Drives decide() like the simulator does; returns the final pod and the list of actions."""
    now, actions = start, []
    for _ in range(limit):
        plan = decide(p, now, settings, facts())
        actions.append(plan.action)
        if plan.action == "wait":
            now = plan.at
        elif plan.action == "patch":
            assert not already_applied(plan.body, p)
            p = apply(p, plan.body)
        else:
            return p, actions, now
    return p, actions, now


# --- normal lifecycles ---

def test_bound_pod_waits_for_start_delay_then_runs_ready():
    p = pod()
    plan = decide(p, T0 + 0.1, S, facts())
    assert plan.action == "wait" and plan.at == T0 + 0.5
    plan = decide(p, T0 + 0.5, S, facts())
    st = plan.body["status"]
    assert st["phase"] == "Running" and st["podIP"] == "10.244.0.7" and st["hostIP"] == "172.20.0.10"
    assert st["startTime"] == ts(T0 + 0.5)
    assert {c["type"]: c["status"] for c in st["conditions"]} == {
        "Initialized": "True", "Ready": "True", "ContainersReady": "True"}
    (cs,) = st["containerStatuses"]
    assert cs["ready"] and cs["started"] and cs["restartCount"] == 0
    assert cs["state"] == {"running": {"startedAt": ts(T0 + 0.5)}}
    assert cs["containerID"].startswith("containerd://") and cs["imageID"].startswith("docker-pullable://nginx@")


def test_always_pod_stays_running():
    final, actions, _ = run_to_end(pod())
    assert final["status"]["phase"] == "Running" and actions[-1] == "none"


def test_pod_created_with_node_name_gets_pod_scheduled():
    p = pod()
    p["status"] = {}
    st = decide(p, T0 + 1, S, facts()).body["status"]
    assert {c["type"] for c in st["conditions"]} == {"PodScheduled", "Initialized", "Ready", "ContainersReady"}


def test_unbound_pod_is_left_to_the_scheduler():
    p = pod()
    del p["spec"]["nodeName"]
    assert decide(p, T0 + 10, S, facts()).action == "none"


@pytest.mark.parametrize("restart", ["Never", "OnFailure"])
def test_run_to_completion_pod_succeeds_after_run_time(restart):
    final, actions, now = run_to_end(pod(restart))
    st = final["status"]
    assert st["phase"] == "Succeeded" and actions == ["wait", "patch", "wait", "patch", "none"]
    assert now == pytest.approx(T0 + 1.5)
    term = st["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 0 and term["reason"] == "Completed"
    assert st["containerStatuses"][0]["ready"] is False
    assert cond(final, "Ready")["status"] == "False" and cond(final, "Ready")["reason"] == "PodCompleted"


def test_run_seconds_annotation_overrides_run_time():
    _, _, now = run_to_end(pod("Never", {ANN_RUN_SECONDS: "5"}))
    assert now == pytest.approx(T0 + 5.5)


def test_init_containers_of_other_images_complete():
    p = pod(init=[{"name": "a", "image": "busybox"}, {"name": "b", "image": "busybox"}])
    st = decide(p, T0 + 1, S, facts()).body["status"]
    assert [s["state"]["terminated"]["reason"] for s in st["initContainerStatuses"]] == ["Completed", "Completed"]


def test_run_time_uses_precise_start_when_known():
    p = apply(pod("Never"), decide(pod("Never"), T0 + 0.5, S, facts()).body)
    assert decide(p, T0 + 1.2, S, facts(started_at=T0 + 0.9)).at == pytest.approx(T0 + 1.9)


def worker(rank, started=None, ranks=2, attempt="1"):
    """A TrainingJob's worker as the operator labels it, started at `started` (None: not yet)."""
    p = pod("Never", {"mlops.dev/world-size": str(ranks)})
    p["metadata"].update(name=f"job-w{rank}-a{attempt}", uid=f"u-{rank}", labels={
        "mlops.dev/trainingjob": "job", "mlops.dev/attempt": attempt, "mlops.dev/rank": str(rank)})
    if started is not None:
        p = apply(p, decide(p, started, S, facts()).body)  # Running since `started`
    return p


def test_a_gang_worker_runs_its_time_only_once_every_rank_started():
    early, late = worker(0, started=T0 + 0.5), worker(1)
    assert gang_key(early) == ("ns", "job", "1", 2) and gang_key(pod("Never")) is None
    assert rendezvous(early, [early, late]) == (True, None)
    # rank 1 has not started: rank 0 waits at the rendezvous however long its run time was over
    waits = decide(early, T0 + 30, S, facts(waits_for_peers=True))
    assert waits.action == "wait" and waits.at == pytest.approx(T0 + 30.5)
    late = worker(1, started=T0 + 40)
    assert rendezvous(early, [early, late, worker(0, started=T0 + 1, attempt="2")]) == (False, pytest.approx(T0 + 40))
    # both run: the run time (1 s) counts from the last rank's start, not from rank 0's own
    assert decide(early, T0 + 40.2, S, facts(rendezvous_at=T0 + 40)).at == pytest.approx(T0 + 41)
    done = decide(early, T0 + 41, S, facts(rendezvous_at=T0 + 40))
    assert done.body["status"]["phase"] == "Succeeded"


# --- failures ---

def test_parse_failure():
    assert parse_failure({}) is None
    assert parse_failure({ANN_FAILURE: "exit:3"}) == Failure("exit", 3)
    assert parse_failure({ANN_FAILURE: "oomkilled", ANN_FAILURE_AFTER: "2"}) == Failure("OOMKilled", 137, 2.0)
    assert parse_failure({ANN_FAILURE: "Evicted", ANN_FAILURE_CONTAINER: "a, b"}).containers == ("a", "b")
    with pytest.raises(ValueError):
        parse_failure({ANN_FAILURE: "explode"})


def test_exit_code_fails_a_never_pod():
    final, _, _ = run_to_end(pod("Never", {ANN_FAILURE: "exit:3"}))
    st = final["status"]
    term = st["containerStatuses"][0]["state"]["terminated"]
    assert st["phase"] == "Failed" and term["exitCode"] == 3 and term["reason"] == "Error"


def test_oomkilled_never_pod():
    final, _, _ = run_to_end(pod("Never", {ANN_FAILURE: "OOMKilled"}))
    term = final["status"]["containerStatuses"][0]["state"]["terminated"]
    assert final["status"]["phase"] == "Failed" and term == {**term, "exitCode": 137, "reason": "OOMKilled"}


@pytest.mark.parametrize("mode,reason,code", [("OOMKilled", "OOMKilled", 137), ("exit:2", "Error", 2),
                                              ("CrashLoopBackOff", "Error", 1)])
def test_always_pod_crash_loops_with_growing_restart_count(mode, reason, code):
    p = pod(annotations={ANN_FAILURE: mode})
    p = apply(p, decide(p, T0 + 0.5, S, facts()).body)
    st = p["status"]
    (cs,) = st["containerStatuses"]
    assert st["phase"] == "Running" and cs["restartCount"] == 1 and cs["ready"] is False
    assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert cs["lastState"]["terminated"]["reason"] == reason and cs["lastState"]["terminated"]["exitCode"] == code
    assert cond(p, "Ready")["status"] == "False"
    finished = int(T0 + 0.5)  # timestamps are whole seconds
    plan = decide(p, T0 + 1, S, facts())
    assert plan.action == "wait" and plan.at == finished + 2.0
    p = apply(p, decide(p, finished + 2.0, S, facts()).body)
    assert p["status"]["containerStatuses"][0]["restartCount"] == 2
    assert decide(p, finished + 2.5, S, facts()).at == int(finished + 2.0) + 4.0  # back-off doubles


def test_failure_container_limits_the_crash():
    p = pod(annotations={ANN_FAILURE: "CrashLoopBackOff", ANN_FAILURE_CONTAINER: "side"},
            containers=[{"name": "main", "image": "a"}, {"name": "side", "image": "b"}])
    st = decide(p, T0 + 1, S, facts()).body["status"]
    main, side = st["containerStatuses"]
    assert main["ready"] and "running" in main["state"] and side["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert cond({"status": st}, "Ready")["message"] == "containers with unready status: [side]"


@pytest.mark.parametrize("mode", ["ImagePullBackOff", "ErrImagePull"])
def test_image_pull_failures_stay_pending(mode):
    final, actions, _ = run_to_end(pod(annotations={ANN_FAILURE: mode}, image="reg/missing:1"))
    st = final["status"]
    waiting = st["containerStatuses"][0]["state"]["waiting"]
    assert st["phase"] == "Pending" and waiting["reason"] == mode and "reg/missing:1" in waiting["message"]
    assert actions[-1] == "none"


def test_evicted():
    final, _, _ = run_to_end(pod(annotations={ANN_FAILURE: "Evicted"}))
    st = final["status"]
    assert st["phase"] == "Failed" and st["reason"] == "Evicted"
    assert st["message"].startswith("The node was low on resource: memory.")


def test_failure_after_runs_ready_first():
    p = pod(annotations={ANN_FAILURE: "OOMKilled", ANN_FAILURE_AFTER: "3"})
    p = apply(p, decide(p, T0 + 0.5, S, facts()).body)
    assert p["status"]["phase"] == "Running" and cond(p, "Ready")["status"] == "True"
    plan = decide(p, T0 + 1, S, facts(started_at=T0 + 0.5))
    assert plan.action == "wait" and plan.at == T0 + 3.5
    st = decide(p, T0 + 3.5, S, facts(started_at=T0 + 0.5)).body["status"]
    assert st["containerStatuses"][0]["lastState"]["terminated"]["reason"] == "OOMKilled"


def test_bad_annotation_runs_normally():
    p = pod(annotations={ANN_FAILURE: "nonsense"})
    plan = decide(p, T0 + 1, S, facts())
    assert plan.body["status"]["phase"] == "Running" and "nonsense" in plan.note


# --- deletion ---

def test_terminating_pods_are_deleted_bound_or_not():
    p = pod()
    p["metadata"]["deletionTimestamp"] = ts(T0)
    p["metadata"]["deletionGracePeriodSeconds"] = 30
    assert decide(p, T0, S, facts()).action == "delete"
    del p["spec"]["nodeName"]
    assert decide(p, T0, S, facts()).action == "delete"
    p["metadata"]["finalizers"] = ["example.com/hold"]
    p["metadata"]["deletionGracePeriodSeconds"] = 0  # only finalizers hold it now
    assert decide(p, T0 + 60, S, facts()).action == "none"


def test_a_half_done_zero_grace_deletion_is_finished():
    """The API server marked the pod (grace 0) but did not remove it, as when etcd restarts between the two
    steps: after a short wait the simulator deletes it again, which removes it."""
    p = pod()
    p["metadata"]["deletionTimestamp"] = ts(T0)
    p["metadata"]["deletionGracePeriodSeconds"] = 0
    waiting = decide(p, T0 + 1, S, facts())
    assert waiting.action == "wait" and waiting.at == T0 + STUCK_DELETION_SECONDS
    assert decide(p, T0 + STUCK_DELETION_SECONDS, S, facts()).action == "delete"


def test_finished_pods_are_left_alone():
    final, _, _ = run_to_end(pod("Never"))
    assert decide(final, T0 + 100, S, facts()).action == "none"


# --- own image and local processes ---

@pytest.mark.parametrize("image,own", [
    ("mlops-operator:0.1.0", True), ("mlops-operator", True), ("example.invalid/acme/mlops-operator:1@sha256:ab", True),
    ("localhost:5000/mlops-operator", True), ("mlops-operator-extra:1", False), ("nginx:1.19", False),
    ("mlops-operator/server:1", False), ("", False)])
def test_own_image_detection(image, own):
    assert is_own_image(image, ["mlops-operator"]) is own


def test_own_image_with_a_repository():
    assert is_own_image("example.invalid/acme/mlops-operator:2", ["example.invalid/acme/mlops-operator"])
    assert not is_own_image("other.invalid/other/mlops-operator:2", ["example.invalid/acme/mlops-operator"])
    assert image_name("reg:5000/a/b:1.0") == "b"


def test_which_pods_run_locally():
    assert uses_local_processes(pod("Never", image="mlops-operator:0.1.0"), S)
    assert uses_local_processes(pod("Always", image="python:3.11-slim"), S)  # servers run too
    assert uses_local_processes(pod("Always", init=[{"name": "i", "image": "mlops-operator:0.1.0"}]), S)
    assert not uses_local_processes(pod("Never"), S)
    assert not uses_local_processes(pod("Always", image="python-extra:3"), S)


@pytest.mark.parametrize("image,init,label", [
    ("python:3.11", None, "process"), ("nginx:1.19", None, "simulated"),
    ("vllm/vllm-openai:v0.6.3", [{"name": "fetch", "image": "mlops-operator:1"}], "mixed")])
def test_runs_label(image, init, label):
    assert runs_label(pod(image=image, init=init), S) == label


def test_a_worker_resumes_what_is_left_and_stops_when_done():
    served = pod("Always", image="vllm/vllm-openai:1", init=[{"name": "fetch", "image": "mlops-operator:1"}])
    assert needs_worker(served, S)
    inits, mains = views_from_status(served)
    inits[0].end(Terminated(0, T0, T0 + 1))
    mains[0].run(T0 + 1)
    mains[0].ready = True
    running = apply(served, process_status(served, T0 + 1, facts(), inits, mains))
    assert running["status"]["phase"] == "Running"
    assert not needs_worker(running, S)  # only the init container was a process: nothing left to do
    assert decide(running, T0 + 9, S, facts()).action == "none"
    server = pod("Always", image="python:3.11")
    assert needs_worker(apply(server, running_status(server, T0, facts())), S)  # its process died with us


def test_own_image_pod_is_run_once_and_resumed():
    p = pod("Never", image="mlops-operator:0.1.0")
    assert decide(p, T0 + 1, S, facts()).action == "run-local"
    assert decide(p, T0 + 1, S, facts(local_busy=True)).action == "none"
    p = apply(p, running_status(p, T0 + 1, facts()))
    assert decide(p, T0 + 9, S, facts()).action == "run-local"  # processes died with an earlier simulator
    assert decide(pod("Never", {ANN_FAILURE: "exit:1"}, image="mlops-operator:0.1.0"), T0 + 1, S,
                  facts()).action == "patch"  # failure annotations are simulated, not run


def test_local_results_make_the_status():
    p = pod("Never", image="mlops-operator:0.1.0")
    st = finished_status(p, T0 + 5, facts(), {"main": Terminated(2, T0 + 1, T0 + 5, message="boom")})["status"]
    term = st["containerStatuses"][0]["state"]["terminated"]
    assert st["phase"] == "Failed" and term["exitCode"] == 2 and term["reason"] == "Error"
    assert term["message"] == "boom"


def test_already_applied():
    p = pod()
    body = decide(p, T0 + 1, S, facts()).body
    assert not already_applied(body, p)
    assert already_applied(body, apply(p, body))


# --- path remapping, env and argv ---

def _local_pod(tmp_path):
    p = pod("Never", image="mlops-operator:0.1.0", volumes=[
        {"name": "work", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "c"}}])
    p["spec"]["containers"] = [{
        "name": "main", "image": "mlops-operator:0.1.0", "command": ["mlops-operator"],
        "args": ["train", "--out", "/data/model", "--log=/data/logs/x.txt", "/database", "$(MODEL)"],
        "volumeMounts": [{"name": "work", "mountPath": "/data"}, {"name": "cfg", "mountPath": "/data/cfg/"}],
        "env": [{"name": "MODEL", "value": "/data/cfg/model.yaml"},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "token"}}},
                {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "mode"}}}],
    }]
    return p


def test_path_remapping_and_env(tmp_path):
    p = _local_pod(tmp_path)
    data = {("Secret", "s"): {"token": "t0k"}, ("ConfigMap", "c"): {"mode": "fast", "model.yaml": "x: 1"}}
    lookup = lambda kind, ns, name: data.get((kind, name))  # noqa: E731
    dirs = simprocess.prepare_volumes(p, tmp_path, lookup)
    vol = tmp_path / "pods" / "ns" / "p" / "volumes"
    assert dirs == {"work": vol / "work", "cfg": vol / "cfg"}
    assert (vol / "cfg" / "model.yaml").read_text() == "x: 1"
    c = p["spec"]["containers"][0]
    mm = simprocess.mounts(c, dirs)
    assert mm[0][0] == "/data/cfg"  # longest first
    env = simprocess.container_env(p, c, lookup, mm)
    assert env == {"MODEL": f"{vol}/cfg/model.yaml", "POD": "p", "NS": "ns", "TOKEN": "t0k", "MODE": "fast"}
    words = simprocess.argv(c, env, mm, bin_dir=pathlib.Path("/venv/bin"))
    assert words == ["/venv/bin/mlops-operator", "train", "--out", f"{vol}/work/model",
                     f"--log={vol}/work/logs/x.txt", "/database", f"{vol}/cfg/model.yaml"]
    assert simprocess.log_path(tmp_path, "ns", "p", "u-1", "main", 2) == tmp_path / "logs/ns_p_u-1/main/2.log"


def test_remap_path_edges():
    mm = [("/data", "/h/d")]
    assert simprocess.remap_path("/data", mm) == "/h/d"
    assert simprocess.remap_path("/data/", mm) == "/h/d/"
    assert simprocess.remap_path("/datax", mm) == "/datax"
    assert simprocess.remap_path("relative/data", mm) == "relative/data"
    assert simprocess.expand("$$(X) $(X) $(Y)", {"X": "1"}) == "$(X) 1 $(Y)"


def test_default_entrypoint_and_python():
    words = simprocess.argv({"name": "m", "args": ["--help"]}, {}, [], bin_dir=pathlib.Path("/b"))
    assert words == ["/b/mlops-operator", "--help"]
    assert simprocess.argv({"name": "m", "command": ["python", "-c", "1"]}, {}, [])[0] == sys.executable


def test_runner_runs_a_process(tmp_path):

    p = pod("Never", image="mlops-operator:0.1.0")
    table = simprocess.ProcessTable()
    runner = simprocess.Runner(tmp_path, tmp_path / "kubeconfig", None, table)
    c_ok = {"name": "ok", "command": [sys.executable, "-c", "import os; print(os.environ['KUBECONFIG'])"]}
    c_bad = {"name": "bad", "command": [sys.executable, "-c", "import sys; print('oops'); sys.exit(4)"]}
    c_missing = {"name": "missing", "command": ["/no/such/binary"]}
    res = runner.run_all(p, [c_ok, c_bad, c_missing], {})
    assert res["ok"].exit_code == 0 and res["bad"].exit_code == 4 and "oops" in res["bad"].message
    assert res["missing"].reason == "StartError"
    line = (tmp_path / "logs" / "ns_p_u-1" / "ok" / "0.log").read_text()
    assert line.endswith(f" stdout F {(tmp_path / 'kubeconfig').resolve()}\n")  # the CRI log format


# --- pool, config, IPs ---

def test_default_pool():
    pool = nodes.default_pool()
    assert pool.names() == ["gpu-node-0", "gpu-node-1", "cpu-node-0"]
    gpu, _, cpu = pool.nodes
    assert gpu.resources() == {"cpu": "64", "memory": "512Gi", "pods": "110", "ephemeral-storage": "1Ti",
                               "nvidia.com/gpu": "8"}
    assert gpu.all_labels()["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert gpu.all_taints() == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    assert cpu.all_taints() == [] and "nvidia.com/gpu" not in cpu.resources()
    assert nodes.node_status(gpu, "1.2.3.4")["nodeInfo"]["kubeletVersion"] == "v1.20.2"


def test_pool_from_yaml(tmp_path):
    f = tmp_path / "pool.yaml"
    f.write_text("nodes:\n- {name: big, count: 3, gpus: 4, gpuProduct: A100, taints: []}\n"
                 "- {name: small, cpu: '2', labels: {team: x}}\n")
    pool = nodes.load_pool(f)
    assert pool.names() == ["big-0", "big-1", "big-2", "small"]
    assert pool.nodes[0].all_taints() == [] and pool.nodes[3].all_labels()["team"] == "x"
    assert pool.address_of("small") == "172.20.0.13"
    with pytest.raises(nodes.ClusterError):
        nodes.pool_from_dict({"nodes": [{"name": "a", "gpu": 1}]})


def test_node_problems_notice_the_not_ready_taint():
    gpu = nodes.default_pool().nodes[0]
    observed = {"metadata": {"labels": gpu.all_labels()},
                "spec": {"taints": gpu.all_taints() + [{"key": nodes.NOT_READY_TAINT, "effect": "NoSchedule"}]},
                "status": nodes.node_status(gpu, "1.2.3.4")}
    assert any("taints" in p for p in nodes.node_problems(gpu, observed))
    observed["spec"]["taints"] = gpu.all_taints()
    assert nodes.node_problems(gpu, observed) == []


def test_config_file(tmp_path):
    (tmp_path / "pool.yaml").write_text("nodes: [{name: only}]\n")
    cfg = tmp_path / "sim.yaml"
    cfg.write_text("startDelaySeconds: 0.1\nrunSeconds: 3\nownImages: [acme/trainer]\npool: pool.yaml\n")
    c = load_config(str(cfg), {"runSeconds": 7, "pool": None})
    assert (c.settings.start_delay, c.settings.run_seconds, c.settings.own_images) == (0.1, 7.0, ("acme/trainer",))
    assert c.pool.names() == ["only"]


def test_ip_allocator_is_unique_and_reuses():
    ips = IpAllocator()
    ips.claim("old", "10.244.0.2")
    a, b = ips.get("a"), ips.get("b")
    assert len({a, b, "10.244.0.2"}) == 3 and ips.get("a") == a
    ips.release("a")
    assert ips.get("c") != b


def test_quantities_compare_as_numbers():
    assert nodes.quantity("1k") == nodes.quantity("1000") and nodes.quantity("1Gi") == nodes.quantity("1024Mi")
    assert nodes.quantity("500m") == nodes.quantity("0.5") and nodes.quantity("bogus") is None


def test_process_table_cancels_only_active_runs():
    table = simprocess.ProcessTable()
    table.stop("never-started")
    assert not table.cancelled("never-started")
    table.begin("u")
    table.stop("u")
    assert table.cancelled("u")
    table.end("u")
    assert not table.cancelled("u")


# --- pods run by a pod worker: phase and status from container views ---

def views(pod_, **by_name):
    """ContainerViews in spec order; by_name maps a container name to a function that sets its view up."""
    inits, mains = views_from_status(pod_)
    for v in inits + mains:
        if v.name in by_name:
            by_name[v.name](v)
    return inits, mains


def ran(code, restarts=0):
    def setup(v):
        for _ in range(restarts):
            v.end(Terminated(code, T0, T0 + 1))
            v.back_off("CrashLoopBackOff", "back-off")
        v.end(Terminated(code, T0 + 2, T0 + 3))
    return setup


def running(ready=True):
    def setup(v):
        v.run(T0 + 1)
        v.ready = ready
    return setup


@pytest.mark.parametrize("restart,main,phase", [
    ("Always", running(), "Running"),
    ("Always", ran(0), "Running"),  # will restart
    ("Never", ran(0), "Succeeded"),
    ("Never", ran(2), "Failed"),
    ("OnFailure", ran(2), "Running"),  # exited, not yet backing off: restarted all the same, never Failed
    ("OnFailure", ran(0), "Succeeded"),
    ("OnFailure", lambda v: (ran(2)(v), v.back_off("CrashLoopBackOff", "")), "Running"),
    ("Always", lambda v: None, "Pending"),  # never started
])
def test_pod_phase_as_a_kubelet_computes_it(restart, main, phase):
    p = pod(restart, image="python:3.11")
    assert pod_phase(p, *views(p, main=main)) == phase


def test_failed_init_container_is_retried_then_never_fails_the_pod():
    init = [{"name": "a", "image": "python:3.11"}, {"name": "b", "image": "python:3.11"}]
    for restart, phase in (("Always", "Pending"), ("Never", "Failed")):
        p = pod(restart, image="app:1", init=init)
        inits, mains = views(p, a=ran(1))
        st = process_status(p, T0 + 3, facts(), inits, mains)["status"]
        a, b = st["initContainerStatuses"]
        assert st["phase"] == phase
        assert a["state"]["terminated"]["reason"] == "Error" and b["state"]["waiting"]["reason"] == "ContainerCreating"
        if restart == "Always":
            assert cond({"status": st}, "Initialized")["status"] == "False"
    p = pod("Always", image="app:1", init=init)
    inits, mains = views(p, a=lambda v: (ran(1)(v), v.back_off("CrashLoopBackOff", "back-off 10s")))
    a = process_status(p, T0 + 3, facts(), inits, mains)["status"]["initContainerStatuses"][0]
    assert a["state"]["waiting"]["reason"] == "CrashLoopBackOff" and a["restartCount"] == 1
    assert a["lastState"]["terminated"]["exitCode"] == 1  # Init:CrashLoopBackOff with the failed run kept


def test_readiness_decides_ready_and_restarts_are_counted():
    p = pod("Always", image="python:3.11")
    st = process_status(p, T0 + 2, facts(), *views(p, main=running(ready=False)))["status"]
    assert st["phase"] == "Running" and cond({"status": st}, "Ready")["status"] == "False"
    assert cond({"status": st}, "ContainersReady")["reason"] == "ContainersNotReady"
    assert st["containerStatuses"][0]["ready"] is False and "running" in st["containerStatuses"][0]["state"]
    p2 = apply(p, {"status": st})
    st = process_status(p2, T0 + 3, facts(), *views(p, main=running()))["status"]
    assert cond({"status": st}, "Ready")["status"] == "True" and st["containerStatuses"][0]["ready"]

    def crashed_twice(v):
        ran(137, restarts=1)(v)
        v.back_off("CrashLoopBackOff", "back-off 10s restarting failed container=main")
    cs = process_status(p, T0 + 4, facts(), *views(p, main=crashed_twice))["status"]["containerStatuses"][0]
    assert cs["restartCount"] == 2 and cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert cs["lastState"]["terminated"]["exitCode"] == 137 and cs["lastState"]["terminated"]["reason"] == "Error"


def test_views_resume_from_the_status():
    p = pod("Always", image="python:3.11", init=[{"name": "i", "image": "python:3.11"}])
    inits, mains = views(p, i=ran(0), main=lambda v: (ran(1, restarts=2)(v), v.back_off("CrashLoopBackOff", "")))
    p = apply(p, process_status(p, T0 + 5, facts(), inits, mains))
    inits2, mains2 = views_from_status(p)
    assert inits2[0].terminated.exit_code == 0
    assert mains2[0].restart_count == 3 and mains2[0].last.exit_code == 1


# --- Secrets and ConfigMaps a pod needs ---

DATA = {("Secret", "creds"): {"token": "t"}, ("ConfigMap", "cfg"): {"mode": "fast"}}
LOOKUP = lambda kind, ns, name: DATA.get((kind, name))  # noqa: E731


@pytest.mark.parametrize("env,problem", [
    ([{"name": "T", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}], ""),
    ([{"name": "T", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "token"}}}], 'secret "nope" not found'),
    ([{"name": "T", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "t", "optional": True}}}], ""),
    ([{"name": "T", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "other"}}}],
     "couldn't find key other in ConfigMap ns/cfg"),
])
def test_env_problem(env, problem):
    c = {"name": "main", "image": "x", "env": env}
    assert simprocess.env_problem(pod(containers=[c]), [c], LOOKUP) == problem


def test_env_from_and_volume_problems():
    c = {"name": "main", "image": "x", "envFrom": [{"configMapRef": {"name": "missing"}}]}
    assert simprocess.env_problem(pod(containers=[c]), [c], LOOKUP) == 'configmap "missing" not found'
    p = pod(volumes=[{"name": "v", "secret": {"secretName": "gone"}}])
    assert simprocess.volume_problem(p, LOOKUP) == 'MountVolume.SetUp failed for volume "v" : secret "gone" not found'
    assert simprocess.volume_problem(pod(volumes=[{"name": "v", "configMap": {"name": "cfg"}}]), LOOKUP) == ""


def test_a_simulated_pod_waits_for_its_secret_and_is_looked_at_again():
    p = pod("Always")
    plan = decide(p, T0 + 1, S, facts(config_error='secret "creds" not found'))
    cs = plan.body["status"]["containerStatuses"][0]
    assert plan.action == "patch" and plan.at == T0 + 1 + CONFIG_RECHECK_SECONDS
    assert cs["state"]["waiting"] == {"reason": "CreateContainerConfigError", "message": 'secret "creds" not found'}
    assert plan.body["status"]["phase"] == "Pending" and not cs["ready"]
    p = apply(p, plan.body)
    assert decide(p, T0 + 4, S, facts(config_error="still")).body["status"]["phase"] == "Pending"
    assert decide(p, T0 + 4, S, facts()).body["status"]["phase"] == "Running"  # the Secret came
    volume = decide(pod("Always"), T0 + 1, S, facts(volume_error="MountVolume.SetUp failed"))
    assert volume.body["status"]["containerStatuses"][0]["state"]["waiting"] == {"reason": "ContainerCreating"}


def test_config_waiting_with_init_containers():
    p = pod("Always", init=[{"name": "i", "image": "x"}])
    st = config_waiting_status(p, T0, facts(config_error="secret \"s\" not found"))["status"]
    assert st["initContainerStatuses"][0]["state"]["waiting"]["reason"] == "CreateContainerConfigError"
    assert st["containerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing"


# --- probes ---

def test_probe_parsing_defaults_and_named_ports():
    c = {"name": "m", "ports": [{"name": "http", "containerPort": 8080}],
         "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}},
         "livenessProbe": {"tcpSocket": {"port": 9000}, "periodSeconds": 2, "failureThreshold": 5},
         "startupProbe": {"exec": {"command": ["true"]}}}
    r = probes.parse_probe(c, "readinessProbe")
    assert (r.kind, r.port, r.path, r.period, r.timeout, r.success_threshold, r.failure_threshold) == \
        ("http", 8080, "/ready", 10.0, 1.0, 1, 3)
    live = probes.parse_probe(c, "livenessProbe")
    assert (live.kind, live.port, live.period, live.failure_threshold) == ("tcp", 9000, 2.0, 5)
    assert probes.parse_probe({"name": "m"}, "readinessProbe") is None
    with pytest.raises(ValueError, match="port 'web'"):
        probes.parse_probe({"readinessProbe": {"httpGet": {"port": "web"}}}, "readinessProbe")


def test_probe_tracker_thresholds_and_timing():
    probe = probes.Probe("tcp", port=1, initial_delay=5, period=2, success_threshold=2, failure_threshold=3)
    t = probes.ProbeTracker(probe, T0, initial=False)
    assert not t.due(T0 + 4) and t.due(T0 + 5)
    assert not t.record(True, T0 + 5) and t.result is False  # one success of two
    assert t.next_at == T0 + 7
    assert t.record(True, T0 + 7) and t.result is True
    assert not t.record(False, T0 + 9) and not t.record(False, T0 + 11) and t.result is True
    assert t.record(False, T0 + 13, "refused") and t.result is False and t.message == "refused"
    assert not t.record(True, T0 + 15) and t.result is False  # successes start counting again


def test_probes_run_for_real(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        assert not probes.run_probe(probes.Probe("tcp", port=port))[0]  # bound, not listening
        s.listen()
        assert probes.run_probe(probes.Probe("tcp", port=port)) == (True, "")
    runner = lambda cmd, timeout: subprocess.run(cmd, stdout=subprocess.PIPE, timeout=timeout)  # noqa: E731
    assert probes.run_probe(probes.Probe("exec", command=(sys.executable, "-c", "pass")), runner)[0]
    ok, why = probes.run_probe(probes.Probe("exec", command=(sys.executable, "-c", "print('bad'); exit(1)")), runner)
    assert not ok and why == "bad"


# --- kubectl logs: the CRI files rendered ---

def test_log_lines_rendered_as_kubectl_shows_them():
    raw = simprocess.cri_line(T0, "stdout", b"one\n") + simprocess.cri_line(T0 + 10, "stderr", b"two\n")
    assert raw.startswith(b"2023-11-14T22:13:20.000000000Z stdout F one\n")
    assert kubeletapi.render(raw) == [b"one\n", b"two\n"]
    assert kubeletapi.render(raw, timestamps=True)[1] == b"2023-11-14T22:13:30.000000000Z two\n"
    assert kubeletapi.render(raw, since=T0 + 5) == [b"two\n"]
