"""Superposition metrics of Elhage et al. (2022): how crowded each feature direction is.

:func:`feature_dimensionality` (how many dimensions a feature effectively owns) and
:func:`interference` (how much the other features put along its direction) both come from the
same two sums per row, computed through the ``d x d`` Gram matrix (:func:`_overlap_sums`), never
the ``n x n`` one.
"""

from __future__ import annotations

import torch

from workbench._device import resolve_device
from workbench.geometry._checks import check_matrix

__all__ = ["feature_dimensionality", "interference"]


def _overlap_sums(
    W: torch.Tensor, block_size: int, device: str | torch.device | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``‖W_i‖²`` and ``Σ_j (Ŵ_i·W_j)²`` for every row, in float64 on CPU.

    ``Σ_j (Ŵ_i·W_j)² = Ŵ_i (WᵀW) Ŵ_iᵀ``, so only the ``d x d`` Gram matrix is formed, and rows
    are pushed through it ``block_size`` at a time: memory is ``O(d² + block_size·d)``.
    """
    X = check_matrix(W, "W")
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
    dev = X.device if device is None else resolve_device(device)
    with torch.no_grad():
        X = X.to(device=dev, dtype=torch.float64)
        gram = X.T @ X
        sq = torch.empty(X.shape[0], dtype=torch.float64, device=dev)
        total = torch.empty_like(sq)
        for s in range(0, X.shape[0], block_size):
            rows = X[s : s + block_size]
            sq[s : s + block_size] = (rows * rows).sum(1)
            total[s : s + block_size] = ((rows @ gram) * rows).sum(1)
        # total was computed with W_i, not Ŵ_i: divide by ‖W_i‖² (dead rows: 0 / 0 -> 0 below)
        total = torch.where(sq > 0, total / sq.clamp_min(torch.finfo(sq.dtype).tiny), 0.0)
    return sq.cpu(), total.cpu()


def feature_dimensionality(
    W: torch.Tensor, *, block_size: int = 4096, device: str | torch.device | None = None
) -> torch.Tensor:
    """Elhage et al. (2022)'s feature dimensionality ``D_i = ‖W_i‖² / Σ_j (Ŵ_i·W_j)²``.

    ``W`` is ``[n, d]`` with one row per feature direction (a dictionary's ``W_dec``; for the toy
    models of superposition, the transpose of their ``[d, n]`` ``W``). The sum runs over all
    ``j`` including ``i``, so ``0 < D_i <= 1``: 1 for a feature that owns a dimension alone,
    ``1/2`` for each of two antipodal features sharing one (a digon), ``2/5`` for five features
    on a pentagon in a plane. Dead (zero) rows get 0. Computed in float64; returned on CPU.
    """
    sq, total = _overlap_sums(W, block_size, device)
    return torch.where(total > 0, sq / total.clamp_min(torch.finfo(total.dtype).tiny), 0.0)


def interference(
    W: torch.Tensor, *, block_size: int = 4096, device: str | torch.device | None = None
) -> torch.Tensor:
    """How much other features' directions overlap feature ``i``, relative to its own norm.

    ``I_i = Σ_{j≠i} (Ŵ_i·W_j)² / ‖W_i‖²``: the squared length that all other features put along
    ``i``'s direction, in units of ``i``'s own squared length. 0 for a feature orthogonal to all
    others; 1 when the others together put as much along ``i`` as ``i`` itself; for unit-norm
    rows it is Elhage et al.'s plotted superposition measure ``Σ_{j≠i} (Ŵ_i·W_j)²``. Related to
    :func:`feature_dimensionality` by ``D_i = 1 / (1 + I_i)``. Dead rows get 0. Float64, on CPU.
    """
    sq, total = _overlap_sums(W, block_size, device)
    return torch.where(sq > 0, (total - sq) / sq.clamp_min(torch.finfo(sq.dtype).tiny), 0.0)
