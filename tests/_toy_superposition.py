"""Elhage et al. (2022)'s toy model of superposition, trained in seconds, for the geometry tests.

``x' = ReLU(WᵀW x + b)`` with ``W: [m, n]`` (``m`` hidden dimensions, ``n`` features); each
feature is 0 with probability ``sparsity`` and uniform on [0, 1] otherwise; importance is
uniform; Adam on the squared error. Used by ``test_geometry.py`` (digon, pentagon) and
``test_geometry_polytopes.py`` (triangle, tetrahedron, the sparsity sweep).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def train_toy_models(
    n: int,
    m: int,
    sparsity: float | Sequence[float],
    *,
    instances: int = 4,
    steps: int = 2000,
    seed: int = 0,
    anneal_steps: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Train several instances at once; returns ``W`` ``[instances, m, n]`` and the final
    per-instance loss.

    A float ``sparsity`` is shared by ``instances`` instances; a sequence trains one instance per
    value (``instances`` is then ignored), so a sparsity sweep is one batched run. After
    ``steps`` steps at learning rate 1e-2, ``anneal_steps`` more run at 1e-3: the gradient noise
    of the batch of 1024 otherwise keeps each polytope a few degrees off its regular shape.
    """
    if isinstance(sparsity, Sequence):
        instances = len(sparsity)
        s: float | torch.Tensor = torch.tensor([float(v) for v in sparsity])[:, None, None]
    else:
        s = float(sparsity)
    g = torch.Generator().manual_seed(seed)
    W = torch.nn.Parameter(torch.randn(instances, m, n, generator=g) * math.sqrt(2 / (n + m)))
    b = torch.nn.Parameter(torch.zeros(instances, 1, n))
    opt = torch.optim.Adam([W, b], lr=1e-2)
    for step in range(steps + anneal_steps):
        if step == steps:
            for group in opt.param_groups:
                group["lr"] = 1e-3
        active = torch.rand(instances, 1024, n, generator=g) > s
        x = torch.rand(instances, 1024, n, generator=g) * active
        out = torch.relu(x @ W.transpose(1, 2) @ W + b)
        loss = ((x - out) ** 2).sum(-1).mean(-1)
        opt.zero_grad()
        loss.sum().backward()
        opt.step()
    return W.detach(), loss.detach()
