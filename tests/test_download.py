"""nndl.io.download: fetching over a loopback HTTP server, checksums, safe and atomic unpacking."""

from __future__ import annotations

import io
import os
import socket
import tarfile
from pathlib import Path

import numpy as np
import pytest
from _cifar import write_synthetic_cifar10

from nndl.data import get_CIFAR10_data, load_CIFAR10, resolve_data_dir
from nndl.io.download import (
    CIFAR10_FILES,
    ChecksumError,
    DownloadError,
    UnsafeArchiveError,
    download_cifar10,
    md5sum,
    safe_extract_tar,
)


@pytest.fixture
def closed_url():
    """A URL on a loopback port that nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/cifar-10-python.tar.gz"


def _tarball(path: Path, source: Path, extra: list[tarfile.TarInfo] = ()) -> str:
    """Pack ``source`` (a cifar-10-batches-py folder) like the official archive; return md5."""
    with tarfile.open(path, "w:gz") as tar:
        tar.add(source, arcname="cifar-10-batches-py")
        for info in extra:
            data = b"evil" if info.isfile() else None
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return md5sum(path)


@pytest.fixture
def archive(tmp_path, served):
    """(URL, md5, source folder) of a tiny CIFAR-10 tarball on the local server."""
    www, base = served
    source = write_synthetic_cifar10(tmp_path / "source", n_per_batch=6, n_test=6, seed=7)
    md5 = _tarball(www / "cifar-10-python.tar.gz", source)
    return f"{base}/cifar-10-python.tar.gz", md5, source


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_download_extracts_and_loads(tmp_path, archive):
    url, md5, source = archive
    parent = tmp_path / "dl"
    parent.mkdir()
    got = download_cifar10(parent, url=url, md5=md5)
    assert got == parent / "cifar-10-batches-py"
    # Nothing else is left beside it: no archive, no temporary files or folders.
    assert os.listdir(parent) == ["cifar-10-batches-py"]
    assert sorted(os.listdir(got)) == sorted(CIFAR10_FILES)
    for u, v in zip(load_CIFAR10(got), load_CIFAR10(source), strict=True):
        np.testing.assert_array_equal(u, v)


def test_resolve_data_dir_downloads_into_new_folders(tmp_path, archive, monkeypatch, capsys):
    url, md5, _ = archive
    monkeypatch.setenv("NNDL_CIFAR10_URL", url)  # the URL comes from the environment
    target = tmp_path / "a" / "b"
    got = resolve_data_dir(target, md5=md5)
    assert got == target / "cifar-10-batches-py"
    assert load_CIFAR10(got)[0].shape == (30, 32, 32, 3)
    # The library is silent unless progress is asked for.
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    # Once there, it is found without any network access.
    monkeypatch.setenv("NNDL_CIFAR10_URL", "http://127.0.0.1:9/nothing")
    assert resolve_data_dir(target) == got


def test_progress_bar_when_asked(tmp_path, archive, capsys):
    url, md5, _ = archive
    download_cifar10(tmp_path / "p", url=url, md5=md5, progress=True)
    assert "cifar-10-python.tar.gz" in capsys.readouterr().err


def test_checksum_mismatch_leaves_nothing_behind(tmp_path, archive):
    url, _, _ = archive
    parent = tmp_path / "new" / "folder"
    with pytest.raises(ChecksumError, match="expected 0123456789abcdef0123456789abcdef"):
        download_cifar10(parent, url=url, md5="0123456789abcdef0123456789abcdef")
    assert not (tmp_path / "new").exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    with pytest.raises(ChecksumError):
        download_cifar10(existing, url=url, md5="0" * 32)
    assert os.listdir(existing) == []


def test_default_md5_is_the_published_one(tmp_path, archive):
    url, _, _ = archive
    with pytest.raises(ChecksumError, match="c58f30108f718f92721af3b95e74349a"):
        resolve_data_dir(tmp_path / "x", url=url)
    assert not (tmp_path / "x").exists()


def _unsafe_members(outside: Path) -> dict[str, tarfile.TarInfo]:
    sym = tarfile.TarInfo("cifar-10-batches-py/link")
    sym.type, sym.linkname = tarfile.SYMTYPE, str(outside)
    hard = tarfile.TarInfo("cifar-10-batches-py/hard")
    hard.type, hard.linkname = tarfile.LNKTYPE, "../../etc/passwd"
    dev = tarfile.TarInfo("cifar-10-batches-py/dev")
    dev.type, dev.devmajor, dev.devminor = tarfile.CHRTYPE, 1, 3
    # name -> (member, what the error must say)
    return {
        "dotdot": (tarfile.TarInfo("../evil"), "contains '..'"),
        "nested dotdot": (tarfile.TarInfo("cifar-10-batches-py/../../evil2"), "contains '..'"),
        "absolute": (tarfile.TarInfo(str(outside / "abs_evil")), "absolute path"),
        "symlink": (sym, "is a link"),
        "hardlink": (hard, "is a link"),
        "device": (dev, "device"),
    }


@pytest.mark.parametrize("kind", list(_unsafe_members(Path("/x"))))
def test_unsafe_archive_is_refused_and_nothing_lands_outside(tmp_path, served, kind):
    www, base = served
    outside = tmp_path / "outside"
    outside.mkdir()
    member, pattern = _unsafe_members(outside)[kind]
    source = write_synthetic_cifar10(tmp_path / "source", n_per_batch=2, n_test=2)
    md5 = _tarball(www / "bad.tar.gz", source, extra=[member])
    parent = outside / "inner" / "data"
    before = _tree(tmp_path)
    with pytest.raises(UnsafeArchiveError, match=pattern):
        download_cifar10(parent, url=f"{base}/bad.tar.gz", md5=md5)
    assert _tree(tmp_path) == before  # no evil file, no partial folder, no temp file
    # The checker also stands alone.
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(UnsafeArchiveError):
        safe_extract_tar(www / "bad.tar.gz", dest)
    assert os.listdir(dest) == []
    assert not (tmp_path / "evil").exists() and not (outside / "abs_evil").exists()


def test_unreadable_archive_is_a_value_error(tmp_path):
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"this is not a tarball")
    with pytest.raises(ValueError, match="not a readable tar archive"):
        safe_extract_tar(bad, tmp_path)


def test_archive_without_the_batches_is_refused(tmp_path, served):
    www, base = served
    other = tmp_path / "other"
    other.mkdir()
    (other / "readme.txt").write_text("hi")
    with tarfile.open(www / "x.tar.gz", "w:gz") as tar:
        tar.add(other, arcname="cifar-10-batches-py")
    with pytest.raises(ValueError, match="lacks"):
        download_cifar10(tmp_path / "p", url=f"{base}/x.tar.gz", md5=md5sum(www / "x.tar.gz"))
    assert not (tmp_path / "p").exists()


def _assert_where_to_put(msg: str, batches_dir: Path) -> None:
    assert str(batches_dir) in msg
    for name in CIFAR10_FILES:
        assert name in msg
    assert "cifar-10-python.tar.gz" in msg
    assert "NNDL_DATA_DIR" in msg and "--data-dir" in msg


def test_offline_says_where_to_put_the_files(tmp_path, closed_url):
    parent = tmp_path / "offline"
    with pytest.raises(DownloadError) as info:
        download_cifar10(parent, url=closed_url, timeout=5)
    _assert_where_to_put(str(info.value), parent / "cifar-10-batches-py")
    assert isinstance(info.value, OSError)
    assert not parent.exists()


def test_offline_through_get_cifar10_data(tmp_path, closed_url, monkeypatch):
    monkeypatch.setenv("NNDL_CIFAR10_URL", closed_url)
    monkeypatch.setenv("NNDL_DATA_DIR", str(tmp_path / "env"))
    with pytest.raises(DownloadError) as info:
        get_CIFAR10_data(10, 0, 0)
    _assert_where_to_put(str(info.value), tmp_path / "env" / "cifar-10-batches-py")
    assert not (tmp_path / "env").exists()


def test_http_error_is_a_download_error(tmp_path, served):
    _, base = served
    with pytest.raises(DownloadError, match="404"):
        download_cifar10(tmp_path / "p", url=f"{base}/missing.tar.gz")
    assert not (tmp_path / "p").exists()


def test_a_manually_downloaded_tarball_is_used_offline(tmp_path, closed_url):
    parent = tmp_path / "manual"
    parent.mkdir()
    source = write_synthetic_cifar10(tmp_path / "source", n_per_batch=3, n_test=3)
    md5 = _tarball(parent / "cifar-10-python.tar.gz", source)
    got = resolve_data_dir(parent, url=closed_url, md5=md5)
    np.testing.assert_array_equal(load_CIFAR10(got)[1], load_CIFAR10(source)[1])
    # The user's own file is kept.
    assert sorted(os.listdir(parent)) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]


def test_a_manual_tarball_with_the_wrong_md5_is_kept_and_reported(tmp_path, closed_url):
    parent = tmp_path / "manual"
    parent.mkdir()
    (parent / "cifar-10-python.tar.gz").write_bytes(b"junk")
    with pytest.raises(ChecksumError, match="cifar-10-python.tar.gz has md5"):
        download_cifar10(parent, url=closed_url)
    assert os.listdir(parent) == ["cifar-10-python.tar.gz"]
