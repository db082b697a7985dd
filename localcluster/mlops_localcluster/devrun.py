"""`make run`: a cluster (the local one, or the one in $KUBECONFIG), the CRDs, the quickstart, then the operator
in the foreground with readable logs. Ctrl-C stops the operator; `make cluster-down` stops the local cluster.

On the local cluster the quickstart's model URIs are pointed at local files (no internet there): `iris` gets a real
scikit-learn model trained on the iris data scikit-learn ships, served by MLServer as a real process and reached
through its NodePort on 127.0.0.1 (the first of the cluster's node ports); the others get demo files. On a cluster
of yours the example is applied as written."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

from . import ClusterError, LocalCluster, build

ROOT = pathlib.Path(__file__).resolve().parents[2]


def kubectl() -> str:
    found = build.k8s_kubectl_or_none()
    if found is None:
        raise ClusterError("no kubectl: run 'make cluster-up' once (it builds one) or install kubectl")
    return str(found)


IRIS_MODEL = ROOT / ".cluster" / "demo-models" / "iris" / "model.joblib"
IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]  # a setosa and a virginica from the iris data


def iris_model(target: pathlib.Path) -> list[int]:
    """Trains a classifier on scikit-learn's bundled iris data, saves it with joblib, and returns its predictions
    for IRIS_ROWS (what the served model answers)."""
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    features, labels = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=1000).fit(features, labels)
    target.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, target)
    return [int(v) for v in model.predict(IRIS_ROWS)]


def infer_request(rows: list[list[float]]) -> dict:
    """An Open Inference Protocol v2 request with one FP32 tensor of `rows`."""
    return {"inputs": [{"name": "features", "shape": [len(rows), len(rows[0])], "datatype": "FP32", "data": rows}]}


def offline_quickstart(path: pathlib.Path, node_port: int | None = None) -> str:
    """The quickstart with each model URI pointed at a local file: the local cluster has no internet, and its
    simulated nodes run the model fetcher as a local process, so the models really are fetched; iris is a real
    model that MLServer serves, on `node_port` when given."""
    import yaml

    models = ROOT / ".cluster" / "demo-models"
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    for doc in docs:
        spec = (doc.get("spec") or {}) if doc.get("kind") == "ModelDeployment" else {}
        model = spec.get("model")
        if model and "uri" in model:
            name = doc["metadata"]["name"]
            if name == "iris":
                target = IRIS_MODEL
                iris_model(target)
                if node_port is not None:
                    spec["service"] = {"type": "NodePort", "nodePort": node_port}
            else:
                target = models / name / "model.bin"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(f"demo weights for {name} (stands in for {model['uri']})\n".encode())
            model["uri"] = f"file://{target}"
    return yaml.safe_dump_all(docs, sort_keys=False)


def curl_hint(node_port: int) -> str:
    """The request to paste, and the answer the iris model written by offline_quickstart gives."""
    import json

    import joblib

    predicted = [int(v) for v in joblib.load(IRIS_MODEL).predict(IRIS_ROWS)]
    body = json.dumps(infer_request(IRIS_ROWS))
    return (f"  # the iris model (MLServer, Open Inference Protocol v2), once its pods run (it loads in seconds):\n"
            f"  curl -s -H 'Content-Type: application/json' -d '{body}' \\\n"
            f"    http://127.0.0.1:{node_port}/v2/models/iris/infer\n"
            f"  # answers {{\"model_name\":\"iris\", ..., \"outputs\":[{{\"name\":\"predict\",\"shape\":[2,1],"
            f"\"datatype\":\"INT64\", ...,\"data\":{json.dumps(predicted)}}}]}}\n"
            f"  # (classes: 0 setosa, 1 versicolor, 2 virginica)\n")


def main() -> int:
    env = dict(os.environ)
    node_port = None
    try:
        if env.get("KUBECONFIG"):
            print(f"using the cluster in KUBECONFIG={env['KUBECONFIG']}")
        else:
            cluster = LocalCluster(ROOT / ".cluster")
            cluster.up()
            env["KUBECONFIG"] = str(cluster.layout.kubeconfig)
            net = cluster.pod_network()
            node_port = net.node_ports[0] if net else None
            print(f"local cluster up; kubeconfig: {env['KUBECONFIG']}")
        kc = kubectl()
        crds = sorted((ROOT / "crds").glob("*.yaml"))
        if crds:
            subprocess.run([kc, "apply", "--server-side", "--force-conflicts", "--field-manager=mlops-operator",
                            *sum((["-f", str(p)] for p in crds), [])], env=env, check=True)
            subprocess.run([kc, "wait", "--for=condition=Established", "--timeout=60s",
                            *[f"crd/{p.stem.split('_', 1)[1]}.mlops.dev" for p in crds]], env=env, check=True)
        quickstart = ROOT / "examples" / "quickstart.yaml"
        if quickstart.exists():
            manifest = quickstart.read_text() if env.get("KUBECONFIG") != str(ROOT / ".cluster" / "kubeconfig") \
                else offline_quickstart(quickstart, node_port)
            subprocess.run([kc, "apply", "-f", "-"], input=manifest.encode(), env=env, check=True)
    except (ClusterError, subprocess.CalledProcessError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    kubeconfig = env["KUBECONFIG"]
    print("\nThe operator runs in the foreground now (Ctrl-C stops it). In another shell:\n"
          f"  kubectl --kubeconfig {kubeconfig} get mlops -A\n"
          f"  kubectl --kubeconfig {kubeconfig} get pods -A -o wide\n"
          + (curl_hint(node_port) if node_port else ""), flush=True)
    os.execve(str(ROOT / ".venv" / "bin" / "mlops-operator"),
              ["mlops-operator", "run", "--standalone", "--all-namespaces"], env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
