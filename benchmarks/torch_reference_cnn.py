"""SPEC's reference ThreeLayerConvNet configuration trained in PyTorch, as a pace check.

Same data (nndl's loader and split), architecture (conv 64 3x3 - spatial BN - ReLU - 2x2
max pool - affine 500 - BN - ReLU - affine 10), initialisation (normal, std 0.001, zero
biases), loss (softmax + 0.5 * reg * sum(W**2) over the three weights), Adam 1e-3 with
lr decay 0.99 per epoch, batch 50, one fresh shuffle per epoch. It prints the validation
accuracy after each epoch, to compare with ``nndl train`` on the same configuration::

    NNDL_DATA_DIR=../shared/cifar10 python benchmarks/torch_reference_cnn.py --epochs 2

Needs ``pip install -e '.[bench]'``; single-threaded by default (``--threads``).
"""

from __future__ import annotations

import argparse
import time

from nndl.data import get_CIFAR10_data


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None, help="as for nndl train (default: NNDL_DATA_DIR)")
    args = p.parse_args()
    try:
        import torch
        import torch.nn.functional as F  # noqa: N812 - the usual name
        from torch import nn
    except ImportError:
        raise SystemExit("torch_reference_cnn: needs PyTorch: pip install -e '.[bench]'") from None

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    d = get_CIFAR10_data(data_dir=args.data_dir)
    X, y = torch.from_numpy(d["X_train"]), torch.from_numpy(d["y_train"])
    Xv, yv = torch.from_numpy(d["X_val"]), torch.from_numpy(d["y_val"])
    weight_scale, reg, batch = 1e-3, 0.005, 50

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 64, 3, padding=1)
            self.bn1 = nn.BatchNorm2d(64)  # torch's momentum 0.1 is nndl's 0.9
            self.fc1 = nn.Linear(64 * 16 * 16, 500)
            self.bn2 = nn.BatchNorm1d(500)
            self.fc2 = nn.Linear(500, 10)
            for m in (self.conv, self.fc1, self.fc2):
                nn.init.normal_(m.weight, std=weight_scale)
                nn.init.zeros_(m.bias)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.bn1(self.conv(x))), 2)
            return self.fc2(F.relu(self.bn2(self.fc1(x.flatten(1)))))

    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.99)
    gen = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        net.train()
        perm = torch.randperm(len(X), generator=gen)
        for i in range(len(X) // batch):
            idx = perm[i * batch : (i + 1) * batch]
            loss = F.cross_entropy(net(X[idx]), y[idx])
            loss = loss + 0.5 * reg * sum((m.weight**2).sum() for m in (net.conv, net.fc1, net.fc2))
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        net.eval()
        with torch.no_grad():
            val = (net(Xv).argmax(1) == yv).float().mean().item()
        print(f"epoch {epoch}  val {val:.3f}  {time.perf_counter() - start:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
