"""How faithful and how fast nndl.explain's maps are, on CIFAR-10 test images and the
pretrained model (``nndl.models.pretrained()``).

Faithfulness (a deletion test): for each image and each map (saliency, Grad-CAM on the
last spatial layer, both for the true class), the 10% of pixel positions the map ranks
highest, the 10% it ranks lowest, and a random 10% are replaced by a Gaussian-blurred
copy of the image (sigma ``--sigma`` pixels; blurring keeps the image natural where
filling scattered pixels with a constant adds high-frequency noise that hurts whatever
the ranking). Reported: the mean drop of the true class's probability (original minus
deleted) for each. A faithful map's top 10% hurts more than a random 10% and far more
than its bottom 10%. Ties (Grad-CAM's zeros) are broken at random.

Fooling: every image is pushed towards a random other class (:func:`fooling_image`,
default step, at most 100 steps); reported: the success rate, the median number of
steps, and the median largest pixel change and RMS change as fractions of 255.

Speed: saliency maps for all the images in one call against one training step
(``loss(X, y)``: forward and backward with parameter gradients) and one test-mode
forward of the same batch (interleaved, the fastest of ``--reps``; ``--speed-only``
skips the rest).

    python benchmarks/bench_explain.py --data-dir ../shared/cifar10 --num 1000
    python benchmarks/bench_explain.py --data-dir ../shared/cifar10 --num 1000 --speed-only
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from nndl.data import apply_preprocess, load_CIFAR_batch, resolve_data_dir
from nndl.explain import fooling_image, gaussian_blur, grad_cam, saliency_map
from nndl.models import build_model, pretrained


def _probs(model, X, pre, batch=500) -> np.ndarray:
    s = np.concatenate([model.loss(apply_preprocess(X[i : i + batch], pre))
                        for i in range(0, len(X), batch)])  # fmt: skip
    e = np.exp(s - s.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _delete(X, blurred, order, frac: float, which: str) -> np.ndarray:
    """X with the positions ``order`` ranks first ('top'), last ('bottom') replaced."""
    N, _, H, W = X.shape
    k = int(round(frac * H * W))
    idx = order[:, -k:] if which == "top" else order[:, :k]
    mask = np.zeros((N, H * W), bool)
    np.put_along_axis(mask, idx, True, axis=1)
    mask = mask.reshape(N, 1, H, W)
    return np.where(mask, blurred, X)


def _ranking(maps: np.ndarray, rng) -> np.ndarray:
    """Per image, pixel positions from lowest to highest map value, ties in random order."""
    flat = maps.reshape(len(maps), -1)
    return np.stack([np.lexsort((rng.random(flat.shape[1]), m)) for m in flat])


def _batched(fn, X, y, batch=250):
    return np.concatenate([fn(X[i : i + batch], y[i : i + batch]) for i in range(0, len(X), batch)])


def _timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    t, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t, time.process_time() - c


def speed(model, pre, X, y, reps: int) -> None:
    """Saliency maps against a training step and a forward pass of the same batch: the
    three interleaved, rotating which goes first, so other load hits them alike; the
    fastest wall and CPU time of each (CPU time is less disturbed by other processes)."""
    trainer = build_model(model.name, **model.config)  # a copy: training mode moves its stats
    trainer.load_state_dict(model.state_dict())
    Xp = apply_preprocess(X, pre)
    jobs = {
        "saliency maps (preprocess, forward, input gradient)": lambda: saliency_map(
            model, X, y, pre
        ),
        "training step (loss(X, y): forward, backward, grads)": lambda: trainer.loss(Xp, y),
        "test-mode forward (loss(X))": lambda: model.loss(Xp),
    }
    for fn in jobs.values():  # warm-up: scratch buffers, caches
        fn()
    times: dict[str, list] = {k: [] for k in jobs}
    names = list(jobs)
    load = os.getloadavg()[0]
    for rep in range(reps):
        for k in names[rep % 3 :] + names[: rep % 3]:
            times[k].append(_timed(jobs[k]))
    best = {k: np.min(np.array(v), axis=0) for k, v in times.items()}
    print(f"\nspeed, batch of {len(X)}: fastest of {reps} interleaved repetitions, wall and "
          f"CPU seconds ({os.cpu_count()} CPUs, load average {load:.1f} -> "
          f"{os.getloadavg()[0]:.1f})")  # fmt: skip
    for k, (wall, cpu) in best.items():
        print(f"  {k:<54} {wall:6.3f} s wall  {cpu:6.3f} s CPU")
    sal, step = best[names[0]], best[names[1]]
    print(
        f"  saliency / training step: {sal[0] / step[0]:.2f} (wall), {sal[1] / step[1]:.2f} (CPU)"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None, help="CIFAR-10 (default: NNDL_DATA_DIR)")
    p.add_argument("--num", type=int, default=1000, help="test images (default 1000)")
    p.add_argument("--frac", type=float, default=0.1, help="fraction deleted (default 0.1)")
    p.add_argument("--sigma", type=float, default=2.0, help="blur std in pixels (default 2)")
    p.add_argument("--reps", type=int, default=7, help="timing repetitions (default 7)")
    p.add_argument("--speed-only", action="store_true", help="only the timings")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    start = time.perf_counter()
    root = resolve_data_dir(args.data_dir, download=False)
    X, y = load_CIFAR_batch(root / "test_batch")
    X, y = X[: args.num].transpose(0, 3, 1, 2).copy(), y[: args.num]
    model, info = pretrained()
    pre = info["preprocess"]
    rng = np.random.default_rng(args.seed)
    if args.speed_only:
        speed(model, pre, X, y, args.reps)
        return

    p0 = _probs(model, X, pre)
    true = p0[np.arange(len(y)), y]
    acc = (p0.argmax(1) == y).mean()
    print(f"{len(X)} CIFAR-10 test images, pretrained model: accuracy {acc:.3f}, "
          f"mean true-class probability {true.mean():.3f}")  # fmt: skip
    maps = {
        "saliency": _batched(lambda a, b: saliency_map(model, a, b, pre), X, y),
        "grad-cam": _batched(lambda a, b: grad_cam(model, a, b, preprocess=pre), X, y),
    }
    blurred = gaussian_blur(X, args.sigma)
    rows = []
    for name, m in maps.items():
        order = _ranking(m, rng)
        for which in ("top", "bottom"):
            pd = _probs(model, _delete(X, blurred, order, args.frac, which), pre)
            rows.append((f"{name} {which} {args.frac:.0%}", pd[np.arange(len(y)), y]))
    order = np.stack([rng.permutation(X.shape[2] * X.shape[3]) for _ in range(len(X))])
    pd = _probs(model, _delete(X, blurred, order, args.frac, "top"), pre)
    rows.append((f"random {args.frac:.0%}", pd[np.arange(len(y)), y]))
    pd = _probs(model, blurred, pre)
    rows.append(("whole image blurred", pd[np.arange(len(y)), y]))
    print(f"\ndeleted pixels (blurred, sigma {args.sigma:g})  mean drop of p(true class)")
    for label, pt in rows:
        print(f"  {label:<30} {np.mean(true - pt):+.4f}")

    pred = p0.argmax(1)
    target = (pred + 1 + rng.integers(0, 9, len(X))) % 10
    t = time.perf_counter()
    runs = [fooling_image(model, X[i : i + 250], target[i : i + 250], pre)
            for i in range(0, len(X), 250)]  # fmt: skip
    fool_s = time.perf_counter() - t
    fooled = np.concatenate([r.fooled for r in runs])
    iters = np.concatenate([r.iterations for r in runs])[fooled]
    linf = np.concatenate([r.linf for r in runs])[fooled] / 255
    rms = np.concatenate([r.l2 for r in runs])[fooled] / np.sqrt(X[0].size) / 255
    print(f"\nfooling towards a random other class: {fooled.mean():.1%} fooled, median "
          f"{np.median(iters):.0f} steps; as fractions of 255, median largest pixel change "
          f"{np.median(linf):.3f}, median RMS change {np.median(rms):.4f} "
          f"({fool_s:.1f} s)")  # fmt: skip

    speed(model, pre, X, y, args.reps)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
