"""`make demo`: the closed loop on the local cluster, with real programs, as a story told while it happens.

1. A TrainingJob trains the fraud model (examples/loop/fraud.py, scikit-learn, in a python:3.11 worker) and
   writes it to a folder of this machine (file://); the ModelDeployment `fraud` serves it with MLServer and the
   inference agent, which logs every request.
2. A traffic pod sends payments through the Service and posts each one's true label; a DriftMonitor (every
   minute) compares the logged inputs with the data the served model was trained on: no drift.
3. The traffic shifts (era 1): the DriftMonitor detects drift, alerts a real Alertmanager and starts a retraining
   on the last 30 s of labelled traffic.
4. The new model becomes the canary; the analysis (Prometheus scraping the agents, and accuracy on the feedback
   labels) passes; it is promoted; the drift clears on the next check (the reference follows the served model).
5. A second retraining, with a bug on purpose (shuffled labels), becomes the next canary: the analysis fails it
   on accuracy and rolls it back while the stable keeps answering.

The manifests are examples/loop/loop.yaml, filled in here (`render`). Every step prints the time since the start
and a command to look at it; the end prints the timeline again and writes it as JSON and SVG (`timeline_svg`)
under the demo's folder. The steps are methods of `Loop`, so tests/integration/test_loop.py runs the same story
with assertions in between. The operator is the one the caller runs (`main` starts one, as `make run` does).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "loop"
GROUP = "/apis/mlops.dev/v1alpha1"
PATHS = {  # (apiVersion, kind) -> the collection path under a namespace
    ("v1", "ConfigMap"): "/api/v1/namespaces/{ns}/configmaps",
    ("v1", "Service"): "/api/v1/namespaces/{ns}/services",
    ("apps/v1", "Deployment"): "/apis/apps/v1/namespaces/{ns}/deployments",
    ("mlops.dev/v1alpha1", "TrainingJob"): GROUP + "/namespaces/{ns}/trainingjobs",
    ("mlops.dev/v1alpha1", "ModelDeployment"): GROUP + "/namespaces/{ns}/modeldeployments",
    ("mlops.dev/v1alpha1", "DriftMonitor"): GROUP + "/namespaces/{ns}/driftmonitors",
}
FEATURES = ["amount", "distance_km", "hour_of_day", "merchant_risk"]


class DemoError(Exception):
    pass


def render(values: dict[str, str]) -> list[dict]:
    """examples/loop/loop.yaml with its ${NAME} placeholders filled in."""
    text = (EXAMPLE / "loop.yaml").read_text()
    for name, value in values.items():
        text = text.replace("${" + name + "}", value)
    return [d for d in yaml.safe_load_all(text) if d]


@dataclasses.dataclass
class Step:
    seconds: float
    what: str
    look: str


@dataclasses.dataclass
class Loop:
    """The story's steps against a cluster (`kube`: the official client's ApiClient) whose operator runs."""

    kube: Any
    namespace: str
    root: pathlib.Path  # a folder every pod of the cluster can read and write (process pods share the host's)
    kubectl: str = "kubectl"  # how the printed commands call kubectl
    say: Callable[[str], None] = print
    timeout: float = 300
    started: float = dataclasses.field(default_factory=time.time)
    timeline: list[Step] = dataclasses.field(default_factory=list)
    values: dict[str, str] = dataclasses.field(default_factory=dict)
    docs: dict[str, dict] = dataclasses.field(default_factory=dict)
    ports: dict[str, int] = dataclasses.field(default_factory=dict)

    # --- plumbing ---------------------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
                query: dict | None = None) -> tuple[int, Any]:
        from urllib.parse import urlencode

        cfg = self.kube.configuration
        url = cfg.host + path + ("?" + urlencode(query) if query else "")
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        token = cfg.get_api_key_with_prefix("BearerToken") or cfg.get_api_key_with_prefix("authorization")
        if token:
            headers["Authorization"] = token
        resp = self.kube.call_api(method, url, header_params=headers, body=body, _request_timeout=60)
        raw = resp.read()
        return resp.status, json.loads(raw) if raw else None

    def apply(self, doc: dict) -> dict:
        path = PATHS[(doc["apiVersion"], doc["kind"])].format(ns=self.namespace) + "/" + doc["metadata"]["name"]
        code, body = self.request("PATCH", path, doc, "application/apply-patch+yaml",
                                  {"fieldManager": "mlops-demo", "force": "true"})
        if code >= 300:
            raise DemoError(f"applying {doc['kind']} {doc['metadata']['name']}: {code} {body}")
        return body

    def get(self, kind: str, name: str) -> dict | None:
        version = "apps/v1" if kind == "Deployment" else "v1" if kind in ("ConfigMap", "Service") else \
            "mlops.dev/v1alpha1"
        code, body = self.request("GET", PATHS[(version, kind)].format(ns=self.namespace) + "/" + name)
        return body if code == 200 else None

    def status(self, kind: str, name: str) -> dict:
        return (self.get(kind, name) or {}).get("status") or {}

    def wait(self, what: str, check: Callable[[], Any], timeout: float | None = None) -> Any:
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            found = check()
            if found:
                return found
            if time.monotonic() > deadline:
                raise DemoError(f"gave up waiting {timeout or self.timeout:.0f} s for {what}")
            time.sleep(1)

    def mark(self, what: str, look: str = "", at: str | None = None) -> None:
        """A step of the story, at `at` (a time an object recorded, RFC 3339) or now."""
        moment = datetime.strptime(at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp() if at \
            else time.time()
        step = Step(round(max(0.0, moment - self.started), 1), what, look)
        self.timeline.append(step)
        minutes, seconds = divmod(int(step.seconds), 60)
        self.say(f"[{minutes}:{seconds:02d}] {what}" + (f"\n         $ {look}" if look else ""))

    def k(self, args: str) -> str:
        return f"{self.kubectl} -n {self.namespace} {args}"

    def events(self, reason: str) -> list[dict]:
        code, body = self.request("GET", f"/api/v1/namespaces/{self.namespace}/events",
                                  query={"fieldSelector": f"reason={reason}"})
        return body["items"] if code == 200 else []

    def http(self, port: int, path: str, body: dict | None = None, timeout: float = 10) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as err:
            return err.code, None
        except OSError:
            return 0, None
        try:
            return resp.status, json.loads(raw or b"null")
        except ValueError:
            return resp.status, raw.decode(errors="replace")  # a text answer (/-/ready)

    # --- the story --------------------------------------------------------------------------------------------

    def setup(self) -> None:
        """The namespace, the code, Prometheus and Alertmanager (their NodePorts read back for the operator)."""
        code, body = self.request("POST", "/api/v1/namespaces", {
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": self.namespace, "labels": {"mlops.dev/demo": "loop"}}})
        if code not in (201, 409):
            raise DemoError(f"creating namespace {self.namespace}: {code} {body}")
        self.wait("the namespace's default ServiceAccount", lambda: self.request(
            "GET", f"/api/v1/namespaces/{self.namespace}/serviceaccounts/default")[0] == 200, 60)
        for sub in ("models", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fraud-code"},
                    "data": {name: (EXAMPLE / name).read_text() for name in ("fraud.py", "targets.py")}})
        self.values = {"NAMESPACE": self.namespace, "ROOT": str(self.root),
                       "PROMETHEUS_URL": "", "ALERTMANAGER_URL": "", "FIRST_MODEL": ""}
        for doc in render(self.values)[:5]:  # Prometheus and Alertmanager first: the others name their addresses
            self.apply(doc)
        for name in ("prometheus", "alertmanager"):
            svc = self.get("Service", name) or {}
            self.ports[name] = svc["spec"]["ports"][0]["nodePort"]
        self.values["PROMETHEUS_URL"] = f"http://127.0.0.1:{self.ports['prometheus']}"
        self.values["ALERTMANAGER_URL"] = f"http://127.0.0.1:{self.ports['alertmanager']}"
        for name in ("prometheus", "alertmanager"):
            self.wait(f"{name} ready on 127.0.0.1:{self.ports[name]}",
                      lambda n=name: self.http(self.ports[n], "/-/ready")[0] == 200, 120)
        self.docs = {f"{d['kind']}/{d['metadata']['name']}": d for d in render(self.values)}
        self.mark(f"Prometheus (127.0.0.1:{self.ports['prometheus']}) and Alertmanager "
                  f"(127.0.0.1:{self.ports['alertmanager']}) run in the namespace {self.namespace}",
                  self.k("get pods -o wide"))

    def train_first(self) -> str:
        self.apply(self.docs["TrainingJob/fraud-v1"])
        self.mark("TrainingJob fraud-v1 trains the first model on generated payments (era 0)",
                  self.k("get tj fraud-v1 -w"))
        st = self.wait("fraud-v1 to finish", lambda: (lambda s: s if s.get("phase") in ("Succeeded", "Failed")
                                                       else None)(self.status("TrainingJob", "fraud-v1")))
        if st["phase"] != "Succeeded":
            raise DemoError(f"fraud-v1 failed: {st.get('failure')}")
        self.mark(f"fraud-v1 Succeeded: its model is {st['modelUri']}", self.k("logs fraud-v1-w0-a1"),
                  st.get("completionTime"))
        return str(st["modelUri"])

    def serve(self, first_model: str) -> int:
        """The ModelDeployment on the first model; returns its NodePort once a request gets an answer."""
        self.values["FIRST_MODEL"] = first_model
        self.docs = {f"{d['kind']}/{d['metadata']['name']}": d for d in render(self.values)}
        self.apply(self.docs["ModelDeployment/fraud"])
        self.mark("ModelDeployment fraud: MLServer and the inference agent serve fraud-v1", self.k("get md fraud -w"))
        svc = self.wait("the fraud Service", lambda: self.get("Service", "fraud"), 60)
        port = int(svc["spec"]["ports"][0]["nodePort"])
        self.ports["fraud"] = port
        # Ready first, then one request: every request is logged, and the drift checks read the log.
        self.wait("fraud Ready", lambda: any(c.get("type") == "Ready" and c.get("status") == "True" for c in
                                             self.status("ModelDeployment", "fraud").get("conditions") or []), 240)
        payment = {"inputs": [{"name": "payment", "shape": [1, 4], "datatype": "FP64",
                               "data": [[35.0, 6.5, 14.0, 0.2]]}]}
        self.wait("an answer from the fraud model", lambda: self.http(port, "/v2/models/fraud/infer",
                                                                      payment)[0] == 200, 60)
        self.mark(f"fraud answers on 127.0.0.1:{port}",
                  f"curl -s -H 'Content-Type: application/json' -d '{json.dumps(payment)}' "
                  f"http://127.0.0.1:{port}/v2/models/fraud/infer")
        return port

    def start_traffic(self) -> None:
        self.apply(self.docs["Deployment/traffic"])
        self.apply(self.docs["DriftMonitor/fraud"])
        self.mark("traffic: 20 payments a second (era 0), each labelled at /v1/feedback; DriftMonitor fraud checks "
                  "every minute", self.k("logs deploy/traffic -f"))

    def next_check(self, after: str | None, what: str) -> dict:
        """The DriftMonitor's first successful check later than `after` (an RFC 3339 time, or None)."""
        def newer() -> dict | None:
            st = self.status("DriftMonitor", "fraud")
            last = st.get("lastRun") or {}
            return st if last.get("time") and (after is None or last["time"] > after) else None
        return self.wait(what, newer, 150)

    def no_drift_first(self) -> dict:
        st = self.next_check(None, "the first drift check")
        while st["lastRun"]["rows"]["current"] < 100 or st["lastRun"]["datasetDrift"]:
            if st["lastRun"]["datasetDrift"]:
                raise DemoError(f"drift before any shift: {st['lastRun']}")
            st = self.next_check(st["lastRun"]["time"], "a check with a full window")
        self.mark(f"drift check: no drift ({st.get('share')} of the features past their threshold, under driftShare; "
                  f"{st['lastRun']['rows']['current']} rows against fraud-v1's reference)", self.k("get dm fraud"),
                  st["lastRun"]["time"])
        return st

    def shift(self) -> float:
        """The world changes: the traffic's era 1, right after a check, so the next check sees only era 1."""
        deploy = self.docs["Deployment/traffic"]
        for var in deploy["spec"]["template"]["spec"]["containers"][0]["env"]:
            if var["name"] == "ERA":
                var["value"] = "1"
        self.apply(deploy)
        self.mark("the traffic shifts to era 1: larger amounts, longer distances, riskier merchants",
                  self.k("set env deployment/traffic ERA=1   # what the demo did"))
        return time.time()

    def drift_and_retrain(self, after: str) -> tuple[dict, str]:
        st = self.next_check(after, "the check after the shift")
        while not st["lastRun"]["datasetDrift"]:
            st = self.next_check(st["lastRun"]["time"], "drift")
        self.mark(f"drift check: drift in {st.get('share')} of the features", self.k("describe dm fraud"),
                  st["lastRun"]["time"])
        record = self.wait("the retraining", lambda: (self.status("DriftMonitor", "fraud").get("retrains") or [
            None])[-1])
        retrain = record["trainingJob"]
        self.mark(f"DriftMonitor fraud started TrainingJob {retrain} on the last 30 s of labelled traffic",
                  self.k("get tj -l mlops.dev/driftmonitor=fraud"), record["time"])
        alert = self.wait("the alert in Alertmanager", self.alerts, 60)[0]
        self.mark(f"Alertmanager has the alert {alert['labels']['alertname']} firing",
                  f"curl -s http://127.0.0.1:{self.ports['alertmanager']}/api/v2/alerts",
                  alert.get("startsAt", "")[:19] + "Z" if alert.get("startsAt") else None)
        return st, retrain

    def alerts(self) -> list[dict]:
        code, body = self.http(self.ports["alertmanager"], "/api/v2/alerts")
        if code != 200 or not isinstance(body, list):
            return []
        return [a for a in body if a.get("labels", {}).get("driftmonitor") == "fraud"
                and (a.get("status") or {}).get("state") == "active"]

    def canary_outcome(self, job: str, phases: tuple[str, ...]) -> dict:
        """Waits for `job` to succeed and promote, then for its canary's phase to reach one of `phases`."""
        st = self.wait(f"{job} to finish", lambda: (lambda s: s if s.get("phase") in ("Succeeded", "Failed")
                                                    else None)(self.status("TrainingJob", job)))
        if st["phase"] != "Succeeded":
            raise DemoError(f"{job} failed: {st.get('failure')}")
        uri = st["modelUri"]
        self.mark(f"{job} Succeeded: {uri} becomes the canary of fraud", self.k(f"get tj {job}"),
                  st.get("completionTime"))

        def decided() -> dict | None:
            canary = self.status("ModelDeployment", "fraud").get("canary") or {}
            return canary if canary.get("modelUri") == uri and canary.get("phase") in phases else None
        canary = self.wait(f"the canary {uri} decided", decided, 420)
        analysis = canary.get("analysis") or {}
        checks = "; ".join(f"{c['name']} {c['verdict']}: {c['message']}" for c in analysis.get("checks") or [])
        self.mark(f"canary {canary['phase']} by analysis ({checks})",
                  self.k("get md fraud -o jsonpath='{.status.canary}'"), analysis.get("lastTime"))
        return canary

    def stable_serves(self, uri: str) -> dict:
        return self.wait(f"the stable serving {uri}", lambda: (lambda s: s if (s.get("stable") or {}).get(
            "modelUri") == uri else None)(self.status("ModelDeployment", "fraud")))

    def drift_cleared(self, after: str) -> dict:
        st = self.next_check(after, "a check after the promotion")
        while st["lastRun"]["datasetDrift"]:
            st = self.next_check(st["lastRun"]["time"], "the drift to clear")
        self.mark(f"drift check: no drift against the promoted model's reference ({st.get('share')} of the "
                  "features)", self.k("get dm fraud"), st["lastRun"]["time"])
        self.wait("the alert resolved", lambda: not self.alerts(), 60)
        self.mark("the alert is resolved in Alertmanager",
                  f"curl -s http://127.0.0.1:{self.ports['alertmanager']}/api/v2/alerts")
        return st

    def bad_retrain(self) -> str:
        """A retraining by hand, as a person would run one after a code change, with a bug: shuffled labels."""
        template = self.docs["DriftMonitor/fraud"]["spec"]["actions"]["retrain"]["template"]
        spec = json.loads(json.dumps(template))
        spec["env"].append({"name": "SHUFFLE_LABELS", "value": "1"})
        spec["output"]["modelUri"] = f"file://{self.root}/models/fraud-bad/"
        self.apply({"apiVersion": "mlops.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "fraud-bad"},
                    "spec": spec})
        self.mark("TrainingJob fraud-bad: a retraining with a bug on purpose (shuffled labels)",
                  self.k("get tj fraud-bad -w"))
        return "fraud-bad"

    def stop_traffic(self) -> None:
        self.request("DELETE", PATHS[("apps/v1", "Deployment")].format(ns=self.namespace) + "/traffic")

    def story(self) -> None:
        """The whole loop, in order."""
        self.setup()
        first = self.train_first()
        self.serve(first)
        self.start_traffic()
        quiet = self.no_drift_first()
        self.shift()
        drifted, retrain = self.drift_and_retrain(quiet["lastRun"]["time"])
        good = self.canary_outcome(retrain, ("Promoted", "RolledBack"))
        if good["phase"] != "Promoted":
            raise DemoError(f"the retrained model's canary was {good['phase']}: {good.get('analysis')}")
        self.stable_serves(good["modelUri"])
        self.mark(f"the stable serves {good['modelUri']} now", self.k("get md fraud"))
        bad = self.bad_retrain()
        outcome = self.canary_outcome(bad, ("Promoted", "RolledBack"))
        if outcome["phase"] != "RolledBack":
            raise DemoError(f"the bad model's canary was {outcome['phase']}, not RolledBack")
        self.drift_cleared(drifted["lastRun"]["time"])
        self.mark(f"the stable still serves {good['modelUri']}: the bad model never took over",
                  self.k("get mlops"))


