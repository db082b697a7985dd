"""`python -m mlops_localcluster ensure|up|down|status`: what `make cluster-*` calls."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

from . import build, helm, mlserver
from .controlplane import LocalCluster, default_root
from .errors import ClusterError


def use_existing_cluster() -> bool:
    return os.environ.get("USE_EXISTING_CLUSTER", "").lower() in ("1", "true", "yes")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlops_localcluster",
                                     description="The project's local Kubernetes control plane.")
    parser.add_argument("--dir", default=None, help="state folder (default .cluster, or $MLOPS_CLUSTER_DIR)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("ensure", help="install Debian packages, build the Kubernetes binaries and fetch helm, once")
    up = sub.add_parser("up", help="start the control plane and the simulated nodes (no-op when running)")
    up.add_argument("--no-nodes", action="store_true", help="no simulated node pool and no node simulator")
    up.add_argument("--pool", default=None, help="YAML file describing the simulated node pool")
    sub.add_parser("down", help="stop exactly the processes this state folder started")
    sub.add_parser("status", help="print the state of the control plane as JSON")
    args = parser.parse_args(argv)
    cluster = LocalCluster(default_root() if args.dir is None else pathlib.Path(args.dir).resolve())
    try:
        if args.cmd == "ensure":
            # helm serves the chart tests on any cluster, so it comes first
            print(f"helm {helm.HELM_VERSION}: {helm.ensure(cluster.layout.log('helm'))}")
            if use_existing_cluster():
                print("USE_EXISTING_CLUSTER=true: nothing to build")
                return 0
            bins = build.ensure(cluster.layout.log("build"))
            print(f"Kubernetes binaries ({bins.source}): {bins.apiserver.parent}")
            print(f"mlserver {mlserver.VERSION}: {mlserver.ensure(cluster.layout.log('mlserver'))}")
        elif args.cmd == "up":
            if use_existing_cluster():
                print(f"USE_EXISTING_CLUSTER=true: using the cluster in KUBECONFIG={os.environ.get('KUBECONFIG', '')}")
                return 0
            was_running = cluster.running() is not None
            state = cluster.up(simulate_nodes=not args.no_nodes, pool_file=args.pool)
            verb = "already running" if was_running else "started"
            print(f"local cluster {verb}: https://127.0.0.1:{state['ports']['apiserver']}")
            print(f"  kubectl --kubeconfig {cluster.layout.kubeconfig} get nodes")
        elif args.cmd == "down":
            stopped = cluster.down()
            if stopped:
                print("stopped: " + ", ".join(stopped))
        elif args.cmd == "status":
            status = cluster.status()
            print(json.dumps(status, indent=2))
            return 0 if status["running"] else 3
    except ClusterError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
