"""The `mlops-operator` command: `run` starts the operator; `crds` prints or writes the generated CRDs.

Later subcommands that run inside pods of the operator's image (the model fetcher, the drift runner) hang off
the same entry point, so one image serves all of them.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from typing import TYPE_CHECKING

from . import __version__

if TYPE_CHECKING:
    from .handlers import Election

LOG_FORMATS = ("plain", "full", "json")


def _election(args: argparse.Namespace) -> Election | None:
    """Where this replica competes for leadership (None: --standalone)."""
    import socket

    from .handlers import Election

    if args.standalone:
        return None
    # The pod's name in a cluster (the chart sets POD_NAME); else host and pid, so that replicas on one
    # machine differ.
    identity = os.environ.get("POD_NAME") or f"{socket.gethostname()}_{os.getpid()}"
    namespace = args.lease_namespace or os.environ.get("POD_NAMESPACE") or "default"
    return Election(namespace=namespace, name=args.lease_name or args.peering or "mlops-operator", identity=identity)


def _run(args: argparse.Namespace) -> int:
    import kopf

    from . import handlers, metrics, settings
    from .runtime.scope import Scope

    if not args.all_namespaces and not args.namespace:
        print("error: give --all-namespaces or at least one --namespace", file=sys.stderr)
        return 2
    if args.standalone and (args.lease_name or args.peering):
        print("error: --standalone runs no leader election: drop --lease-name/--peering", file=sys.stderr)
        return 2
    log_format = {"plain": kopf.LogFormat.PLAIN, "full": kopf.LogFormat.FULL, "json": kopf.LogFormat.JSON}
    kopf.configure(verbose=args.verbose, debug=args.debug, log_format=log_format[args.log_format])
    log = logging.getLogger("mlops_operator")
    if args.priority is not None:
        log.warning("--priority is ignored: leadership is a Lease now, taken by whichever replica comes first")
    if args.metrics_bind_address not in ("", "0"):
        try:
            port = metrics.serve(args.metrics_bind_address)
            log.info("metrics on http://%s:%d/metrics", args.metrics_bind_address.rpartition(":")[0], port)
        except OSError as err:  # metrics are not worth failing the operator for
            log.warning("no metrics on %s: %s", args.metrics_bind_address, err)
    scope = Scope(None if args.all_namespaces else args.namespace)
    # kopf runs in the main thread, so SIGTERM and SIGINT are its own: it runs the cleanup handler (workers
    # stop, the lease is released) and returns. It watches no resource, so it runs standalone and cluster-wide
    # (which only means: no peering, no namespace to look for); the served namespaces are the informers'.
    loaded = settings.load()
    if args.prometheus_url is not None:
        loaded = dataclasses.replace(loaded, prometheus_url=args.prometheus_url)
    kopf.run(registry=handlers.registry(loaded, scope, _election(args)), standalone=True,
             clusterwide=True, liveness_endpoint=args.liveness)
    return 0


def _crds(args: argparse.Namespace) -> int:
    import yaml

    from .api import crdgen

    if args.out:
        for path in crdgen.write_crds(args.out):
            print(path)
    else:
        sys.stdout.write(yaml.safe_dump_all(crdgen.render_crds(), sort_keys=False))
    return 0


def _fetch_model(args: argparse.Namespace) -> int:
    from .modelfetch import FetchError, fetch

    try:
        dest = fetch(args.uri, args.dest)
    except FetchError as err:
        print(f"fetch-model: {err}", file=sys.stderr)
        return 1
    print(f"fetch-model: {args.uri} -> {dest}")
    return 0


def _drift_check(args: argparse.Namespace) -> int:
    from .monitoring.runner import run

    return run(args.namespace, args.name)


# -- agent: the inference sidecar (operator/mlops_operator/agent/) --------------------------------------------
def _agent(args: argparse.Namespace) -> int:
    from .agent import app, config

    try:
        settings = config.from_args(args)
    except ValueError as err:
        print(f"agent: {err}", file=sys.stderr)
        return 2
    return app.run(settings)


def _add_agent(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .agent.config import add_arguments

    agent = sub.add_parser("agent", help="the inference sidecar: proxy, request metrics, prediction log")
    add_arguments(agent)
    agent.set_defaults(func=_agent)
# -- end agent --------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlops-operator", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"mlops-operator {__version__}")
    sub = parser.add_subparsers(dest="cmd", required=True)

    run = sub.add_parser("run", help="start the operator")
    run.add_argument("-n", "--namespace", action="append", default=[],
                     help="serve this namespace (repeatable; glob patterns as kopf allows)")
    run.add_argument("-A", "--all-namespaces", action="store_true", help="serve every namespace")
    run.add_argument("--standalone", action="store_true",
                     help="no leader election: this process acts alone (one replica)")
    run.add_argument("--lease-name", default=None, metavar="NAME",
                     help="the Lease replicas compete for; the holder reconciles (default: mlops-operator)")
    run.add_argument("--lease-namespace", default=None, metavar="NS",
                     help="the Lease's namespace (default: $POD_NAMESPACE, else default)")
    run.add_argument("--peering", default=None, metavar="NAME", help="the former kopf peering name: --lease-name")
    run.add_argument("--priority", type=int, default=None,
                     help="ignored (kopf peering's priority; a Lease has none), accepted for old command lines")
    run.add_argument("--liveness", default=None, metavar="URL",
                     help="serve a liveness probe, e.g. http://0.0.0.0:8080/healthz")
    run.add_argument("--metrics-bind-address", default="127.0.0.1:8080", metavar="HOST:PORT",
                     help="serve Prometheus metrics here (port 0: a free one; '0': off)")
    run.add_argument("--prometheus-url", default=None, metavar="URL",
                     help="Prometheus that canary analysis queries when a ModelDeployment names none "
                          "(default: $MLOPS_PROMETHEUS_URL)")
    run.add_argument("--log-format", choices=LOG_FORMATS, default=os.environ.get("MLOPS_LOG_FORMAT", "plain"),
                     help="plain (the message), full (time, logger, level) or json, one object a line for log "
                          "pipelines (default: $MLOPS_LOG_FORMAT, else plain)")
    run.add_argument("-v", "--verbose", action="store_true")
    run.add_argument("--debug", action="store_true")
    run.set_defaults(func=_run)

    crds = sub.add_parser("crds", help="print the CRDs generated from the models (or write them with --out)")
    crds.add_argument("--out", default=None, metavar="DIR", help="write one YAML file per CRD into DIR")
    crds.set_defaults(func=_crds)
    fetch = sub.add_parser("fetch-model", help="fetch a model into a folder (the serving pods' init container)")
    fetch.add_argument("--uri", required=True, help="file://, http(s)://, s3://, gs:// or hf:// URI")
    fetch.add_argument("--dest", required=True, help="folder to fetch into")
    fetch.set_defaults(func=_fetch_model)
    drift = sub.add_parser("drift-check", help="run one drift check of a DriftMonitor and write its status")
    drift.add_argument("--namespace", required=True)
    drift.add_argument("--name", required=True)
    drift.set_defaults(func=_drift_check)
    _add_agent(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
