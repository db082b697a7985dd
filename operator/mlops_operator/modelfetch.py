"""`mlops-operator fetch-model`: the storage init container of serving pods. Fetches a model into a folder.

file:// copies a file or a folder; http(s):// streams one file (a .tar.gz, .tgz or .zip is unpacked): a tar
archive is unpacked as it streams in, a .zip (which needs its index at the end) is staged in the temporary folder
(TMPDIR), never inside the destination, so the model volume holds the model once, not beside its archive;
s3://, gs:// and hf:// go through fsspec (with s3fs, gcsfs or huggingface_hub installed, as in the operator's
image), whose backends read credentials from the environment the pod's secretRef fills (AWS_*, GOOGLE_*,
HF_TOKEN). A marker file makes a second run with the same URI a no-op (an init container may run twice).
"""

from __future__ import annotations

import pathlib
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
import zlib
from typing import IO
from urllib.parse import urlsplit

MARKER = ".mlops-fetched"
FSSPEC_SCHEMES = {"s3": "s3fs", "gs": "gcsfs", "hf": "huggingface_hub"}


class FetchError(RuntimeError):
    pass


def fetch(uri: str, dest: str | pathlib.Path) -> pathlib.Path:
    dest = pathlib.Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    marker = dest / MARKER
    if marker.exists() and marker.read_text() == uri:
        return dest
    parts = urlsplit(uri)
    if parts.scheme == "file":
        _copy_local(pathlib.Path(parts.path), dest)
    elif parts.scheme in ("http", "https"):
        _download(uri, dest)
    elif parts.scheme in FSSPEC_SCHEMES:
        _fsspec(uri, dest, FSSPEC_SCHEMES[parts.scheme])
    elif parts.scheme == "pvc":
        raise FetchError(f"{uri}: pvc:// models are mounted into the pod, not fetched")
    else:
        raise FetchError(f"{uri}: unsupported scheme {parts.scheme!r} (file, http, https, s3, gs, hf, pvc)")
    marker.write_text(uri)
    return dest


def _copy_local(src: pathlib.Path, dest: pathlib.Path) -> None:
    if src.is_dir():
        shutil.copytree(src, dest, dirs_exist_ok=True)
    elif src.is_file():
        shutil.copy2(src, dest / src.name)
    else:
        raise FetchError(f"file://{src}: no such file or folder")


def _download(uri: str, dest: pathlib.Path) -> None:
    name = pathlib.PurePosixPath(urlsplit(uri).path).name or "model"
    try:
        with urllib.request.urlopen(uri, timeout=60) as resp:
            if name.endswith((".tar.gz", ".tgz")):
                _untar_stream(uri, resp, dest)
            elif name.endswith(".zip"):
                with tempfile.TemporaryFile(prefix="mlops-model-") as staged:
                    shutil.copyfileobj(resp, staged, length=1 << 20)
                    _unzip(uri, staged, dest)
            else:
                partial = dest / f".partial-{name}"
                try:
                    with open(partial, "wb") as out:
                        shutil.copyfileobj(resp, out, length=1 << 20)
                    partial.rename(dest / name)
                finally:
                    partial.unlink(missing_ok=True)
    except OSError as err:  # URLError and HTTPError are OSErrors
        raise FetchError(f"{uri}: {err}") from None


def _untar_stream(uri: str, stream: IO[bytes], dest: pathlib.Path) -> None:
    try:
        with tarfile.open(fileobj=stream, mode="r|gz") as tar:
            tar.extractall(dest, filter="data")  # refuses members that climb out of dest
    except (tarfile.TarError, EOFError, zlib.error) as err:  # e.g. a proxy's HTML page instead of the archive
        raise FetchError(f"{uri}: not a usable archive: {' '.join(str(err).split())}") from None


def _unzip(uri: str, staged: IO[bytes], dest: pathlib.Path) -> None:
    try:
        with zipfile.ZipFile(staged) as archive:
            for member in archive.namelist():  # refuse paths that climb out of dest
                if not (dest / member).resolve().is_relative_to(dest.resolve()):
                    raise FetchError(f"{uri}: archive member {member!r} escapes the model folder")
            archive.extractall(dest)
    except zipfile.BadZipFile as err:
        raise FetchError(f"{uri}: not a usable archive: {' '.join(str(err).split())}") from None


def _fsspec(uri: str, dest: pathlib.Path, backend: str) -> None:
    try:
        import fsspec
        fs, path = fsspec.core.url_to_fs(uri)
    except ImportError as err:
        raise FetchError(f"{uri}: needs the Python package {backend} (it is in the operator's image): {err}") from None
    try:
        if fs.isdir(path):
            fs.get(path.rstrip("/") + "/", str(dest) + "/", recursive=True)
        else:
            fs.get(path, str(dest / pathlib.PurePosixPath(path).name))
    except (OSError, ValueError) as err:
        raise FetchError(f"{uri}: {err}") from None
