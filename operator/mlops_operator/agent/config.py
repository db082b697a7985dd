"""The agent's settings: command-line flags, each with an `MLOPS_AGENT_*` environment variable as its default.

Storage credentials are not settings: fsspec's backends read them from the environment themselves
(`AWS_ACCESS_KEY_ID`, `GOOGLE_APPLICATION_CREDENTIALS`, ...), which the pod fills from
`predictionLog.secretRef`. No flag takes one, so none reaches a command line or a log line.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class AgentConfig:
    upstream_port: int
    listen_host: str = "0.0.0.0"
    listen_port: int = 9081
    metrics_port: int = 9091
    namespace: str = ""
    model: str = ""
    revision: str = "stable"
    model_uri: str = ""
    pod: str = field(default_factory=socket.gethostname)
    log_uri: str = ""
    sample_rate: float = 0.0
    log_payloads: bool = False
    columns: tuple[str, ...] = ()
    buffer_bytes: int = 32 * 1024 * 1024
    batch_rows: int = 10_000
    batch_seconds: float = 60.0
    write_timeout: float = 30.0
    write_attempts: int = 5
    grace_seconds: float = 25.0
    upstream_connections: int = 256

    @property
    def model_hash(self) -> str:
        """A short stable name for the model URI (a label value, unlike the URI itself)."""
        return hashlib.sha256(self.model_uri.encode()).hexdigest()[:12] if self.model_uri else ""

    @property
    def logging(self) -> bool:
        return bool(self.log_uri) and self.sample_rate > 0


def _env(name: str, default: str) -> str:
    return os.environ.get("MLOPS_AGENT_" + name.upper().replace("-", "_"), default)


def _fraction(value: str) -> float:
    rate = float(value)
    if not 0 <= rate <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {value}")
    return rate


def _positive(kind: type[int] | type[float]) -> Callable[[str], float]:
    def parse(value: str) -> float:
        number = kind(value)
        if number <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, not {value}")
        return number
    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The agent's flags on the `mlops-operator agent` subcommand (defaults from MLOPS_AGENT_<FLAG>)."""
    d = AgentConfig(upstream_port=0)

    def flag(name: str, help_text: str, default: object, type: Callable[[str], object] = str) -> None:
        parser.add_argument("--" + name, default=_env(name, str(default)), help=f"{help_text} "
                            f"(env MLOPS_AGENT_{name.upper().replace('-', '_')}; default %(default)s)", type=type)

    flag("upstream-port", "port of the model server on 127.0.0.1 (required)", "")
    flag("listen", "HOST:PORT the agent serves inference on", f"{d.listen_host}:{d.listen_port}")
    flag("metrics-port", "port of /metrics (same host as --listen)", d.metrics_port, type=int)
    flag("namespace", "metric label: the ModelDeployment's namespace", d.namespace)
    flag("model", "metric label: the ModelDeployment's name", d.model)
    flag("revision", "metric label and log column: stable or canary", d.revision)
    flag("model-uri", "the served model's URI (logged; its hash is a metric label)", d.model_uri)
    flag("pod", "pod name, part of the log file names", d.pod)
    flag("log-uri", "prediction log destination (file://, s3://, gs://...); empty: no log", d.log_uri)
    flag("sample-rate", "fraction of inference requests logged", d.sample_rate, type=_fraction)
    flag("log-payloads", "log OpenAI prompt and completion text (true/false)", "false")
    flag("columns", "comma-separated feature names for 2-D inputs", "")
    flag("buffer-bytes", "most bytes of logged bodies held in memory; beyond it, records are dropped",
         d.buffer_bytes, type=_positive(int))
    flag("batch-rows", "rows per Parquet file at most", d.batch_rows, type=_positive(int))
    flag("batch-seconds", "seconds a row waits at most before its file is written", d.batch_seconds,
         type=_positive(float))
    flag("write-timeout", "seconds one file write may take before it counts as failed", d.write_timeout,
         type=_positive(float))
    flag("write-attempts", "tries per file (back-off doubling from 0.5 s) before its rows are dropped",
         d.write_attempts, type=_positive(int))
    flag("grace-seconds", "on SIGTERM: seconds to finish requests and write what is buffered", d.grace_seconds,
         type=_positive(float))


def from_args(args: argparse.Namespace) -> AgentConfig:
    """Settings from parsed flags; raises ValueError naming the flag that is wrong."""
    if not str(args.upstream_port).isdigit() or not 0 < int(args.upstream_port) < 65536:
        raise ValueError(f"--upstream-port (or MLOPS_AGENT_UPSTREAM_PORT): expected a port, not {args.upstream_port!r}")
    host, sep, port = str(args.listen).rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--listen: expected HOST:PORT, not {args.listen!r}")
    payloads = str(args.log_payloads).lower()
    if payloads not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError(f"--log-payloads: expected true or false, not {args.log_payloads!r}")
    return AgentConfig(
        upstream_port=int(args.upstream_port), listen_host=host or "0.0.0.0", listen_port=int(port),
        metrics_port=int(args.metrics_port), namespace=args.namespace, model=args.model, revision=args.revision,
        model_uri=args.model_uri, pod=args.pod, log_uri=args.log_uri.rstrip("/"),
        sample_rate=float(args.sample_rate), log_payloads=payloads in ("true", "1", "yes"),
        columns=tuple(c.strip() for c in str(args.columns).split(",") if c.strip()),
        buffer_bytes=int(args.buffer_bytes), batch_rows=int(args.batch_rows),
        batch_seconds=float(args.batch_seconds), write_timeout=float(args.write_timeout),
        write_attempts=int(args.write_attempts), grace_seconds=float(args.grace_seconds),
    )
