"""Finds or builds the Kubernetes binaries of the local control plane.

Owns: Debian package installation, the Kubernetes build from Debian's source package, and the binary cache
(`~/.cache/mlops-operator/k8s-<version>/bin`). Calls: apt-get, tar, make. Nothing here starts a process that
keeps running.

Order of preference for a binary: `KUBEBUILDER_ASSETS` (as setup-envtest lays it out), then the cache.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
import subprocess
import tarfile
import tempfile

from .errors import ClusterError

K8S_VERSION = "1.20.2"
# Debian bookworm ships Kubernetes 1.20.2 as source only; Go and etcd come from the same release.
DEBIAN_PACKAGES = ["etcd-server", "golang-go", "rsync", "jq", "openssl", "dpkg-dev",
                   "golang-github-modern-go-reflect2-dev",
                   # Real peers for the tests: drift alerts go to a real Alertmanager on loopback, and a real
                   # Prometheus scrapes the operator's /metrics. Their binaries also run the pods of the upstream
                   # prometheus and alertmanager images (simprocess.DEBIAN_IMAGES).
                   "prometheus", "prometheus-alertmanager",
                   # docs/gitops.md's Argo CD health checks run under Lua 5.1 (Argo CD's dialect) in the tests.
                   "lua5.1",
                   # The pod network (network.py): kube-proxy drives iptables-restore and clears UDP flows with
                   # conntrack.
                   "iptables", "conntrack"]
BUILT = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kube-proxy")
REFLECT2_SRC = pathlib.Path("/usr/share/gocode/src/github.com/modern-go/reflect2")
DEB_SRC_FILE = pathlib.Path("/etc/apt/sources.list.d/mlops-operator-deb-src.sources")
DEB_SRC_ENTRY = """Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


def cache_dir() -> pathlib.Path:
    base = os.environ.get("MLOPS_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "mlops-operator")
    return pathlib.Path(base)


def k8s_bin_dir() -> pathlib.Path:
    return cache_dir() / f"k8s-{K8S_VERSION}" / "bin"


@dataclasses.dataclass(frozen=True)
class Binaries:
    etcd: pathlib.Path
    apiserver: pathlib.Path
    controller_manager: pathlib.Path | None
    scheduler: pathlib.Path | None
    kubectl: pathlib.Path | None
    proxy: pathlib.Path | None  # kube-proxy; without it the cluster has no Services (KUBEBUILDER_ASSETS may lack it)
    source: str  # "KUBEBUILDER_ASSETS" or "cache"


def _run(cmd: list[str], log: pathlib.Path, what: str, **kw) -> None:
    with open(log, "a") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, **kw)
    if proc.returncode != 0:
        raise ClusterError(f"{what} failed (exit {proc.returncode}); see {log}")


def _which(name: str) -> pathlib.Path | None:
    found = shutil.which(name)
    return pathlib.Path(found) if found else None


def from_assets(folder: str) -> Binaries:
    """Binaries from a KUBEBUILDER_ASSETS folder; the controller manager and scheduler are optional there."""
    root = pathlib.Path(folder)
    missing = [n for n in ("etcd", "kube-apiserver") if not (root / n).is_file()]
    if missing:
        raise ClusterError(f"KUBEBUILDER_ASSETS={folder} lacks {', '.join(missing)}")

    def opt(name: str) -> pathlib.Path | None:
        return root / name if (root / name).is_file() else None

    return Binaries(etcd=root / "etcd", apiserver=root / "kube-apiserver",
                    controller_manager=opt("kube-controller-manager"), scheduler=opt("kube-scheduler"),
                    kubectl=opt("kubectl") or k8s_kubectl_or_none(), proxy=opt("kube-proxy"),
                    source="KUBEBUILDER_ASSETS")


def k8s_kubectl_or_none() -> pathlib.Path | None:
    cached = k8s_bin_dir() / "kubectl"
    return cached if cached.is_file() else _which("kubectl")


def cached() -> Binaries | None:
    bins = k8s_bin_dir()
    etcd = _which("etcd")
    if etcd is None or not all((bins / n).is_file() for n in BUILT):
        return None
    return Binaries(etcd=etcd, apiserver=bins / "kube-apiserver", controller_manager=bins / "kube-controller-manager",
                    scheduler=bins / "kube-scheduler", kubectl=bins / "kubectl", proxy=bins / "kube-proxy",
                    source="cache")


def missing_from_cache() -> list[str]:
    bins = k8s_bin_dir()
    return [n for n in BUILT if not (bins / n).is_file()]


