"""MLServer as a process image: containers of an `mlserver` image (the operator's mlserver preset) run as real
processes of a virtualenv of their own, like an image of their own; never a dependency of the operator.

Owns: the virtualenv `<cache>/mlserver-<version>/` (created once by `python -m mlops_localcluster ensure` from the
pinned `localcluster/mlserver-constraints.txt`, with the Makefile's pinned uv or else pip), and how a container of
the image is started: `<venv>/bin/mlserver start <MLSERVER_MODELS_DIR>`, configured by the container's MLSERVER_*
environment (the preset sets them; paths in the model volume are already remapped to the pod's host folders).
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

from .build import cache_dir
from .simstatus import is_own_image

VERSION = "1.7.1"
IMAGE = "mlserver"  # matches seldonio/mlserver:<tag> and a mirror's <registry>/.../mlserver:<tag>
UV_VERSION = "0.13.9"  # the Makefile's
CONSTRAINTS = pathlib.Path(__file__).resolve().parents[1] / "mlserver-constraints.txt"
STAMP = ".constraints-sha256"


def venv_dir() -> pathlib.Path:
    return cache_dir() / f"mlserver-{VERSION}"


def executable() -> pathlib.Path:
    return venv_dir() / "bin" / "mlserver"


def ready() -> bool:
    """The venv exists and was installed from the current constraints."""
    stamp = venv_dir() / STAMP
    return executable().exists() and stamp.exists() and stamp.read_text() == _digest()


def _digest() -> str:
    return hashlib.sha256(CONSTRAINTS.read_bytes()).hexdigest()


def ensure(log: pathlib.Path) -> pathlib.Path:
    """Installs the venv once (a no-op when it matches the constraints) and returns it."""
    venv = venv_dir()
    if ready():
        return venv
    log.parent.mkdir(parents=True, exist_ok=True)
    uv = cache_dir() / f"uv-{UV_VERSION}" / "bin" / "uv"
    python = venv / "bin" / "python"
    if uv.exists():
        steps = [[str(uv), "venv", "-q", "--allow-existing", "--python", sys.executable, str(venv)],
                 [str(uv), "pip", "install", "-q", "--python", str(python), "-r", str(CONSTRAINTS)]]
    else:
        steps = [[sys.executable, "-m", "venv", str(venv)],
                 [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", str(CONSTRAINTS)]]
    with open(log, "ab") as out:
        for step in steps:
            out.write(f"--- {' '.join(step)}\n".encode())
            out.flush()
            if subprocess.run(step, stdout=out, stderr=subprocess.STDOUT).returncode != 0:
                raise RuntimeError(f"installing mlserver {VERSION} failed; see {log}")
    (venv / STAMP).write_text(_digest())
    return venv


def serves(container: Mapping[str, Any]) -> bool:
    return is_own_image(container.get("image", ""), (IMAGE,))


def launch(env: Mapping[str, str], host_network: bool) -> tuple[list[str], dict[str, str]]:
    """argv and extra environment of an mlserver container. `env` is the container's own (remapped) environment.
    In the host's network namespace (no pod network) it listens on loopback only."""
    models_dir = env.get("MLSERVER_MODELS_DIR") or os.path.dirname(env.get("MLSERVER_MODEL_URI", "")) or "."
    extra = {"MLSERVER_HOST": "127.0.0.1"} if host_network and "MLSERVER_HOST" not in env else {}
    return [str(executable()), "start", models_dir], extra