def timeline_svg(steps: list[Step], title: str) -> str:
    """The timeline as an SVG picture: one row a step, a dot at its time on a shared axis."""
    width, left, row = 960, 400, 22
    end = max((s.seconds for s in steps), default=1) or 1
    height = 60 + row * len(steps)
    scale = (width - left - 30) / end
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
           'font-size="12">', f'<text x="10" y="20" font-size="14" font-weight="bold">{_escape(title)}</text>']
    for tick in range(0, int(end) + 1, 30):
        x = left + tick * scale
        out.append(f'<line x1="{x:.1f}" y1="30" x2="{x:.1f}" y2="{height - 20}" stroke="#ddd"/>')
        out.append(f'<text x="{x:.1f}" y="{height - 5}" text-anchor="middle" fill="#666">{tick // 60}:'
                   f'{tick % 60:02d}</text>')
    for i, step in enumerate(steps):
        y = 45 + i * row
        x = left + step.seconds * scale
        label = step.what if len(step.what) <= 62 else step.what[:59] + "..."
        out.append(f'<text x="10" y="{y + 4}">{_escape(label)}</text>')
        out.append(f'<circle cx="{x:.1f}" cy="{y}" r="5" fill="#1f6feb"/>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def main() -> int:
    from kubernetes import config as kconfig

    from . import LocalCluster, build, mlserver

    cluster = LocalCluster(ROOT / ".cluster")
    cluster.up()
    if cluster.pod_network() is None:
        print("error: the demo needs the local cluster's pod network (run as root, with iproute2 and iptables)",
              file=sys.stderr)
        return 1
    mlserver.ensure(cluster.layout.log("mlserver"))
    kubeconfig = cluster.layout.kubeconfig
    kc = build.k8s_kubectl_or_none()
    subprocess.run([str(kc), "--kubeconfig", str(kubeconfig), "apply", "--server-side", "--force-conflicts",
                    "--field-manager=mlops-operator", *sum((["-f", str(p)] for p in sorted((ROOT / "crds")
                                                                                               .glob("*.yaml"))), [])],
                   check=True, capture_output=True)
    namespace = f"loop-{time.strftime('%H%M%S')}"
    root = ROOT / ".cluster" / "demo" / namespace
    root.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    log = open(root / "operator.log", "wb")  # noqa: SIM115 - the operator writes it until the demo ends
    operator = subprocess.Popen([str(ROOT / ".venv" / "bin" / "mlops-operator"), "run", "--standalone",
                                 "--all-namespaces"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    loop = Loop(kconfig.new_client_from_config(config_file=str(kubeconfig)), namespace, root,
                kubectl=f"kubectl --kubeconfig {kubeconfig}")
    print(f"The closed loop, on the local cluster (namespace {namespace}; operator log {root / 'operator.log'}):\n",
          flush=True)
    code = 0
    try:
        loop.story()
    except DemoError as err:
        print(f"\nerror: {err}", file=sys.stderr)
        code = 1
    finally:
        loop.stop_traffic()
        os.killpg(operator.pid, signal.SIGTERM)
        operator.wait(timeout=30)
        log.close()
    loop.timeline.sort(key=lambda s: s.seconds)
    (root / "timeline.json").write_text(json.dumps([dataclasses.asdict(s) for s in loop.timeline], indent=1))
    if code == 0:
        print("\nkubectl get mlops: the lineage at a glance\n", flush=True)
        subprocess.run([str(kc), "--kubeconfig", str(kubeconfig), "-n", namespace, "get", "mlops"], check=False)
    (root / "timeline.svg").write_text(timeline_svg(loop.timeline, f"make demo, namespace {namespace}"))
    total = loop.timeline[-1].seconds if loop.timeline else 0
    print(f"\nTimeline ({total:.0f} s): {root / 'timeline.json'}, {root / 'timeline.svg'}")
    for step in loop.timeline:
        print(f"  {int(step.seconds) // 60}:{int(step.seconds) % 60:02d}  {step.what}")
    print(f"\nThe cluster stays up (traffic stopped, the operator too: `make run` starts it again):\n"
          f"  kubectl --kubeconfig {kubeconfig} -n {namespace} get mlops\n  make cluster-down")
    return code


if __name__ == "__main__":
    sys.exit(main())
