"""Tests for nndl.augment: invariants of each augmentation, pipelines from specs, TTA."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nndl.augment import (
    AUGMENTATIONS,
    alternating_flip,
    cutout,
    flip_horizontal,
    make_augmentation,
    normalize,
    random_crop,
    random_flip,
    translate,
    tta_predict,
    tta_views,
)
from nndl.train import augment


def _batch(n=6, c=3, h=5, w=7, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal((n, c, h, w)).astype(dtype)


def _rng(seed=0):
    return np.random.default_rng(seed)


def test_star_import_is_clean():
    ns: dict = {}
    exec("from nndl.augment import *", ns)
    assert set(ns) - {"__builtins__"} == set(augment.__all__)


# --- flips --------------------------------------------------------------------------------


def test_flip_is_a_mirror_and_an_involution():
    x = _batch()
    f = flip_horizontal(x)
    assert f.shape == x.shape and f.dtype == x.dtype
    np.testing.assert_array_equal(f[..., 0], x[..., -1])
    np.testing.assert_array_equal(f[:, 1, 2, :], x[:, 1, 2, ::-1])
    np.testing.assert_array_equal(flip_horizontal(f), x)
    assert f.flags.c_contiguous and not np.shares_memory(f, x)


def test_random_flip_flips_some_images_whole_and_leaves_x_alone():
    x = _batch(n=64)
    x0 = x.copy()
    out = random_flip(x, _rng(1))
    np.testing.assert_array_equal(x, x0)
    flipped = [np.array_equal(out[i], x[i, :, :, ::-1]) for i in range(len(x))]
    kept = [np.array_equal(out[i], x[i]) for i in range(len(x))]
    assert all(a or b for a, b in zip(flipped, kept, strict=True))
    assert 16 < sum(flipped) < 48  # p = 1/2 of 64 images
    assert np.array_equal(random_flip(x, _rng(1), p=0.0), x)
    assert np.array_equal(random_flip(x, _rng(1), p=1.0), flip_horizontal(x))
    np.testing.assert_array_equal(random_flip(x, _rng(1)), out)  # determinism


def test_alternating_flip_alternates_from_each_images_bit():
    x = _batch(n=8)
    bits = np.array([0, 1, 0, 1, 1, 0, 0, 1], dtype=bool)
    e0 = alternating_flip(x, bits, 0)
    e1 = alternating_flip(x, bits, 1)
    e2 = alternating_flip(x, bits, 2)
    for i in range(len(x)):
        # Epoch 0: flipped exactly where the bit is set; epoch 1: the other way round.
        assert np.array_equal(e0[i], x[i, ..., ::-1] if bits[i] else x[i])
        assert np.array_equal(e1[i], x[i] if bits[i] else x[i, ..., ::-1])
    np.testing.assert_array_equal(flip_horizontal(e1), e0)  # every image seen both ways
    np.testing.assert_array_equal(e2, e0)
    with pytest.raises(ValueError, match="alternating_flip: expected bits as a bool vector"):
        alternating_flip(x, bits[:3], 0)


# --- translations and crops -----------------------------------------------------------------


def test_crop_with_pad_zero_is_the_identity():
    x = _batch()
    for mode in ("reflect", "zero"):
        out = random_crop(x, 0, _rng(), mode)
        np.testing.assert_array_equal(out, x)
        assert out is not x


def test_translate_reflect_values():
    x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    # Down by 1, right by 2: the top row and the two left columns come from reflection.
    out = translate(x, 1, 2, "reflect")
    ext = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)), mode="reflect")
    np.testing.assert_array_equal(out, ext[..., 1:5, 0:4])
    # Reflect mirrors about the edge pixel without repeating it: row -1 is row 1.
    np.testing.assert_array_equal(out[0, 0, 0, 2:], x[0, 0, 1, :2])
    np.testing.assert_array_equal(out[0, 0, 1, :2], x[0, 0, 0, [2, 1]])
    z = translate(x, -1, 0, "zero")
    np.testing.assert_array_equal(z[0, 0, :3], x[0, 0, 1:])
    np.testing.assert_array_equal(z[0, 0, 3], 0)
    np.testing.assert_array_equal(translate(x, 0, 0), x)


def test_random_crop_is_a_translation_of_each_image_by_at_most_pad():
    x = _batch(n=40, h=6, w=6, seed=2, dtype=np.float64)
    pad = 2
    for mode in ("reflect", "zero"):
        out = random_crop(x, pad, _rng(3), mode)
        assert out.shape == x.shape and out.dtype == x.dtype
        shifts = set()
        for i in range(len(x)):
            matches = [
                (dy, dx)
                for dy in range(-pad, pad + 1)
                for dx in range(-pad, pad + 1)
                if np.array_equal(out[i : i + 1], translate(x[i : i + 1], dy, dx, mode))
            ]
            assert len(matches) == 1, (i, matches)
            shifts.add(matches[0])
        assert len(shifts) > 10  # of the 25 possible shifts


def test_random_crop_zero_padding_fills_with_zeros():
    x = np.ones((200, 1, 4, 4), np.float32)
    out = random_crop(x, 1, _rng(4), "zero")
    # Images shifted by one pixel have exactly one zero row and/or column.
    zeros_per_image = (out == 0).reshape(len(x), -1).sum(axis=1)
    assert set(zeros_per_image.tolist()) <= {0, 4, 7}
    assert set(zeros_per_image.tolist()) == {0, 4, 7}


def test_crop_rejects_reflect_padding_wider_than_the_image():
    with pytest.raises(ValueError, match="random_crop: reflect padding needs pad < the image"):
        random_crop(_batch(h=3, w=3), 3, _rng())
    assert random_crop(_batch(h=3, w=3), 3, _rng(), "zero").shape == (6, 3, 3, 3)


# --- cutout and normalisation -----------------------------------------------------------------


def test_cutout_zeroes_exactly_the_square_in_every_channel():
    x = np.abs(_batch(n=50, h=8, w=9, seed=5)) + 1.0  # no zeros to begin with
    size = 3
    out = cutout(x, size, _rng(6))
    zero = out == 0
    assert out.dtype == x.dtype
    for i in range(len(x)):
        assert zero[i].sum() == size * size * x.shape[1]
        # The same square in every channel, and it is a size x size square.
        assert all(np.array_equal(zero[i, 0], zero[i, c]) for c in range(x.shape[1]))
        rows, cols = np.nonzero(zero[i, 0])
        assert rows.max() - rows.min() == size - 1 and cols.max() - cols.min() == size - 1
    np.testing.assert_array_equal(out[~zero], x[~zero])  # everything else untouched
    corners = {tuple(np.argwhere(zero[i, 0]).min(axis=0)) for i in range(len(x))}
    assert len(corners) > 20
    with pytest.raises(ValueError, match=r"cutout: expected size <= the image size 8x9"):
        cutout(x, 9, _rng())


def test_normalize_per_channel():
    x = _batch(n=4, c=2, seed=7)
    mean, std = [1.0, -2.0], [2.0, 0.5]
    out = normalize(x, mean, std)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[:, 0], (x[:, 0] - 1.0) / 2.0, rtol=1e-6)
    np.testing.assert_allclose(out[:, 1], (x[:, 1] + 2.0) / 0.5, rtol=1e-6)
    assert normalize(np.zeros((1, 2, 2, 2), np.uint8), mean, std).dtype == np.float32
    with pytest.raises(ValueError, match=r"normalize: expected mean and std of length 2"):
        normalize(x, [1.0], [1.0])
    with pytest.raises(ValueError, match=r"normalize: expected every std > 0"):
        normalize(x, mean, [1.0, 0.0])


@pytest.mark.parametrize(
    "call",
    [
        lambda x: flip_horizontal(x),
        lambda x: random_flip(x, _rng()),
        lambda x: random_crop(x, 1, _rng()),
        lambda x: cutout(x, 2, _rng()),
        lambda x: normalize(x, [0, 0, 0], [1, 1, 1]),
    ],
)
def test_functions_keep_shape_dtype_and_never_modify_the_input(call):
    for dtype in (np.float32, np.float64):
        x = _batch(dtype=dtype)
        x0 = x.copy()
        out = call(x)
        assert out.shape == x.shape and out.dtype == dtype
        np.testing.assert_array_equal(x, x0)


def test_batches_must_be_4d():
    with pytest.raises(ValueError, match=r"random_crop: expected x with 4 dimensions"):
        random_crop(np.zeros((3, 4, 4)), 1, _rng())


# --- pipelines ----------------------------------------------------------------------------


def test_pipeline_spec_fills_defaults_and_round_trips_through_json():
    aug = make_augmentation(["random_crop", {"name": "cutout", "size": 2}, "alternating_flip"])
    assert aug.spec == [
        {"name": "random_crop", "pad": 2, "mode": "reflect"},
        {"name": "cutout", "size": 2},
        {"name": "alternating_flip"},
    ]
    assert make_augmentation(json.loads(json.dumps(aug.spec))).spec == aug.spec
    assert make_augmentation(aug) is aug
    assert make_augmentation(None).spec == []


def test_pipeline_runs_its_steps_in_order_with_one_generator():
    x = _batch(n=10, h=6, w=6, seed=8)
    spec = [
        {"name": "random_crop", "pad": 1},
        {"name": "random_flip"},
        {"name": "cutout", "size": 2},
    ]
    out = make_augmentation(spec)(x, _rng(9))
    rng = _rng(9)
    expected = cutout(random_flip(random_crop(x, 1, rng), rng), 2, rng)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(make_augmentation(spec)(x, _rng(9)), out)  # determinism
    assert not np.array_equal(make_augmentation(spec)(x, _rng(10)), out)
    empty = make_augmentation([])(x, _rng())
    np.testing.assert_array_equal(empty, x)
    assert empty is not x


def test_pipeline_alternating_flip_needs_bits():
    aug = make_augmentation(["alternating_flip"])
    x = _batch(n=2)
    with pytest.raises(ValueError, match="alternating_flip: needs each image's flip bit"):
        aug(x, _rng())
    out = aug(x, _rng(), epoch=1, flip_bits=np.array([True, False]))
    np.testing.assert_array_equal(out[0], x[0])
    np.testing.assert_array_equal(out[1], x[1, ..., ::-1])


def test_pipeline_errors_name_the_step_and_list_valid_keys():
    with pytest.raises(ValueError, match=r"make_augmentation: step 1: unknown augmentation") as e:
        make_augmentation(["random_flip", "mixup"])
    for name in AUGMENTATIONS:
        assert repr(name) in str(e.value)
    with pytest.raises(
        ValueError, match=r"step 0: augmentation 'random_crop' got unknown key"
    ) as e:
        make_augmentation([{"name": "random_crop", "padding": 4}])
    assert "'pad'" in str(e.value) and "'mode'" in str(e.value)
    with pytest.raises(ValueError, match=r"'cutout' is missing the required key\(s\) \['size'\]"):
        make_augmentation(["cutout"])
    with pytest.raises(ValueError, match=r"'random_crop' expected 'mode' to be one of"):
        make_augmentation([{"name": "random_crop", "mode": "edge"}])
    with pytest.raises(ValueError, match=r"'normalize' expected 'std' to be a list of numbers > 0"):
        make_augmentation([{"name": "normalize", "mean": [0.0], "std": [0.0]}])
    with pytest.raises(TypeError, match="make_augmentation: expected a list of augmentation"):
        make_augmentation("random_flip")


# --- test-time augmentation ---------------------------------------------------------------


def test_tta_views_and_weights():
    x = _batch(n=3, h=6, w=6, seed=11)
    assert [w for _, w in tta_views(x, "none")] == [1.0]
    views = tta_views(x, "mirror")
    np.testing.assert_array_equal(views[1][0], flip_horizontal(x))
    views = tta_views(x, "mirror_translate")
    assert len(views) == 6 and sum(w for _, w in views) == 1.0
    np.testing.assert_array_equal(views[2][0], translate(x, 1, 1))
    np.testing.assert_array_equal(views[3][0], flip_horizontal(translate(x, 1, 1)))
    np.testing.assert_array_equal(views[4][0], translate(x, -1, -1))
    with pytest.raises(ValueError, match=r"tta_views: expected mode to be one of"):
        tta_views(x, "flip")


def test_tta_predict_averages_weighted_scores_in_batches():
    x = _batch(n=7, h=4, w=4, seed=12, dtype=np.float64)
    w = np.random.default_rng(13).standard_normal((3 * 4 * 4, 5))
    calls = []

    def score(batch):
        calls.append(len(batch))
        return batch.reshape(len(batch), -1) @ w

    out = tta_predict(score, x, "mirror_translate", batch_size=3)
    assert calls == [3] * 6 + [3] * 6 + [1] * 6  # all six views of each chunk
    expected = sum(wt * score(v) for v, wt in tta_views(x, "mirror_translate"))
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    assert out.shape == (7, 5) and out.dtype == np.float64
    # A mirror-symmetric score function is unchanged by the mirror views.
    sym = tta_predict(lambda b: b.sum(axis=(1, 2, 3))[:, None], x, "mirror")
    np.testing.assert_allclose(sym[:, 0], x.sum(axis=(1, 2, 3)))
    with pytest.raises(ValueError, match=r"tta_predict: expected score_fn to return scores"):
        tta_predict(lambda b: b.sum(axis=(1, 2, 3)), x)
