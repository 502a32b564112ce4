"""Outputs never destroy what they replace: the atomic writer replaces only regular files
(or new names), keeps its temporary names within the file system's limit, and the
commands refuse to write over a run folder's own files."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest
from _cifar import write_synthetic_cifar10
from _cli import run_cli

from nndl.io import atomic
from nndl.io.atomic import UnsafeTargetError, atomic_write_bytes, check_target

SIZES = ["--num-training", "40", "--num-validation", "20", "--num-test", "20"]
NET = ["--num-filters", "2", "--hidden-dims", "4", "--batch-size", "20", "--epochs", "1"]
QUIET = ["--no-plots", "--quiet"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("safe_outputs")
    data = write_synthetic_cifar10(root / "data", n_per_batch=20, n_test=20)
    out = root / "run"
    code, _, err = run_cli("train", "--data-dir", data, "--out", out, *SIZES, *NET, *QUIET)
    assert code == 0, err
    return out


def _refused(path: Path, what: str) -> None:
    with pytest.raises(UnsafeTargetError, match=what) as info:
        atomic_write_bytes(path, b"new")
    assert str(path) in str(info.value)
    assert isinstance(info.value, OSError)


# --- the writer ----------------------------------------------------------------------


def test_a_fifo_is_refused_and_left_a_fifo(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    _refused(fifo, "FIFO")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert os.listdir(tmp_path) == ["pipe"]  # no temp file left behind


def test_a_folder_is_refused_and_left_with_its_files(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "keep").write_bytes(b"k")
    _refused(folder, "folder")
    assert (folder / "keep").read_bytes() == b"k"
    assert sorted(os.listdir(tmp_path)) == ["d"]


@pytest.mark.skipif(not hasattr(os, "mknod") or os.geteuid() != 0, reason="needs root")
def test_a_device_node_is_refused_and_left_a_device(tmp_path):
    dev = tmp_path / "null"
    try:
        os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a private /dev/null
    except PermissionError:
        pytest.skip("this container may not create device nodes")
    _refused(dev, "character device")
    link = tmp_path / "link"
    link.symlink_to(dev)
    _refused(link, "character device")
    assert stat.S_ISCHR(os.lstat(dev).st_mode) and link.is_symlink()
    assert sorted(os.listdir(tmp_path)) == ["link", "null"]


def test_a_character_device_is_refused_by_its_mode(tmp_path, monkeypatch):
    # Without root: the writer looks at st_mode, so a stat that says "character device"
    # must stop it before it writes anything.
    path = tmp_path / "dev"
    path.write_bytes(b"old")
    real_stat = os.stat

    def fake_stat(p, *a, **k):
        st = real_stat(p, *a, **k)
        if Path(p) == path:
            return os.stat_result((stat.S_IFCHR | 0o666, *tuple(st)[1:]))
        return st

    monkeypatch.setattr(atomic.os, "stat", fake_stat)
    _refused(path, "character device")
    monkeypatch.undo()
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["dev"]


def test_a_symlink_to_a_fifo_is_refused(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    link = tmp_path / "out.npz"
    link.symlink_to(fifo)
    _refused(link, "FIFO")
    assert link.is_symlink() and stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_a_symlink_to_a_file_replaces_the_file_and_stays_a_link(tmp_path):
    target = tmp_path / "real.bin"
    target.write_bytes(b"old")
    link = tmp_path / "link.bin"
    link.symlink_to(target)
    atomic_write_bytes(link, b"new")
    assert link.is_symlink() and target.read_bytes() == b"new"
    assert sorted(os.listdir(tmp_path)) == ["link.bin", "real.bin"]


def test_a_dangling_symlink_is_refused(tmp_path):
    link = tmp_path / "link.bin"
    link.symlink_to(tmp_path / "missing")
    _refused(link, "dangling")
    assert link.is_symlink() and not (tmp_path / "missing").exists()


def test_a_regular_file_is_still_replaced_and_a_new_name_created(tmp_path):
    assert check_target(tmp_path / "new") == tmp_path / "new"
    atomic_write_bytes(tmp_path / "new", b"1")
    atomic_write_bytes(tmp_path / "new", b"2")
    assert (tmp_path / "new").read_bytes() == b"2"


def _write_long(tmp_path: Path, name: str, monkeypatch) -> None:
    prefixes = []
    mkstemp = atomic.tempfile.mkstemp

    def spy(*a, **k):
        prefixes.append(k["prefix"])
        return mkstemp(*a, **k)

    monkeypatch.setattr(atomic.tempfile, "mkstemp", spy)
    atomic_write_bytes(tmp_path / name, b"data")
    atomic_write_bytes(tmp_path / name, b"more")  # and replaced again
    assert (tmp_path / name).read_bytes() == b"more"
    assert os.listdir(tmp_path) == [name]
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    for prefix in prefixes:  # a run folder's sweep (".*.tmp-*") still finds them
        assert len(os.fsencode(prefix)) + 8 <= limit
        assert prefix.startswith(".") and prefix.endswith(".tmp-")


@pytest.mark.parametrize("length", [200, 250])
def test_a_long_valid_name_writes(tmp_path, monkeypatch, length):
    _write_long(tmp_path, "m" * (length - 4) + ".npz", monkeypatch)


def test_the_longest_name_the_file_system_allows_writes(tmp_path, monkeypatch):
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    name = "x" * limit
    try:
        (tmp_path / name).write_bytes(b"")
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            pytest.skip(f"this file system refuses a {limit}-byte name")
        raise
    _write_long(tmp_path, name, monkeypatch)


def test_a_long_multibyte_name_is_cut_on_whole_characters(tmp_path, monkeypatch):
    name = "é" * 125 + ".npz"  # 254 bytes in UTF-8
    if len(os.fsencode(name)) > os.pathconf(tmp_path, "PC_NAME_MAX"):
        pytest.skip("file system names shorter than 254 bytes")
    _write_long(tmp_path, name, monkeypatch)


def test_the_name_limit_falls_back_to_255(tmp_path, monkeypatch):
    def no_pathconf(*_):
        raise OSError(errno.EINVAL, "not supported")

    monkeypatch.setattr(atomic.os, "pathconf", no_pathconf)
    assert atomic._name_max(tmp_path) == 255
    prefix = atomic._temp_prefix(tmp_path / ("y" * 250))
    assert len(prefix) + 8 <= 255


# --- nndl export --output -------------------------------------------------------------


@pytest.mark.parametrize("name", ["best_model.npz", "config.json", "checkpoint.npz", ".lock"])
def test_export_refuses_the_run_folders_own_files(run, name):
    own = run / name
    before = own.read_bytes()
    code, out, err = run_cli("export", run, "--output", own)
    assert code == 2 and out == ""
    assert err.startswith("nndl export: error: --output") and "a file of the run folder" in err
    assert len(err.strip().splitlines()) == 1
    assert own.read_bytes() == before


def test_export_refuses_a_run_file_by_another_name(run, tmp_path):
    before = (run / "best_model.npz").read_bytes()
    alias = tmp_path / "alias.onnx"
    alias.symlink_to(run / "best_model.npz")
    hard = tmp_path / "hard.onnx"
    os.link(run / "last_model.npz", hard)
    dotted = run.parent / run.name / ".." / run.name / "best_model.npz"
    for output in (alias, hard, dotted, run / "loss.png"):  # loss.png: not written yet
        code, _, err = run_cli("export", run, "--output", output)
        assert code == 2 and "a file of the run folder" in err, output
    assert (run / "best_model.npz").read_bytes() == before
    assert not (run / "loss.png").exists()


def test_export_refuses_a_fifo_before_reading_the_model(run, tmp_path):
    fifo = tmp_path / "model.onnx"
    os.mkfifo(fifo)
    code, _, err = run_cli("export", run, "--output", fifo)
    assert code == 2 and err.startswith("nndl export: error:") and "FIFO" in err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
