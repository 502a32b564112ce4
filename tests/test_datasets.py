"""nndl.datasets on small files written in each official format: IDX gzip (MNIST,
Fashion-MNIST), CIFAR-100 pickles, image folders (PNG, JPEG, grayscale, RGBA, palette,
16-bit), a CIFAR-10 folder round trip; no downloads (tests/conftest.py blocks them)."""

from __future__ import annotations

import gzip
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from _cifar import REPO_ROOT, write_synthetic_cifar10
from _datasets import (
    IDX_NAMES,
    idx_bytes,
    save_image,
    write_cifar100,
    write_folder,
    write_idx,
    write_mnist,
)

import nndl.datasets.folder as folder_mod
from nndl.data import get_CIFAR10_data
from nndl.datasets import DATASETS, load_dataset, load_dataset_info, read_idx, scan_folder
from nndl.io.download import DownloadError

Image = pytest.importorskip("PIL.Image")


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """Image folders are cached under the user cache: a fresh one per test."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("NNDL_DATA_DIR", raising=False)


def cache_files(tmp_path: Path) -> list[Path]:
    return sorted(p for p in (tmp_path / "cache").rglob("*") if p.is_file())


# --- IDX ------------------------------------------------------------------------------


def test_read_idx_reads_gzip_and_plain_files_of_every_type(tmp_path):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(read_idx(write_idx(tmp_path / "a.gz", a)), a)
    b = np.array([[1.5, -2.0], [3.25, 1e6]], dtype=">f4")
    (tmp_path / "b.idx").write_bytes(idx_bytes(b, code=0x0D))
    got = read_idx(tmp_path / "b.idx")
    assert got.dtype == np.float32 and got.dtype.isnative and np.array_equal(got, b)


@pytest.mark.parametrize("dims", [(10, 28, 28), (1, 28, 28), (2**31, 2**31, 2**31)])
def test_idx_header_lying_about_the_size_is_refused_before_allocating(tmp_path, dims):
    a = np.zeros((2, 28, 28), np.uint8)
    path = write_idx(tmp_path / "x.gz", a, dims=dims)
    with pytest.raises(ValueError, match="x.gz.*IDX header declares"):
        read_idx(path)


def test_idx_truncated_gzip_and_bad_magic_are_refused(tmp_path):
    data = gzip.compress(idx_bytes(np.zeros((4, 28, 28), np.uint8)))
    (tmp_path / "cut.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.gz"):
        read_idx(tmp_path / "cut.gz")
    (tmp_path / "bad.gz").write_bytes(gzip.compress(b"\x01\x02\x08\x01" + bytes(8)))
    with pytest.raises(ValueError, match="bad.gz: not an IDX file"):
        read_idx(tmp_path / "bad.gz")


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_mnist_style_sets_load_as_one_channel_28x28(tmp_path, name):
    folder = write_mnist(tmp_path / DATASETS[name].loader.args[1])
    data = load_dataset(name, tmp_path, num_validation=10)
    assert data["X_train"].shape == (50, 1, 28, 28) and data["X_val"].shape == (10, 1, 28, 28)
    assert data["X_test"].shape == (20, 1, 28, 28) and len(data["class_names"]) == 10
    raw = read_idx(folder / IDX_NAMES[0]).astype(np.float32)
    # train is the first 50, validation the next 10, minus the train mean image
    assert np.allclose(data["X_train"] + data["mean_image"], raw[:50, None])
    assert np.allclose(data["X_val"] + data["mean_image"], raw[50:, None])
    assert np.allclose(data["mean_image"], raw[:50, None].mean(axis=0), atol=1e-4)
    assert np.array_equal(data["y_test"], read_idx(folder / IDX_NAMES[3]))
    # the folder may also be named directly
    again = load_dataset(name, folder, num_validation=10)
    assert np.array_equal(again["X_train"], data["X_train"])


def test_idx_labels_out_of_range_name_the_file(tmp_path):
    folder = write_mnist(tmp_path / "mnist")
    write_idx(folder / IDX_NAMES[1], np.full(60, 10, np.uint8))
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte.gz: labels must lie in \[0, 10"):
        load_dataset("mnist", folder)


def test_missing_named_set_offline_names_the_files_and_where_to_put_them(tmp_path):
    with pytest.raises(DownloadError) as info:
        load_dataset("mnist", tmp_path / "data")
    msg = str(info.value)
    assert str(tmp_path / "data" / "mnist") in msg and "train-images-idx3-ubyte.gz" in msg
    assert "t10k-labels-idx1-ubyte.gz" in msg
    assert not (tmp_path / "data" / "mnist").exists()  # nothing left behind
    with pytest.raises(FileNotFoundError, match="cifar-100-python.tar.gz"):
        load_dataset("cifar100", tmp_path / "data", download=False)
    with pytest.raises(DownloadError, match="cifar-100-python"):
        load_dataset("cifar100", tmp_path / "data")
    assert not any(p.name.endswith(".tmp") for p in (tmp_path / "data").rglob("*"))


# --- CIFAR ----------------------------------------------------------------------------


def test_cifar10_through_load_dataset_is_get_CIFAR10_data(tiny_cifar):
    sizes = {"num_training": 70, "num_validation": 20, "num_test": 15}
    ours = load_dataset("cifar10", tiny_cifar, **sizes)
    ref = get_CIFAR10_data(**sizes, data_dir=tiny_cifar)
    assert ours.keys() == ref.keys()
    for key in ref:
        assert np.array_equal(ours[key], ref[key]), key


@pytest.mark.parametrize(("labels", "count"), [("cifar100", 100), ("cifar100_coarse", 20)])
def test_cifar100_fine_and_coarse_labels(tmp_path, labels, count):
    import pickle

    folder = write_cifar100(tmp_path / "cifar-100-python")
    with open(folder / "train", "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    data = load_dataset(labels, tmp_path, num_validation=5, subtract_mean=False)
    key = b"fine_labels" if count == 100 else b"coarse_labels"
    assert data["X_train"].shape == (45, 3, 32, 32) and len(data["class_names"]) == count
    assert np.array_equal(data["y_train"], raw[key][:45])
    assert np.array_equal(data["X_train"][3], raw[b"data"][3].reshape(3, 32, 32))
    assert data["class_names"][1] == ("fine1" if count == 100 else "coarse1")


def test_cifar100_labels_out_of_range_and_crafted_pickles_are_refused(tmp_path):
    import pickle

    folder = write_cifar100(tmp_path / "cifar-100-python")
    with open(folder / "test", "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    batch[b"fine_labels"][0] = 100
    with open(folder / "test", "wb") as f:
        pickle.dump(batch, f, protocol=2)
    with pytest.raises(ValueError, match=r"test: labels must lie in \[0, 100\)"):
        load_dataset("cifar100", tmp_path)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with open(folder / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": Evil()}, f, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="meta"):
        load_dataset("cifar100", tmp_path)


# --- image folders --------------------------------------------------------------------


def _rgb(rng, size=(8, 8)):
    return rng.integers(0, 256, (*size, 3), dtype=np.uint8)


def test_folder_modes_all_become_the_folders_channels(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "imgs"
    rgb = _rgb(rng)
    gray = rng.integers(0, 256, (8, 8), dtype=np.uint8)
    save_image(root / "a" / "rgb.png", rgb)
    save_image(root / "a" / "rgba.png", np.dstack([rgb, np.full((8, 8), 7, np.uint8)]))
    save_image(root / "a" / "palette.png", rgb, mode="P")
    save_image(root / "b" / "gray.png", gray)
    Image.fromarray(gray.astype(np.uint16) * 257).save(root / "b" / "gray16.png")
    save_image(root / "b" / "photo.jpg", rgb, quality=95)
    (root / "b" / "notes.txt").write_text("not an image")
    data, info = load_dataset_info(root, num_validation=0, num_test=None, subtract_mean=False,
                                   cache_dir=None)  # fmt: skip
    assert info["channels"] == 3 and info["ignored_files"] == 1
    assert list(data["class_names"]) == ["a", "b"]
    listing = scan_folder(root)
    x = folder_mod._decode_all(listing.train, 3, (8, 8))[0]
    names = [os.path.basename(p) for p, *_ in listing.train]
    img = dict(zip(names, x, strict=True))
    chw = rgb.transpose(2, 0, 1)
    assert np.array_equal(img["rgb.png"], chw)
    assert np.array_equal(img["rgba.png"], chw)  # alpha dropped
    pal = np.asarray(Image.open(root / "a" / "palette.png").convert("RGB")).transpose(2, 0, 1)
    assert np.array_equal(img["palette.png"], pal)
    assert np.array_equal(img["gray.png"], np.repeat(gray[None], 3, 0))
    assert np.array_equal(img["gray16.png"], img["gray.png"])  # 16-bit / 257 is the 8-bit
    jpeg = np.asarray(Image.open(root / "b" / "photo.jpg").convert("RGB")).transpose(2, 0, 1)
    assert np.array_equal(img["photo.jpg"], jpeg)


def test_all_grayscale_folder_is_one_channel_and_channels_converts(tmp_path):
    root = write_folder(tmp_path / "g", gray=True, per_class=10)
    data, info = load_dataset_info(root, cache_dir=None)
    assert info["channels"] == 1 and data["X_train"].shape[1:] == (1, 8, 8)
    rgb = load_dataset(root, channels=3, cache_dir=None, subtract_mean=False)
    gray = load_dataset(root, cache_dir=None, subtract_mean=False)
    assert np.array_equal(rgb["X_train"][:, :1], gray["X_train"])
    assert np.array_equal(rgb["X_train"][:, 0], rgb["X_train"][:, 2])
    colour = write_folder(tmp_path / "c", per_class=10)
    one = load_dataset(colour, channels=1, cache_dir=None, subtract_mean=False)
    listing = scan_folder(colour)
    path, label = listing.train[0][:2]
    luma = np.asarray(Image.open(path).convert("L"), np.float32)
    assert one["X_train"].shape[1] == 1
    assert any(np.array_equal(x[0], luma) for x in one["X_train"]) or any(
        np.array_equal(x[0], luma) for x in np.concatenate([one["X_val"], one["X_test"]])
    )


def test_mixed_sizes_need_image_size_and_it_resizes(tmp_path):
    root = write_folder(tmp_path / "m", per_class=5)
    save_image(root / "dog" / "big.png", _rgb(np.random.default_rng(1), (12, 10)))
    with pytest.raises(ValueError) as info:
        load_dataset(root, cache_dir=None)
    msg = str(info.value)
    assert "big.png is 12x10" in msg and "000.png is 8x8" in msg and "--image-size" in msg
    data = load_dataset(root, image_size=(6, 5), cache_dir=None, subtract_mean=False)
    assert data["X_train"].shape[1:] == (3, 6, 5)
    expect = np.asarray(Image.open(root / "dog" / "big.png").resize((5, 6), Image.LANCZOS))
    stacked = np.concatenate([data["X_train"], data["X_val"], data["X_test"]])
    assert any(np.array_equal(x, expect.transpose(2, 0, 1)) for x in stacked)


def test_splits_follow_the_seed_and_the_test_pool_does_not_move(tmp_path):
    root = write_folder(tmp_path / "s", per_class=20)
    a = load_dataset(root, seed=1, num_validation=4, subtract_mean=False)
    b = load_dataset(root, seed=1, num_validation=10, num_training=8, subtract_mean=False)
    c = load_dataset(root, seed=2, num_validation=4, subtract_mean=False)
    assert len(a["X_test"]) == 4 and len(a["X_train"]) == 32  # 40 images: 4 held out
    assert np.array_equal(a["X_test"], b["X_test"])  # the same test images, any sizes
    assert not np.array_equal(a["X_test"], c["X_test"])
    # no image is in two splits
    seen = [x.tobytes() for k in ("X_train", "X_val", "X_test") for x in a[k]]
    assert len(set(seen)) == len(seen) == 40
    assert set(np.unique(a["y_val"])) <= {0, 1}


def test_train_test_layout_and_test_classes(tmp_path):
    root = tmp_path / "tt"
    write_folder(root / "train", per_class=6)
    write_folder(root / "test", per_class=3, seed=5)
    data, info = load_dataset_info(root, num_validation=2)
    assert info["layout"] == "train/test" and len(data["X_test"]) == 6
    assert len(data["X_train"]) == 10
    write_folder(root / "test", classes=("cow",), per_class=1)
    with pytest.raises(ValueError, match="cow.*no training folder"):
        load_dataset(root)


def test_second_load_reads_the_cache_and_a_changed_file_decodes_again(tmp_path, monkeypatch):
    root = write_folder(tmp_path / "c", per_class=6)
    first, info = load_dataset_info(root, num_validation=2)
    assert not info["cached"] and len(cache_files(tmp_path)) == 1

    def no_decoding(*args):
        raise AssertionError("decoded again")

    monkeypatch.setattr(folder_mod, "decode", no_decoding)
    second, info = load_dataset_info(root, num_validation=2)
    assert info["cached"]
    for key in first:
        assert np.array_equal(first[key], second[key])
    monkeypatch.undo()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    save_image(root / "cat" / "000.png", _rgb(np.random.default_rng(9)))
    os.utime(root / "cat" / "000.png", ns=(1, 1))
    _, info = load_dataset_info(root, num_validation=2)
    assert not info["cached"] and len(cache_files(tmp_path)) == 2


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda r: r.mkdir(), "holds no class folders"),
        (lambda r: (r / "cat").mkdir(parents=True) or write_folder(r / "x"), "cat: the class "
         "folder holds no images"),
        (lambda r: write_folder(r, classes=("cat",)), "one class folder"),
        (lambda r: write_folder(r) and (r / "cat" / "zz.png").write_bytes(b"hello"),
         "zz.png: not an image"),
        (lambda r: write_folder(r) and (r / "dog" / "cut.png").write_bytes(
            (r / "dog" / "000.png").read_bytes()[:60]), "cut.png"),
        (lambda r: write_folder(r) and os.symlink(r / "cat", r / "cat" / "loop"),
         "symbolic link loop"),
        (lambda r: write_folder(r) and os.symlink("nowhere.png", r / "cat" / "gone.png"),
         "gone.png: cannot follow it"),
    ],
    ids=["empty", "class-without-images", "one-class", "not-an-image", "truncated",
         "symlink-loop", "dangling-link"],
)  # fmt: skip
def test_bad_folders_are_refused_naming_the_file_and_nothing_is_cached(tmp_path, make, match):
    root = tmp_path / "bad"
    make(root)
    with pytest.raises(ValueError, match=match):
        load_dataset(root)
    assert cache_files(tmp_path) == []


def test_decompression_bomb_is_refused_from_its_header(tmp_path):
    root = write_folder(tmp_path / "b")
    Image.new("1", (9000, 8000)).save(root / "cat" / "bomb.png")  # 72 MP, a few kB
    with pytest.raises(ValueError, match="bomb.png: the image is .*9000 x 8000"):
        load_dataset(root, image_size=(8, 8))
    assert cache_files(tmp_path) == []


def test_cifar10_image_folder_round_trip(tmp_path):
    """CIFAR-10 written as PNGs by tools/cifar10_to_folder.py reads back as the same
    (image, label) pairs, train and test."""
    sys.path.insert(0, str(REPO_ROOT / "tools"))
    try:
        from cifar10_to_folder import write_folder as to_folder
    finally:
        sys.path.pop(0)
    cifar = write_synthetic_cifar10(tmp_path / "cifar", n_per_batch=12, n_test=30)
    out = to_folder(cifar, tmp_path / "png")
    ref = get_CIFAR10_data(num_training=60, num_validation=0, num_test=30, subtract_mean=False,
                           data_dir=cifar)  # fmt: skip
    ours = load_dataset(out, num_validation=0, subtract_mean=False)
    assert list(ours["class_names"]) == sorted(ref["class_names"])
    name = {i: n for i, n in enumerate(ref["class_names"])}
    ours_name = {i: n for i, n in enumerate(ours["class_names"])}

    def pairs(x, y, names):
        return sorted((names[int(label)], img.astype(np.uint8).tobytes())
                      for img, label in zip(x, y, strict=True))  # fmt: skip

    for split in ("train", "test"):
        assert pairs(ours[f"X_{split}"], ours[f"y_{split}"], ours_name) == pairs(
            ref[f"X_{split}"], ref[f"y_{split}"], name
        )


# --- downloads (a loopback server; nothing leaves the machine) -------------------------


def test_files_are_fetched_md5_checked_from_the_first_base_that_answers(
    tmp_path, served, monkeypatch
):
    from nndl.datasets.fetch import ensure_files
    from nndl.io.download import ChecksumError, md5sum

    monkeypatch.delenv("NNDL_DATASETS_URL", raising=False)
    www, base = served
    write_mnist(www)
    md5 = {name: md5sum(www / name) for name in IDX_NAMES}
    bases = ("http://127.0.0.1:9", base)  # the first refuses: the second is used
    folder = ensure_files("MNIST", tmp_path / "data", "mnist", md5, bases)
    assert folder == tmp_path / "data" / "mnist"
    for name in IDX_NAMES:
        assert (folder / name).read_bytes() == (www / name).read_bytes()
    # a wrong md5: the download is removed, nothing half-written stays
    bad = {**md5, IDX_NAMES[0]: "0" * 32}
    with pytest.raises(ChecksumError):
        ensure_files("MNIST", tmp_path / "other", "mnist", bad, (base,))
    assert not list((tmp_path / "other").rglob("*.gz"))


def test_an_archive_is_unpacked_whole_from_a_download_or_a_manual_copy(tmp_path, served,
                                                                       monkeypatch):  # fmt: skip
    import shutil
    import tarfile

    from nndl.datasets.cifar import CIFAR100_FILES
    from nndl.datasets.fetch import ensure_archive
    from nndl.io.download import ChecksumError, md5sum

    www, base = served
    monkeypatch.setenv("NNDL_DATASETS_URL", base)
    source = write_cifar100(tmp_path / "src" / "cifar-100-python")
    with tarfile.open(www / "c100.tar.gz", "w:gz") as tar:
        tar.add(source, arcname="cifar-100-python")
    md5 = md5sum(www / "c100.tar.gz")
    args = ("CIFAR-100", "cifar-100-python", CIFAR100_FILES, "c100.tar.gz")
    got = ensure_archive(args[0], tmp_path / "a", *args[1:], md5, ("unused",))
    assert sorted(p.name for p in got.iterdir()) == sorted(CIFAR100_FILES)
    assert (got / "train").read_bytes() == (source / "train").read_bytes()
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["cifar-100-python"]  # no temp files
    # offline, a copy of the archive beside the folder is checked and unpacked
    monkeypatch.setenv("NNDL_DATASETS_URL", "http://127.0.0.1:9")
    (tmp_path / "b").mkdir()
    shutil.copy(www / "c100.tar.gz", tmp_path / "b" / "c100.tar.gz")
    got = ensure_archive(args[0], tmp_path / "b", *args[1:], md5, ("unused",))
    assert (got / "meta").is_file()
    (tmp_path / "c").mkdir()
    shutil.copy(www / "c100.tar.gz", tmp_path / "c" / "c100.tar.gz")
    with pytest.raises(ChecksumError, match="c100.tar.gz has md5"):
        ensure_archive(args[0], tmp_path / "c", *args[1:], "0" * 32, ("unused",))
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["c100.tar.gz"]


def test_dataset_shape_is_known_before_the_data_is_read(tmp_path):
    from nndl.datasets import dataset_shape

    assert dataset_shape("mnist") == ((1, 28, 28), 10)
    assert dataset_shape("cifar100_coarse") == ((3, 32, 32), 20)
    root = write_folder(tmp_path / "g", classes=("a", "b", "c"), size=(12, 10), gray=True)
    assert dataset_shape(root) == ((1, 12, 10), 3)
    assert dataset_shape(root, image_size=(6, 6), channels=3) == ((3, 6, 6), 3)
    assert dataset_shape(tmp_path / "missing") is None
