"""nndl.kernels.allocator: freed memory kept for the next step (glibc's malloc)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from nndl.kernels import allocator

# In a child process (the setting lasts for the whole process): allocate, write and free a
# 64 MiB array, then count the page faults of writing a second one of the same size.
CHILD = """
import resource, sys
import numpy as np
from nndl.kernels.allocator import keep_freed_memory
on = keep_freed_memory() if sys.argv[1] == "keep" else False
n = 64 * 2**20 // 8
a = np.ones(n); del a
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
b = np.ones(n)
print(int(on), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

GLIBC = sys.platform.startswith("linux") and (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith(
    "glibc"
)


def _faults(mode: str, env: dict[str, str] | None = None) -> tuple[bool, int]:
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True,
                         check=True, env={**os.environ, **(env or {})})  # fmt: skip
    on, faults = out.stdout.split()
    return on == "1", int(faults)


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_kept_memory_is_reused_without_page_faults():
    on, kept = _faults("keep")
    off, fresh = _faults("default")
    assert on and not off
    # 64 MiB is 16,384 pages of 4 KiB (or 32 huge pages): freshly mapped memory faults on
    # them; memory kept from the first array is already mapped.
    assert kept < 16, (kept, fresh)
    assert fresh >= 32, (kept, fresh)


def test_the_switch_turns_it_off(monkeypatch):
    monkeypatch.setenv("NNDL_KEEP_FREED_MEMORY", "0")
    assert allocator.keep_freed_memory() is False


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_the_switch_is_read_in_a_child_as_well():
    on, faults = _faults("keep", {"NNDL_KEEP_FREED_MEMORY": "0"})
    assert not on and faults >= 32


def test_without_glibc_it_does_nothing(monkeypatch):
    monkeypatch.setattr(allocator, "_glibc", lambda: None)
    assert allocator.keep_freed_memory() is False
