"""Muon in PyTorch, for timing nndl's ``94`` preset against PyTorch on the same recipe.

A benchmark peer only (PyTorch is never an nndl dependency), written from Muon's public
description rather than from nndl's code, so that ``tests/test_muon.py`` can check the
two against each other: Nesterov momentum ``buf = mu * buf + g``, the direction ``g + mu
* buf``, the weight renormalised to Frobenius norm ``sqrt(fan-out)`` (airbench94_muon),
then a step of ``lr`` along the direction's approximate orthogonal factor from
``ns_steps`` quintic Newton-Schulz iterations (coefficients 3.4445, -4.7750, 2.0315 on
the direction scaled to unit norm).

:func:`airbench_muon_optimizers` splits a translated airbench94 network the way
airbench94_muon does: Muon for the trainable conv filters, Nesterov SGD (momentum 0.85)
for the batch-norm biases, the whitening bias and the head; the whitening filters are
frozen.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Muon", "newton_schulz", "muon_kwargs", "airbench_muon_optimizers"]

COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def newton_schulz(G: torch.Tensor, steps: int) -> torch.Tensor:
    """The odd quintic a x + b x^3 + c x^5 applied ``steps`` times to G's singular values."""
    a, b, c = COEFFICIENTS
    tall = G.size(0) > G.size(1)
    X = G.T if tall else G
    X = X / (X.norm() + 1e-7)
    for _ in range(steps):
        A = X @ X.T
        X = a * X + (b * A + c * (A @ A)) @ X
    return X.T if tall else X


class Muon(torch.optim.Optimizer):
    """Muon: momentum orthogonalised by Newton-Schulz, for weights of 2 or more dims."""

    def __init__(self, params, lr=0.24, momentum=0.6, nesterov=True, ns_steps=3,
                 renormalize=True):  # fmt: skip
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps,
                        renormalize=renormalize)  # fmt: skip
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            mu = group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buf = state["momentum_buffer"]
                buf.mul_(mu).add_(p.grad)
                d = p.grad.add(buf, alpha=mu) if group["nesterov"] else buf
                if group["renormalize"]:
                    p.mul_(len(p) ** 0.5 / p.norm())
                update = newton_schulz(d.reshape(len(d), -1), group["ns_steps"])
                p.add_(update.view_as(p), alpha=-group["lr"])


def muon_kwargs(config: dict) -> dict:
    """:class:`Muon`'s keywords for the settings of nndl's ``muon`` rule (an
    ``optim_config``, such as :data:`nndl.cli.presets.MUON_FILTERS`)."""
    names = {"learning_rate": "lr", "momentum": "momentum", "nesterov": "nesterov",
             "ns_steps": "ns_steps", "renormalize": "renormalize"}  # fmt: skip
    return {names[k]: v for k, v in config.items() if k in names}


def airbench_muon_optimizers(model: nn.Module, muon: dict, sgd: dict) -> tuple:
    """``(Muon, SGD, whitening conv)`` for a translated airbench94 net: Muon (``muon``:
    the settings of nndl's ``muon`` rule) on every trainable 4-d weight but the first
    conv's, whose weight is frozen and whose bias joins the SGD (keywords ``sgd``) with
    the batch-norm biases and the head."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    whiten = convs[0]
    whiten.weight.requires_grad_(False)
    filters = [c.weight for c in convs[1:] if c.weight.requires_grad]
    rest = [p for p in model.parameters() if p.requires_grad and p.dim() < 4]
    opt_muon = Muon(filters, **muon_kwargs(muon))
    opt_sgd = torch.optim.SGD(rest, momentum=0.85, nesterov=True, **sgd)
    return opt_muon, opt_sgd, whiten
