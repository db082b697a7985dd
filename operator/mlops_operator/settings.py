"""Operator settings from the environment (the chart sets them); read once per process."""

from __future__ import annotations

import dataclasses
import os

from . import __version__


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


def load() -> Settings:
    env = os.environ.get
    return Settings(
        operator_image=env("MLOPS_OPERATOR_IMAGE", f"mlops-operator:{__version__}"),
        vllm_image=env("MLOPS_IMAGE_VLLM", "vllm/vllm-openai:v0.6.3"),
        triton_image=env("MLOPS_IMAGE_TRITON", "tritonserver:24.08-py3"),
        sklearn_image=env("MLOPS_IMAGE_SKLEARN", "kserve/sklearnserver:v0.14.0"),
        cluster_domain=env("MLOPS_CLUSTER_DOMAIN", "cluster.local"),
        workers=int(env("MLOPS_WORKERS", "16")),
    )


SETTINGS = load()
