"""Operator settings from the environment (the chart sets them): `load()` reads them once, at start (cli.py), and
the result is passed down to whatever needs it."""

from __future__ import annotations

import dataclasses
import os

from . import __version__

MLSERVER_IMAGE = "seldonio/mlserver:1.7.1"


@dataclasses.dataclass(frozen=True)
class Settings:
    # The one image the operator, the model fetcher and the drift runner share.
    operator_image: str
    # Preset server images, overridable so a platform can point them at its own registry.
    vllm_image: str
    triton_image: str
    sklearn_image: str
    cluster_domain: str
    workers: int
    # Seconds the API server keeps one watch request open (an informer then resumes from its resourceVersion). A
    # watch that outlives it by WATCH_GRACE, or stays silent that long, is taken for dead (a frozen or
    # unreachable API server) and is reopened: a hung watch is noticed within watch_timeout + WATCH_GRACE.
    watch_timeout: int = 60
    # Seconds a leader's lease is good for without renewal (runtime/leader.py): a leader killed without releasing
    # it is replaced by a standby within about this long (client-go's default is 15).
    lease_duration: int = 15
    # MLServer (Seldon's, Open Inference Protocol v2): the mlserver preset's image.
    mlserver_image: str = MLSERVER_IMAGE
    # The inference agent sidecar of serving pods (`mlops-operator agent`); empty: the operator's own image.
    agent_image: str = ""
    # Where canary analysis queries Prometheus when a ModelDeployment names none (spec...analysis.prometheusUrl).
    prometheus_url: str = ""

    @property
    def inference_agent_image(self) -> str:
        return self.agent_image or self.operator_image


def load() -> Settings:
    env = os.environ.get
    return Settings(
        operator_image=env("MLOPS_OPERATOR_IMAGE", f"mlops-operator:{__version__}"),
        vllm_image=env("MLOPS_IMAGE_VLLM", "vllm/vllm-openai:v0.6.3"),
        # No default: see serving/runtimes.py image_problems.
        triton_image=env("MLOPS_IMAGE_TRITON", ""),
        sklearn_image=env("MLOPS_IMAGE_SKLEARN", "kserve/sklearnserver:v0.14.0"),
        mlserver_image=env("MLOPS_IMAGE_MLSERVER", MLSERVER_IMAGE),
        agent_image=env("MLOPS_IMAGE_AGENT", ""),
        cluster_domain=env("MLOPS_CLUSTER_DOMAIN", "cluster.local"),
        workers=int(env("MLOPS_WORKERS", "16")),
        watch_timeout=int(env("MLOPS_WATCH_TIMEOUT", "60")),
        lease_duration=int(env("MLOPS_LEASE_DURATION", "15")),
        prometheus_url=env("MLOPS_PROMETHEUS_URL", ""),
    )


WATCH_GRACE = 15  # seconds past watch_timeout before a watch is given up as hung