def find() -> Binaries | None:
    """What is usable now, without installing or building anything."""
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    return from_assets(assets) if assets else cached()


def ensure(log: pathlib.Path) -> Binaries:
    """Returns usable binaries, installing Debian packages and building Kubernetes once if needed."""
    log.parent.mkdir(parents=True, exist_ok=True)
    if not os.environ.get("KUBEBUILDER_ASSETS") and _which("apt-get"):
        install_debian_packages(log)  # a no-op when every package is there (a dpkg query each)
    found = find()
    if found is not None:
        return found
    install_debian_packages(log)
    # A cache from before a binary joined BUILT builds only what it lacks (kube-proxy alone: about 1 min).
    build_kubernetes(log, missing_from_cache())
    found = cached()
    if found is None:
        raise ClusterError(f"the Kubernetes build finished but {k8s_bin_dir()} is incomplete; see {log}")
    return found


def _missing_packages() -> list[str]:
    missing = []
    for pkg in DEBIAN_PACKAGES:
        proc = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True)
        if "install ok installed" not in proc.stdout:
            missing.append(pkg)
    return missing


def install_debian_packages(log: pathlib.Path) -> None:
    if _which("apt-get") is None or _which("dpkg-query") is None:
        raise ClusterError("no Debian package manager (apt-get) here: set KUBEBUILDER_ASSETS to a folder with "
                           "etcd and kube-apiserver (setup-envtest makes one), or USE_EXISTING_CLUSTER=true "
                           "with KUBECONFIG")
    missing = _missing_packages()
    need_src = not _has_deb_src()
    if not missing and not need_src:
        return
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if need_src:
        _run(sudo + ["tee", str(DEB_SRC_FILE)], log, f"writing {DEB_SRC_FILE}", input=DEB_SRC_ENTRY.encode())
    _run(sudo + ["apt-get", "update", "-q"], log, "apt-get update")
    if missing:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        _run(sudo + ["apt-get", "install", "-y", "-q", *missing], log, f"apt-get install {' '.join(missing)}",
             env=env)


def _has_deb_src() -> bool:
    roots = [pathlib.Path("/etc/apt/sources.list"), *pathlib.Path("/etc/apt/sources.list.d").glob("*")]
    for path in roots:
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("deb-src ") or (line.startswith("Types:") and "deb-src" in line):
                return True
    return False


def build_kubernetes(log: pathlib.Path, names: list[str] | tuple[str, ...] = BUILT) -> None:
    """Builds the named binaries (default all of BUILT) from Debian's source package into the cache (about 4 min
    on 2 cores for all); binaries already in the cache stay."""
    bins = k8s_bin_dir()
    cache_dir().mkdir(parents=True, exist_ok=True)
    work = pathlib.Path(tempfile.mkdtemp(prefix="k8s-build-", dir=str(cache_dir())))
    try:
        _run(["apt-get", "source", "--download-only", "kubernetes"], log, "apt-get source kubernetes", cwd=work)
        tarballs = list(work.glob(f"kubernetes_*{K8S_VERSION}.orig.tar.gz"))
        if not tarballs:
            raise ClusterError(f"apt-get source gave no kubernetes {K8S_VERSION} tarball; see {log}")
        with tarfile.open(tarballs[0]) as tar:
            tar.extractall(work, filter="tar")
        tree = work / f"kubernetes-{K8S_VERSION}"
        # Go 1.19 with the vendored reflect2 crashes kube-apiserver on the first map encoding; 1.0.2 fixes it.
        vendored = tree / "vendor/github.com/modern-go/reflect2"
        shutil.rmtree(vendored)
        shutil.copytree(REFLECT2_SRC, vendored)
        (vendored / "go.mod").unlink(missing_ok=True)
        gopath = tree / ".go"
        (gopath / "src/k8s.io").mkdir(parents=True)
        (gopath / "src/k8s.io/kubernetes").symlink_to("../../..")
        home = work / "home"
        home.mkdir()
        env = dict(os.environ, GOPATH=str(gopath), CGO_ENABLED="0", HOME=str(home))
        names = list(names) or list(BUILT)
        what = " ".join(f"cmd/{n}" for n in names)
        _run(["make", f"WHAT={what}"], log, "the Kubernetes build", cwd=tree, env=env)
        out = tree / "_output/local/bin/linux/amd64"
        staging = bins.with_name("bin.partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for name in BUILT:
            built = out / name if name in names else bins / name
            shutil.copy2(built, staging / name)
        shutil.rmtree(bins, ignore_errors=True)
        staging.rename(bins)
    finally:
        shutil.rmtree(work, ignore_errors=True)
