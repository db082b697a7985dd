"""The `mlops-operator` command: `run` starts the operator; `crds` prints or writes the generated CRDs.

Later subcommands that run inside pods of the operator's image (the model fetcher, the drift runner) hang off
the same entry point, so one image serves all of them.
"""

from __future__ import annotations

import argparse
import logging
import sys

from . import __version__


def _quiet_handlers(record: logging.LogRecord) -> bool:
    """Our kopf handlers only enqueue keys: a line per event saying so is noise, not news."""
    return not (record.levelno <= logging.INFO and str(record.msg).startswith("Handler '")
                and str(record.msg).endswith(" succeeded."))


def _run(args: argparse.Namespace) -> int:
    import kopf

    from . import handlers, metrics  # noqa: F401  (importing handlers registers them with kopf)

    if not args.all_namespaces and not args.namespace:
        print("error: give --all-namespaces or at least one --namespace", file=sys.stderr)
        return 2
    if not args.all_namespaces and not any(set(ns) & set("*?[]!") for ns in args.namespace):
        # Exact namespaces leave kopf nothing to discover. Left on, its scanning lists namespaces and watches CRDs
        # cluster-wide; a namespaced install (Roles only, no cluster-scoped grant) is refused, and kopf retries
        # the refused namespace list for about a minute before falling back, serving nothing meanwhile.
        @kopf.on.startup()
        async def exact_namespaces(settings: kopf.OperatorSettings, **_):
            settings.scanning.disabled = True

    handlers.scope(None if args.all_namespaces else list(args.namespace))
    kopf.configure(verbose=args.verbose, debug=args.debug, log_format=kopf.LogFormat.PLAIN)
    if not (args.verbose or args.debug):
        logging.getLogger("kopf.objects").addFilter(_quiet_handlers)
    if args.metrics_bind_address not in ("", "0"):
        try:
            port = metrics.serve(args.metrics_bind_address)
            logging.getLogger("mlops_operator").info("metrics on http://%s:%d/metrics",
                                                     args.metrics_bind_address.rpartition(":")[0], port)
        except OSError as err:  # metrics are not worth failing the operator for
            logging.getLogger("mlops_operator").warning("no metrics on %s: %s", args.metrics_bind_address, err)
    return _serve(dict(
        standalone=args.standalone,
        clusterwide=args.all_namespaces,
        namespaces=args.namespace or (),
        liveness_endpoint=args.liveness,
        peering_name=args.peering,
        priority=args.priority,
    ))


EXIT_GRACE = 20  # seconds kopf may take to stop after its core failed, before the process exits


def _serve(kopf_args: dict) -> int:
    """Runs kopf until SIGTERM or SIGINT, and runs it again when it stops by itself.

    kopf stops the whole operator when one watch request fails in a way it does not retry, e.g. the "404 page
    not found" an API server answers for custom resources in its first seconds after a restart (kubernetes#71218).
    Waiting for a supervisor would cost a container restart with its back-off; starting kopf again in the same
    process lists everything afresh, which is all a restart would do. kopf runs in a thread of its own so the
    signals stay ours: a signal sets the stop flag kopf watches, so it is never mistaken for such a failure.
    """
    import os
    import signal
    import threading
    import time

    import kopf

    log = logging.getLogger("mlops_operator")
    stop = threading.Event()
    failed: list[BaseException] = []
    runs = [0]

    class CoreFailure(logging.Handler):
        """kopf logs "<root task> has failed" when it starts stopping on its own. Its shutdown can then wait
        forever on requests that wait for a re-login no task is left to do (seen after API server restarts):
        if that run has not returned in EXIT_GRACE seconds, exit non-zero so a supervisor starts us afresh."""

        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.ERROR and str(record.msg).startswith("Multidimensional multitasker has"):
                threading.Thread(target=exit_if_hung, args=(runs[0],), daemon=True).start()

    def exit_if_hung(run: int) -> None:
        time.sleep(EXIT_GRACE)
        if runs[0] == run and not stop.is_set():
            log.critical("kopf did not finish stopping in %ds after its core failed: exiting", EXIT_GRACE)
            logging.shutdown()
            os._exit(3)

    logging.getLogger("kopf").addHandler(CoreFailure())

    def run_kopf() -> None:
        delay = 1.0
        while not stop.is_set():
            runs[0] += 1
            started = time.monotonic()
            try:
                kopf.run(stop_flag=stop, **kopf_args)
            except BaseException as err:  # noqa: BLE001  (logged and retried, or reported when stopping)
                runs[0] += 1  # this run is over: its hang watch stands down
                if stop.is_set():
                    failed.append(err)
                    return
                log.error("the operator stopped on an error; starting it again in %.0fs: %s", delay, err)
            else:
                runs[0] += 1
                if stop.is_set():
                    return
                log.error("the operator stopped by itself; starting it again in %.0fs", delay)
            delay = 1.0 if time.monotonic() - started > 60 else min(delay * 2, 30.0)
            stop.wait(delay)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: stop.set())
    worker = threading.Thread(target=run_kopf, name="kopf")
    worker.start()
    while worker.is_alive():
        worker.join(0.5)  # short joins keep the main thread able to run signal handlers
    return 1 if failed else 0


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


def _add_agent(sub) -> None:
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
    run.add_argument("--standalone", action="store_true", help="no peering: this process acts alone")
    run.add_argument("--peering", default=None, help="peering object name for several replicas (one acts)")
    run.add_argument("--priority", type=int, default=0, help="peering priority of this replica")
    run.add_argument("--liveness", default=None, metavar="URL",
                     help="serve a liveness probe, e.g. http://0.0.0.0:8080/healthz")
    run.add_argument("--metrics-bind-address", default="127.0.0.1:8080", metavar="HOST:PORT",
                     help="serve Prometheus metrics here (port 0: a free one; '0': off)")
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
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
