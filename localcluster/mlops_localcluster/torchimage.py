"""PyTorch as a process image: containers of a `pytorch` image (`pytorch/pytorch:<tag>`) run `python`, `python3`
and `torchrun` from a virtualenv of their own with PyTorch's CPU build, like an image of their own; never a
dependency of the operator or of the project's virtualenv.

Owns: the virtualenv `<cache>/torch-<version>/`, made on first use (the first pytorch container the simulator
starts, or `ensure` called by a test) and reused after; and how a container of the image is started.

Why pip and two steps: the CPU build of torch lies on this kind of machine's disk, in pip's find-links, and only
pip looks there (uv would resolve a CUDA build of several GB from the index). So torch itself is installed with
`--no-index --no-deps`, which can only take that file, and then its dependencies (and NumPy, as the upstream
image has it) from the pinned `localcluster/torch-constraints.txt`, with torch already satisfied. A machine
without the file gets `TorchUnavailable`, never a download of another build.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import pathlib
import subprocess
import sys
from collections.abc import Iterator, Mapping
from typing import Any

from .build import cache_dir
from .simstatus import is_own_image

VERSION = "2.13.0"
IMAGE = "pytorch"  # matches pytorch/pytorch:<tag> and a mirror's <registry>/.../pytorch:<tag>
CONSTRAINTS = pathlib.Path(__file__).resolve().parents[1] / "torch-constraints.txt"
STAMP = ".constraints-sha256"
COMMANDS = ("python", "python3", "torchrun")  # the image's commands that come from the venv


class TorchUnavailable(RuntimeError):
    """PyTorch's CPU build is not on this machine's disk, so the image cannot be made here."""


def venv_dir() -> pathlib.Path:
    return cache_dir() / f"torch-{VERSION}"


def bin_dir() -> pathlib.Path:
    return venv_dir() / "bin"


def ready() -> bool:
    """The venv exists and was installed from the current constraints."""
    stamp = venv_dir() / STAMP
    return (bin_dir() / "torchrun").exists() and stamp.exists() and stamp.read_text() == _digest()


def _digest() -> str:
    return hashlib.sha256(CONSTRAINTS.read_bytes()).hexdigest()


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One maker at a time across processes (the simulator and a test may both ask first)."""
    lock = cache_dir() / f"torch-{VERSION}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure(log: pathlib.Path) -> pathlib.Path:
    """Makes the venv once (a no-op when it matches the constraints) and returns it. Raises TorchUnavailable when
    the torch file is not on disk, RuntimeError when another step fails; the steps' output goes to `log`."""
    if ready():
        return venv_dir()
    log.parent.mkdir(parents=True, exist_ok=True)
    with _locked():
        if ready():
            return venv_dir()
        venv, python = venv_dir(), bin_dir() / "python"
        pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        steps = [([sys.executable, "-m", "venv", "--clear", str(venv)], RuntimeError),
                 ([*pip, "--no-index", "--no-deps", f"torch=={VERSION}"], TorchUnavailable),
                 ([*pip, "-r", str(CONSTRAINTS)], RuntimeError)]
        with open(log, "ab") as out:
            for step, error in steps:
                out.write(f"--- {' '.join(step)}\n".encode())
                out.flush()
                if subprocess.run(step, stdout=out, stderr=subprocess.STDOUT).returncode != 0:
                    if error is TorchUnavailable:
                        raise TorchUnavailable(f"no file of torch {VERSION} on this machine's disk for pip "
                                               f"(its find-links); see {log}")
                    raise RuntimeError(f"making the pytorch image's venv failed; see {log}")
        (venv / STAMP).write_text(_digest())
    return venv


def serves(container: Mapping[str, Any]) -> bool:
    return is_own_image(container.get("image", ""), (IMAGE,))


def launch(words: list[str], env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """argv and extra environment of a pytorch container: its `python`, `python3` and `torchrun` are the venv's,
    and the venv's bin comes first on PATH, so `torchrun --no-python python ...` finds the same interpreter."""
    first = "python" if words and words[0] == sys.executable else (words[0] if words else "")  # simprocess.argv's
    if first in COMMANDS:
        words = [str(bin_dir() / first), *words[1:]]
    return words, {"PATH": f"{bin_dir()}{os.pathsep}{env.get('PATH', '')}"}
