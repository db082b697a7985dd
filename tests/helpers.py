"""Small helpers shared by the integration tests (import as `from helpers import wait_for`)."""

from __future__ import annotations

import contextlib
import pathlib
import socket
import subprocess
import threading
import time
import urllib.request

import pytest

from mlops_localcluster.audit import AuditLog  # noqa: F401  (tests import it from here)


def wait_for(predicate, timeout: float = 30, interval: float = 0.2, message: str = "condition"):
    """Polls predicate until it returns a truthy value; fails the test with the last value seen."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {message}; last seen: {last!r}")


class Background:
    """Calls step() over and over in a daemon thread while a with-block runs, pausing `interval` seconds between
    calls, until the block ends (or after `times` calls). The first exception step() raises ends the loop and is
    raised again in the test, by join() or at the end of the block, instead of dying unseen with the thread.
    A step that blocks for long (a watch) can end early by looking at `stopping`."""

    def __init__(self, step, interval: float = 0, times: int | None = None, join_timeout: float = 30):
        self.step, self.interval, self.times, self.join_timeout = step, interval, times, join_timeout
        self.error: BaseException | None = None
        self.stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        calls = 0
        while not self.stopping.is_set() and (self.times is None or calls < self.times):
            try:
                self.step()
            except BaseException as err:  # noqa: BLE001  (pytest.fail's too: raised again in the test's thread)
                self.error = err
                return
            calls += 1
            self.stopping.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, exc_type, *exc):
        self.stopping.set()
        self._thread.join(self.join_timeout)
        if exc_type is None:
            self._raise_error()

    def join(self, timeout: float) -> bool:
        """Waits up to timeout for the loop to end by itself (after `times` calls); True when it has."""
        self._thread.join(timeout)
        self._raise_error()
        return not self._thread.is_alive()

    def _raise_error(self) -> None:
        if self.error is not None:
            name = getattr(self.step, "__qualname__", repr(self.step))
            raise AssertionError(f"{name} failed in the background: {self.error!r}") from self.error


def request(kube, method: str, path: str, body=None, query=None, content_type: str = "application/json",
            timeout: float = 60):
    """A raw API call through the official client's ApiClient; returns (status code, parsed body) and never
    raises on HTTP errors, so tests can assert on rejections. A call that gets no answer within `timeout` seconds
    raises (a connection left hanging by a restarted API server must not stall a test)."""
    import json
    from urllib.parse import urlencode

    cfg = kube.configuration
    url = cfg.host + path + ("?" + urlencode(query) if query else "")
    headers = {"Content-Type": content_type, "Accept": "application/json"}
    token = cfg.get_api_key_with_prefix("BearerToken") or cfg.get_api_key_with_prefix("authorization")
    if token:
        headers["Authorization"] = token
    resp = kube.call_api(method, url, header_params=headers, body=body, _request_timeout=timeout)
    raw = resp.read()
    try:
        return resp.status, json.loads(raw) if raw else None
    except ValueError:
        return resp.status, raw.decode(errors="replace")


def apply_request(kube, obj: dict, field_manager: str = "mlops-tests") -> tuple[int, object]:
    """Server-side apply of any object as kubectl sends it (characters beyond U+FFFF as UTF-8, which the Python
    client's json.dumps would write as surrogate pairs the API server's YAML reader refuses); returns (code, body)."""
    from mlops_operator.k8s.client import object_path, yaml_safe_json

    return request(kube, "PATCH", object_path(obj), body=yaml_safe_json(obj).encode(),
                   content_type="application/apply-patch+yaml", query={"fieldManager": field_manager, "force": "true"})


def apply(kube, obj: dict, field_manager: str = "mlops-tests") -> dict:
    """Server-side apply of any object (no discovery round trips); fails the test on an error answer."""
    code, data = apply_request(kube, obj, field_manager)
    if code >= 300:
        pytest.fail(f"apply {obj['kind']}/{obj['metadata']['name']} failed: {code} {data}")
    return data


def run_cronjob_now(kube, namespace: str, cronjob: str, job: str) -> None:
    """What `kubectl create job <job> --from=cronjob/<cronjob>` does: a Job from the CronJob's template (its labels
    too), once the CronJob exists."""
    cron = wait_for(lambda: (lambda r: r[1] if r[0] == 200 else None)(request(
        kube, "GET", f"/apis/batch/v1beta1/namespaces/{namespace}/cronjobs/{cronjob}")),
        message=f"CronJob {cronjob}")
    template = cron["spec"]["jobTemplate"]
    body = {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": job, "namespace": namespace,
                         "labels": template.get("metadata", {}).get("labels", {})},
            "spec": template["spec"]}
    code, answer = request(kube, "POST", f"/apis/batch/v1/namespaces/{namespace}/jobs", body=body)
    assert code == 201, answer


@contextlib.contextmanager
def loopback_server(name: str, argv, root: pathlib.Path, ready_timeout: float = 30):
    """Starts a server on a free loopback port (`argv(port)` gives its command line; output to root/<name>.log),
    waits for its `/-/ready` (Prometheus and Alertmanager answer there), yields its base URL and stops it by pid."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log_path = root / f"{name.lower()}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv(port), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if proc.poll() is not None:
                pytest.fail(f"{name} exited with {proc.returncode}; see {log_path}")
            try:
                if urllib.request.urlopen(f"{url}/-/ready", timeout=1).status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{name} not ready in {ready_timeout:.0f} s; see {log_path}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextlib.contextmanager
def alertmanager_server(root: pathlib.Path, config: str = ""):
    """A real Alertmanager (Debian's) on loopback, clustering off, dropping every notification; `config` adds YAML
    lines (e.g. a `global:` block). Yields its base URL; stopped by pid. Skips the test without the binary."""
    import shutil

    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        pytest.skip("no Alertmanager binary (make test installs Debian's prometheus-alertmanager)")
    (root / "alertmanager.yml").write_text(
        config + "route: {receiver: drop, group_wait: 1s}\nreceivers: [{name: drop}]\n")

    def argv(port: int) -> list[str]:
        return [binary, f"--config.file={root / 'alertmanager.yml'}", f"--storage.path={root}",
                f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="]

    with loopback_server("Alertmanager", argv, root, ready_timeout=20) as url:
        yield url


def rbac_table() -> set[tuple[str, str, str]]:
    """(group, resource, verb) rows of the operator's table in docs/rbac.md (the chart's rules must equal it)."""
    rows, inside = set(), False
    for line in (pathlib.Path(__file__).resolve().parents[1] / "docs" / "rbac.md").read_text().splitlines():
        if line.startswith("| group (core"):
            inside = True
            continue
        if inside:
            if not line.startswith("|"):
                break
            cells = [c.strip().strip("`") for c in line.strip("|").split("|")]
            if set(cells[0]) <= {"-"}:
                continue
            group = "" if cells[0] == "core" else cells[0]
            rows.add((group, cells[1], cells[2]))
    return rows
