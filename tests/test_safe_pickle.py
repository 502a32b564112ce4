"""nndl.io.safe_pickle: arrays and containers load; anything that could run code is refused."""

from __future__ import annotations

import builtins
import os
import pickle
import subprocess

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nndl.data import load_CIFAR10
from nndl.io.safe_pickle import RefusedGlobalError, load_pickle_file, safe_load, safe_loads


class _Exploit:
    """Unpickling this calls ``func(*args)``: the classic pickle code-execution trick."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _crafted(marker, how: str) -> bytes:
    if how == "os.system":
        payload = _Exploit(os.system, f"touch {marker}")
    elif how == "builtins.eval":
        payload = _Exploit(builtins.eval, f"open({str(marker)!r}, 'w').close()")
    elif how == "builtins.exec":
        payload = _Exploit(builtins.exec, f"open({str(marker)!r}, 'w').close()")
    else:
        payload = _Exploit(subprocess.call, ["touch", str(marker)])
    # Inside an otherwise valid batch, so the exploit must be refused mid-file.
    batch = {"labels": [0], "data": np.zeros((1, 3072), np.uint8), "x": payload}
    return pickle.dumps(batch, protocol=2)


# What the refusal must name; protocol 2 writes builtins as '__builtin__'.
EXPLOITS = {
    "os.system": r"'(posix|nt|os)\.system'",
    "builtins.eval": r"'(builtins|__builtin__)\.eval'",
    "builtins.exec": r"'(builtins|__builtin__)\.exec'",
    "subprocess.call": r"'(subprocess|commands)\.call'",
}


@pytest.mark.parametrize("how", sorted(EXPLOITS))
def test_crafted_pickle_is_refused_without_running(tmp_path, how):
    marker = tmp_path / "pwned"
    data = _crafted(marker, how)
    # Sanity check that the payload really is live: plain pickle would run it.
    probe = tmp_path / "probe"
    pickle.loads(_crafted(probe, how))
    assert probe.exists()
    with pytest.raises(RefusedGlobalError, match=EXPLOITS[how]):
        safe_loads(data)
    assert not marker.exists()
    assert issubclass(RefusedGlobalError, pickle.UnpicklingError)


def test_crafted_batch_through_the_loader_names_file_and_global(tiny_cifar):
    marker = tiny_cifar.parent / "pwned"
    (tiny_cifar / "data_batch_2").write_bytes(_crafted(marker, "os.system"))
    with pytest.raises(pickle.UnpicklingError) as info:
        load_CIFAR10(tiny_cifar)
    assert "data_batch_2" in str(info.value) and "system" in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload, refused",
    [
        # bytes-to-bytes codecs other than latin-1 text are not needed and refused.
        (b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x04\x00\x00\x00zlib\x86R.", "zlib"),
        # bytes(n) would allocate n bytes; only bytes() is ever written by pickle.
        (b"\x80\x02c__builtin__\nbytes\nJ\x00\xca\x9a;\x85R.", "bytes"),
        (pickle.dumps(np.array([None, 1], dtype=object), protocol=2), "object dtype"),
        (pickle.dumps(np.float64(1.5), protocol=2), "numpy._core.multiarray.scalar"),
        (b"\x80\x02cnumpy\nload\n.", "numpy.load"),
        (b"\x80\x02ccopyreg\n_reconstructor\n.", "copyreg._reconstructor"),
    ],
)
def test_only_the_allow_list_resolves(payload, refused):
    with pytest.raises(RefusedGlobalError, match=refused):
        safe_loads(payload)


def test_persistent_ids_are_refused():
    with pytest.raises(RefusedGlobalError, match="persistent"):
        safe_loads(b"\x80\x02X\x03\x00\x00\x00abcQ.")


@pytest.mark.parametrize("protocol", [2, 3, 4])
def test_arrays_and_containers_round_trip(protocol):
    obj = {
        "data": np.arange(3072 * 2, dtype=np.uint8).reshape(2, 3072),
        b"labels": [1, 2],
        "f": np.array([[1.5, -2.0]], dtype="<f8"),
        "empty": b"",
        "blob": b"\x00\xffabc",
        "names": ["a", b"b", ("t", 1.0, None, True)],
    }
    back = safe_loads(pickle.dumps(obj, protocol=protocol))
    assert back.keys() == obj.keys()
    for key in ("data", "f"):
        np.testing.assert_array_equal(back[key], obj[key])
        assert back[key].dtype == obj[key].dtype
    assert back[b"labels"] == [1, 2] and back["empty"] == b"" and back["blob"] == b"\x00\xffabc"
    assert back["names"] == obj["names"]


_leaves = (
    st.integers(-(2**40), 2**40)
    | st.text(max_size=8)
    | st.binary(max_size=8)
    | st.floats(allow_nan=False)
    | st.none()
)
_values = st.recursive(
    _leaves,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=4), kids, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=40, deadline=None)
@given(value=_values, shape=st.tuples(st.integers(0, 3), st.integers(1, 4)))
def test_safe_load_agrees_with_pickle(value, shape):
    arr = np.arange(np.prod(shape), dtype=np.int16).reshape(shape)
    data = pickle.dumps({"v": value, "a": arr}, protocol=2)
    ours, theirs = safe_loads(data), pickle.loads(data)
    assert ours["v"] == theirs["v"]
    np.testing.assert_array_equal(ours["a"], theirs["a"])


def test_load_pickle_file_names_truncated_file(tmp_path):
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps({"data": np.zeros((4, 5), np.uint8)}, protocol=2)[:-20])
    with pytest.raises(ValueError, match="not a readable pickle") as info:
        load_pickle_file(path)
    assert str(path) in str(info.value)


def test_python2_style_files_load_with_both_encodings(real_cifar):
    with open(real_cifar / "batches.meta", "rb") as f:
        as_bytes = safe_load(f, encoding="bytes")
    with open(real_cifar / "batches.meta", "rb") as f:
        as_text = safe_load(f, encoding="latin1")
    assert as_bytes[b"label_names"][0] == b"airplane"
    assert as_text["label_names"][0] == "airplane"
    with open(real_cifar / "test_batch", "rb") as f:
        raw = safe_load(f, encoding="bytes")
    assert raw[b"data"].shape == (10000, 3072) and raw[b"data"].dtype == np.uint8
    assert raw[b"labels"][:4] == [3, 8, 8, 0]
