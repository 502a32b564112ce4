"""nndl.io.atomic: a file is replaced whole or not at all."""

import os
import stat

import pytest

from nndl.io.atomic import UnsafeTargetError, atomic_open, atomic_write_bytes


def test_a_finished_write_replaces_the_file_with_the_usual_mode(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600
    assert os.listdir(tmp_path) == ["f.bin"]


def _fail_mid_write(path):
    raise RuntimeError("disk on fire")


def _turn_into_a_fifo(path):
    path.unlink()
    os.mkfifo(path)  # a FIFO is never swapped for a regular file


@pytest.mark.parametrize(
    ("during", "error", "match"),
    [(_fail_mid_write, RuntimeError, "disk on fire"),
     (_turn_into_a_fifo, UnsafeTargetError, "FIFO")],  # fmt: skip
)
def test_a_failed_write_keeps_the_target_and_leaves_no_temp(tmp_path, during, error, match):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    with pytest.raises(error, match=match):
        with atomic_open(path) as f:
            f.write(b"half of the new")
            during(path)
    if during is _fail_mid_write:
        assert path.read_bytes() == b"old"
    else:
        assert stat.S_ISFIFO(os.lstat(path).st_mode)
    assert os.listdir(tmp_path) == ["f.bin"]


def test_a_missing_folder_is_an_error_not_a_silent_success(tmp_path):
    with pytest.raises(FileNotFoundError):
        atomic_write_bytes(tmp_path / "no" / "f.bin", b"x")
