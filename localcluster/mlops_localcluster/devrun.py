"""`make run`: a cluster (the local one, or the one in $KUBECONFIG), the CRDs, the quickstart, then the operator
in the foreground with readable logs. Ctrl-C stops the operator; `make cluster-down` stops the local cluster.

On the local cluster the quickstart's model URIs are pointed at local demo files (no internet there); on a
cluster of yours the example is applied as written."""

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


def offline_quickstart(path: pathlib.Path) -> str:
    """The quickstart with each model URI pointed at a local demo file: the local cluster has no internet, and
    its simulated nodes run the model fetcher as a local process, so the models really are fetched and served."""
    import yaml

    models = ROOT / ".cluster" / "demo-models"
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    for doc in docs:
        model = (doc.get("spec") or {}).get("model") if doc.get("kind") == "ModelDeployment" else None
        if model and "uri" in model:
            name = doc["metadata"]["name"]
            target = models / name / "model.bin"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(f"demo weights for {name} (stands in for {model['uri']})\n".encode())
            model["uri"] = f"file://{target}"
    return yaml.safe_dump_all(docs, sort_keys=False)


def main() -> int:
    env = dict(os.environ)
    try:
        if env.get("KUBECONFIG"):
            print(f"using the cluster in KUBECONFIG={env['KUBECONFIG']}")
        else:
            cluster = LocalCluster(ROOT / ".cluster")
            cluster.up()
            env["KUBECONFIG"] = str(cluster.layout.kubeconfig)
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
                else offline_quickstart(quickstart)
            subprocess.run([kc, "apply", "-f", "-"], input=manifest.encode(), env=env, check=True)
    except (ClusterError, subprocess.CalledProcessError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    kubeconfig = env["KUBECONFIG"]
    print("\nThe operator runs in the foreground now (Ctrl-C stops it). In another shell:\n"
          f"  kubectl --kubeconfig {kubeconfig} get mlops -A\n"
          f"  kubectl --kubeconfig {kubeconfig} get pods -A -o wide\n", flush=True)
    os.execve(str(ROOT / ".venv" / "bin" / "mlops-operator"),
              ["mlops-operator", "run", "--standalone", "--all-namespaces"], env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
