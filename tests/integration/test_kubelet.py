"""The simulator as a kubelet for pods that run as processes (`python:*` images): probes, restarts and back-off,
init container retries, missing Secrets, deletion with SIGTERM, and `kubectl logs` through the API server.

With the pod network each pod has its own loopback; without it pods share the host's, so each test takes free
ports either way.
"""

from __future__ import annotations

import os
import socket
import subprocess
import textwrap

import pytest
from kubernetes import client
from test_simulator import cond, container_status, get_pod, pod_body, wait_pod

from helpers import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("needs_scheduler", "needs_simulator")]

PYTHON = "python:3.11"

# An HTTP server that answers 200 while the file given as its 2nd argument exists, 503 otherwise.
SERVER = textwrap.dedent("""
    import http.server, os, sys
    port, ready_file = int(sys.argv[1]), sys.argv[2]
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if os.path.exists(ready_file) else 503)
            self.end_headers()
        def log_message(self, *a):
            pass
    print("serving on", port, flush=True)
    http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def python_pod(name, script, *args, restart="Always", **container):
    body = pod_body(name, image=PYTHON, restart=restart, command=["python", "-c", script, *map(str, args)])
    body["spec"]["containers"][0].update(container)
    return body


@pytest.fixture
def core(kube):
    return client.CoreV1Api(kube)


def ready(pod) -> bool:
    return cond(pod, "Ready").get("status") == "True"


def ready_ips(core, namespace, service) -> list[str]:
    ep = core.read_namespaced_endpoints(service, namespace)
    return [a.ip for s in ep.subsets or [] for a in s.addresses or []]


def test_readiness_probe_decides_ready_and_endpoints(kube, core, namespace, tmp_path, needs_controller_manager):
    port, flag = free_port(), tmp_path / "ready"
    probe = {"httpGet": {"path": "/", "port": port}, "periodSeconds": 1, "failureThreshold": 1}
    body = python_pod("web", SERVER, port, flag, readinessProbe=probe)
    body["metadata"]["labels"] = {"app": "web"}
    core.create_namespaced_pod(namespace, body)
    core.create_namespaced_service(namespace, {"metadata": {"name": "web"}, "spec": {
        "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": port}]}})
    pod = wait_pod(kube, namespace, "web", lambda p: "running" in (container_status(p).get("state") or {}))
    assert pod["metadata"]["labels"]["sim.mlops.dev/runs"] == "process"
    assert not ready(pod) and not container_status(pod)["ready"]  # the probe fails until the file exists

    flag.touch()
    pod = wait_pod(kube, namespace, "web", ready, message="Ready once the probe passes")
    wait_for(lambda: ready_ips(core, namespace, "web") == [pod["status"]["podIP"]], message="a ready endpoint")

    flag.unlink()
    pod = wait_pod(kube, namespace, "web", lambda p: not ready(p), message="not Ready once the probe fails")
    assert container_status(pod)["restartCount"] == 0 and "running" in container_status(pod)["state"]
    wait_for(lambda: not ready_ips(core, namespace, "web"), message="the endpoint to leave")

    flag.touch()
    wait_pod(kube, namespace, "web", ready, message="Ready again")
    wait_for(lambda: ready_ips(core, namespace, "web"), message="the endpoint to come back")


def test_failing_liveness_probe_restarts_the_container(kube, core, namespace, tmp_path):
    port, flag = free_port(), tmp_path / "alive"
    flag.touch()
    check = f"import os, sys; sys.exit(0 if os.path.exists({str(flag)!r}) else 1)"
    probe = {"exec": {"command": ["python", "-c", check]},
             "periodSeconds": 1, "failureThreshold": 2}
    body = python_pod("live", SERVER, port, flag, livenessProbe=probe)
    body["spec"]["terminationGracePeriodSeconds"] = 2
    core.create_namespaced_pod(namespace, body)
    pod = wait_pod(kube, namespace, "live", ready)
    assert container_status(pod)["restartCount"] == 0

    flag.unlink()
    pod = wait_pod(kube, namespace, "live", lambda p: container_status(p).get("restartCount", 0) >= 1,
                   timeout=60, message="a restart after the liveness probe failed")
    last = container_status(pod)["lastState"]["terminated"]
    assert "Liveness probe failed" in last.get("message", "") and last["exitCode"] != 0
    flag.touch()
    pod = wait_pod(kube, namespace, "live", lambda p: ready(p) and "running" in container_status(p)["state"],
                   timeout=60, message="running again")
    assert container_status(pod)["restartCount"] >= 1


def test_a_crashing_container_backs_off_into_crashloopbackoff(kube, core, namespace):
    core.create_namespaced_pod(namespace, python_pod("crash", "import sys; print('dying'); sys.exit(3)"))

    def backoff(seconds):
        def check(p):
            waiting = (container_status(p).get("state") or {}).get("waiting") or {}
            return waiting.get("reason") == "CrashLoopBackOff" and f"back-off {seconds}s" in waiting.get("message", "")
        return check
    pod = wait_pod(kube, namespace, "crash", backoff(10), timeout=60, message="back-off 10s")
    cs = container_status(pod)
    assert cs["restartCount"] >= 1 and cs["lastState"]["terminated"]["exitCode"] == 3
    assert cs["lastState"]["terminated"]["reason"] == "Error" and "dying" in cs["lastState"]["terminated"]["message"]
    assert pod["status"]["phase"] == "Running" and not ready(pod)
    pod = wait_pod(kube, namespace, "crash", backoff(20), timeout=90, message="the back-off to double")
    assert container_status(pod)["restartCount"] > cs["restartCount"]


def test_onfailure_pod_restarts_until_it_succeeds(kube, core, namespace, tmp_path):
    counter = tmp_path / "runs"
    script = ("import sys; f = open(sys.argv[1], 'a+'); f.write('x'); f.seek(0); "
              "sys.exit(0 if len(f.read()) >= 2 else 1)")
    core.create_namespaced_pod(namespace, python_pod("retry", script, counter, restart="OnFailure"))
    pod = wait_pod(kube, namespace, "retry", lambda p: p["status"].get("phase") in ("Succeeded", "Failed"),
                   timeout=60)
    assert pod["status"]["phase"] == "Succeeded" and container_status(pod)["restartCount"] == 1


def test_failed_init_container_is_retried_with_back_off(kube, core, namespace, tmp_path):
    counter = tmp_path / "tries"
    script = ("import sys; f = open(sys.argv[1], 'a+'); f.write('x'); f.seek(0); n = len(f.read()); "
              "print('try', n); sys.exit(0 if n >= 3 else 1)")
    init = [{"name": "prepare", "image": PYTHON, "command": ["python", "-c", script, str(counter)]}]
    core.create_namespaced_pod(namespace, pod_body("init", image="app:1", init=init))
    pod = wait_pod(kube, namespace, "init", lambda p: (container_status(p, init=True).get("state") or {})
                   .get("waiting", {}).get("reason") == "CrashLoopBackOff", timeout=60,
                   message="Init:CrashLoopBackOff")
    ics = container_status(pod, init=True)
    assert pod["status"]["phase"] == "Pending" and cond(pod, "Initialized")["status"] == "False"
    assert ics["lastState"]["terminated"]["exitCode"] == 1 and ics["lastState"]["terminated"]["reason"] == "Error"
    pod = wait_pod(kube, namespace, "init", ready, timeout=60, message="Ready after the third try")
    ics = container_status(pod, init=True)
    assert ics["restartCount"] == 2 and ics["state"]["terminated"]["exitCode"] == 0


@pytest.mark.parametrize("image", ["app:1", PYTHON])
def test_missing_secret_in_env_blocks_the_pod_until_it_exists(kube, core, namespace, image):
    body = pod_body("needs-secret", image=image, command=["python", "-c", "import time; time.sleep(3600)"])
    body["spec"]["containers"][0]["env"] = [
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}]
    core.create_namespaced_pod(namespace, body)
    pod = wait_pod(kube, namespace, "needs-secret", lambda p: (container_status(p).get("state") or {})
                   .get("waiting", {}).get("reason") == "CreateContainerConfigError")
    assert container_status(pod)["state"]["waiting"]["message"] == 'secret "creds" not found'
    assert pod["status"]["phase"] == "Pending" and not ready(pod)

    core.create_namespaced_secret(namespace, {"metadata": {"name": "creds"}, "stringData": {"token": "t"}})
    wait_pod(kube, namespace, "needs-secret", ready, message="Ready once the Secret exists")


def test_missing_secret_volume_keeps_the_pod_container_creating(kube, core, namespace):
    body = pod_body("needs-volume", volumes=[{"name": "creds", "secret": {"secretName": "later"}}])
    core.create_namespaced_pod(namespace, body)
    pod = wait_pod(kube, namespace, "needs-volume", lambda p: (container_status(p).get("state") or {})
                   .get("waiting", {}).get("reason") == "ContainerCreating")
    assert pod["status"]["phase"] == "Pending" and not ready(pod)
    core.create_namespaced_secret(namespace, {"metadata": {"name": "later"}, "stringData": {"k": "v"}})
    wait_pod(kube, namespace, "needs-volume", ready, message="Ready once the Secret exists")


def test_deletion_sends_sigterm_then_sigkill_after_the_grace_period(kube, core, namespace, tmp_path):
    pids, note = tmp_path / "pid", tmp_path / "term"
    script = textwrap.dedent("""
        import os, signal, sys, time
        def on_term(*_):
            open(sys.argv[2], "w").write("TERM")  # and keeps running: only SIGKILL ends it
        signal.signal(signal.SIGTERM, on_term)
        open(sys.argv[1], "w").write(str(os.getpid()))
        while True:
            time.sleep(0.1)
    """)
    body = python_pod("stubborn", script, pids, note)
    body["spec"]["terminationGracePeriodSeconds"] = 2
    core.create_namespaced_pod(namespace, body)
    wait_pod(kube, namespace, "stubborn", ready)
    pid = int(wait_for(lambda: pids.exists() and pids.read_text(), message="the pid file"))
    core.delete_namespaced_pod("stubborn", namespace)
    wait_for(lambda: get_pod(kube, namespace, "stubborn") is None, timeout=60, message="the pod to go")
    assert note.read_text() == "TERM"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def kubectl(local_cluster, *args, **kw):
    from mlops_localcluster import build
    binary = build.k8s_kubectl_or_none()
    if binary is None or local_cluster is None:
        pytest.skip("needs the local cluster and its cached kubectl")
    return [str(binary), "--kubeconfig", str(local_cluster.layout.kubeconfig), *args]


def test_kubectl_logs(kube, core, namespace, local_cluster):
    script = "import time\nfor i in range(100000):\n    print('line', i)\n    time.sleep(0.2)"
    core.create_namespaced_pod(namespace, python_pod("talker", script))
    wait_pod(kube, namespace, "talker", ready)
    wait_for(lambda: "line 3" in subprocess.run(kubectl(local_cluster, "-n", namespace, "logs", "talker"),
                                                capture_output=True, text=True).stdout, message="four lines")
    done = subprocess.run(kubectl(local_cluster, "-n", namespace, "logs", "talker", "--tail=2", "--timestamps"),
                          capture_output=True, text=True, timeout=60)
    lines = done.stdout.splitlines()
    assert done.returncode == 0 and len(lines) == 2, done.stderr
    assert all(line.split(" ", 1)[0].endswith("Z") and " line " in line for line in lines)

    follow = subprocess.Popen(kubectl(local_cluster, "-n", namespace, "logs", "-f", "talker"),
                              stdout=subprocess.PIPE, text=True)
    try:
        seen = [follow.stdout.readline() for _ in range(8)]  # more lines than were there: some came later
    finally:
        follow.kill()
        follow.wait()
    assert [s.strip() for s in seen] == [f"line {i}" for i in range(8)]


def test_kubectl_logs_previous_and_simulated_containers(kube, core, namespace, local_cluster):
    core.create_namespaced_pod(namespace, python_pod("crashy", "import sys; print('run over'); sys.exit(1)"))
    core.create_namespaced_pod(namespace, pod_body("sim"))
    wait_pod(kube, namespace, "crashy", lambda p: container_status(p).get("restartCount", 0) >= 1, timeout=60)
    done = subprocess.run(kubectl(local_cluster, "-n", namespace, "logs", "crashy", "--previous"),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "run over\n", done.stderr
    wait_pod(kube, namespace, "sim", ready)
    done = subprocess.run(kubectl(local_cluster, "-n", namespace, "logs", "sim"), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0 and "is simulated" in done.stderr


def test_a_restarted_simulator_runs_process_pods_again(kube, core, namespace, local_cluster):
    if local_cluster is None:
        pytest.skip("restarts the local cluster's simulator")
    script = "import time\nprint('up', flush=True)\nwhile True:\n    time.sleep(1)"
    core.create_namespaced_pod(namespace, python_pod("survivor", script))
    wait_pod(kube, namespace, "survivor", ready)
    local_cluster.restart("simulator")
    pod = wait_pod(kube, namespace, "survivor", lambda p: container_status(p).get("restartCount") == 1 and ready(p),
                   timeout=60, message="the container started again by the new simulator")
    assert "running" in container_status(pod)["state"]
    done = wait_for(lambda: (lambda d: d if d.returncode == 0 and "up" in d.stdout else None)(subprocess.run(
        kubectl(local_cluster, "-n", namespace, "logs", "survivor"), capture_output=True, text=True, timeout=60)),
        message="kubectl logs through the new simulator's endpoint")
    assert done.stdout == "up\n"
