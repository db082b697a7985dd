"""The model fetcher (the serving pods' init container): file:// and http:// for real, errors that name the URI,
and the marker that makes a second run a no-op."""

from __future__ import annotations

import functools
import http.server
import io
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import threading
import zipfile

import pytest

from mlops_operator.modelfetch import MARKER, FetchError, fetch


@pytest.fixture
def model_dir(tmp_path) -> pathlib.Path:
    src = tmp_path / "src" / "iris"
    (src / "sub").mkdir(parents=True)
    (src / "model.joblib").write_bytes(b"\x80\x04weights")
    (src / "sub" / "config.json").write_text('{"classes": 3}')
    return src


@pytest.fixture
def web(tmp_path):
    """A real HTTP server on 127.0.0.1 serving tmp_path/www; yields (base url, folder)."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def files(folder: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- file:// --------------------------------------------------------------------------------------------------


def test_file_uri_of_a_single_file(model_dir, tmp_path):
    dest = tmp_path / "dest"
    uri = f"file://{model_dir / 'model.joblib'}"
    assert fetch(uri, dest) == dest
    assert files(dest) == {"model.joblib": b"\x80\x04weights", MARKER: uri.encode()}


def test_file_uri_of_a_folder(model_dir, tmp_path):
    dest = tmp_path / "dest"
    fetch(f"file://{model_dir}", dest)
    assert files(dest) == {"model.joblib": b"\x80\x04weights", "sub/config.json": b'{"classes": 3}',
                           MARKER: f"file://{model_dir}".encode()}


def test_missing_file_raises_naming_the_uri(tmp_path):
    uri = f"file://{tmp_path / 'nope'}"
    with pytest.raises(FetchError, match="no such file or folder") as err:
        fetch(uri, tmp_path / "dest")
    assert uri in str(err.value)
    assert not (tmp_path / "dest" / MARKER).exists()


def test_the_marker_makes_a_second_fetch_a_no_op(model_dir, tmp_path):
    dest = tmp_path / "dest"
    uri = f"file://{model_dir}"
    fetch(uri, dest)
    # The source is gone: a second run with the same URI must not even look at it.
    shutil.rmtree(model_dir)
    assert fetch(uri, dest) == dest
    assert (dest / "model.joblib").read_bytes() == b"\x80\x04weights"
    # A different URI fetches again (and fails here, since that source does not exist either).
    with pytest.raises(FetchError):
        fetch(f"file://{model_dir}-v2", dest)


# --- http:// --------------------------------------------------------------------------------------------------


def test_http_single_file(web, tmp_path):
    base, root = web
    (root / "model.onnx").write_bytes(b"onnx" * 1000)
    dest = tmp_path / "dest"
    fetch(f"{base}/model.onnx", dest)
    assert files(dest) == {"model.onnx": b"onnx" * 1000, MARKER: f"{base}/model.onnx".encode()}


def test_http_tar_gz_is_unpacked(web, tmp_path):
    base, root = web
    with tarfile.open(root / "iris.tar.gz", "w:gz") as tar:
        for name, data in (("model.joblib", b"weights"), ("meta/schema.json", b"{}")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    dest = tmp_path / "dest"
    fetch(f"{base}/iris.tar.gz", dest)
    assert files(dest) == {"model.joblib": b"weights", "meta/schema.json": b"{}",
                           MARKER: f"{base}/iris.tar.gz".encode()}  # no archive, no partial download left


def test_http_zip_is_unpacked_and_escapes_are_refused(web, tmp_path):
    base, root = web
    with zipfile.ZipFile(root / "m.zip", "w") as archive:
        archive.writestr("model/weights.bin", b"w")
    fetch(f"{base}/m.zip", tmp_path / "dest")
    assert files(tmp_path / "dest") == {"model/weights.bin": b"w", MARKER: f"{base}/m.zip".encode()}

    with zipfile.ZipFile(root / "evil.zip", "w") as archive:
        archive.writestr("../../escaped.txt", b"x")
    with pytest.raises(FetchError, match="escapes the model folder"):
        fetch(f"{base}/evil.zip", tmp_path / "dest2")
    assert not list(tmp_path.rglob("escaped.txt"))


@pytest.mark.parametrize("name", ["m.tar.gz", "m.zip"])
def test_an_archive_is_never_staged_inside_the_model_folder(web, tmp_path, monkeypatch, name):
    """The model volume has a size limit of about the model's size: an archive beside its contents would need
    twice that. Whatever is in the folder when unpacking starts was put there by the download."""
    base, root = web
    if name.endswith(".zip"):
        with zipfile.ZipFile(root / name, "w") as archive:
            archive.writestr("weights.bin", b"w" * 1000)
        cls = zipfile.ZipFile
    else:
        with tarfile.open(root / name, "w:gz") as tar:
            info = tarfile.TarInfo("weights.bin")
            info.size = 1000
            tar.addfile(info, io.BytesIO(b"w" * 1000))
        cls = tarfile.TarFile
    dest = tmp_path / "dest"
    found_at_start = []
    original = cls.extractall

    def extractall(self, path=None, *args, **kwargs):
        found_at_start.extend(p.name for p in pathlib.Path(path).iterdir())
        return original(self, path, *args, **kwargs)

    monkeypatch.setattr(cls, "extractall", extractall)
    fetch(f"{base}/{name}", dest)
    assert found_at_start == []
    assert files(dest) == {"weights.bin": b"w" * 1000, MARKER: f"{base}/{name}".encode()}


def test_a_broken_or_escaping_archive_raises_naming_the_uri(web, tmp_path):
    base, root = web
    (root / "login.tar.gz").write_text("<html>please sign in</html>")  # a proxy's page instead of the archive
    with pytest.raises(FetchError) as err:
        fetch(f"{base}/login.tar.gz", tmp_path / "dest")
    assert f"{base}/login.tar.gz" in str(err.value)
    assert not (tmp_path / "dest" / MARKER).exists()

    (root / "bad.zip").write_bytes(b"PK not really")
    with pytest.raises(FetchError, match="bad.zip"):
        fetch(f"{base}/bad.zip", tmp_path / "dest3")

    with tarfile.open(root / "evil.tgz", "w:gz") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(FetchError, match="evil.tgz"):
        fetch(f"{base}/evil.tgz", tmp_path / "dest2")
    assert not list(tmp_path.rglob("escaped.txt"))


def test_http_404_raises_naming_the_uri_and_leaves_nothing(web, tmp_path):
    base, _ = web
    uri = f"{base}/missing.bin"
    dest = tmp_path / "dest"
    with pytest.raises(FetchError, match="404") as err:
        fetch(uri, dest)
    assert uri in str(err.value)
    assert list(dest.iterdir()) == []  # no partial file, no marker


# --- schemes that are not fetched -----------------------------------------------------------------------------


def test_unsupported_scheme(tmp_path):
    with pytest.raises(FetchError, match=r"ftp://host/m: unsupported scheme 'ftp'"):
        fetch("ftp://host/m", tmp_path / "dest")


def test_pvc_is_mounted_not_fetched(tmp_path):
    with pytest.raises(FetchError, match=r"pvc://claim/iris: pvc:// models are mounted"):
        fetch("pvc://claim/iris", tmp_path / "dest")


def test_s3_without_s3fs_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "s3fs", None)  # not installed (as in the test venv), even where it is
    with pytest.raises(FetchError) as err:
        fetch("s3://models/iris/v1", tmp_path / "dest")
    assert "s3://models/iris/v1" in str(err.value) and "s3fs" in str(err.value)
    assert not (tmp_path / "dest" / MARKER).exists()


# --- the console script ---------------------------------------------------------------------------------------


def _cli() -> list[str]:
    script = pathlib.Path(sys.executable).with_name("mlops-operator")
    return [str(script)] if script.exists() else [sys.executable, "-m", "mlops_operator.cli"]


def test_console_script(model_dir, tmp_path):
    dest = tmp_path / "dest"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    ok = subprocess.run([*_cli(), "fetch-model", "--uri", f"file://{model_dir / 'model.joblib'}", "--dest", str(dest)],
                        capture_output=True, text=True, timeout=30, env=env)
    assert ok.returncode == 0, ok.stderr
    assert (dest / "model.joblib").read_bytes() == b"\x80\x04weights"
    assert str(dest) in ok.stdout

    missing = f"file://{tmp_path / 'missing.joblib'}"
    bad = subprocess.run([*_cli(), "fetch-model", "--uri", missing, "--dest", str(tmp_path / "dest2")],
                         capture_output=True, text=True, timeout=30, env=env)
    assert bad.returncode == 1
    assert bad.stderr.strip() == f"fetch-model: {missing}: no such file or folder"
    assert "Traceback" not in bad.stderr
