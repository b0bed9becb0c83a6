"""Argument checks shared by the geometry modules: a decoder-like ``[n, d]`` float matrix."""

from __future__ import annotations

import torch

__all__ = ["check_matrix", "non_finite"]


def check_matrix(W: torch.Tensor, name: str, *, check_finite: bool = True) -> torch.Tensor:
    if not isinstance(W, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape [n, d], got {type(W).__name__}")
    if W.ndim != 2 or W.shape[0] == 0 or W.shape[1] == 0:
        raise ValueError(
            f"{name} must be a non-empty [n, d] matrix (rows are feature directions, e.g. "
            f"dictionary.W_dec), got shape {tuple(W.shape)}"
        )
    if not W.is_floating_point():
        raise ValueError(f"{name} must be a float tensor, got {W.dtype}; cast it with .float()")
    if check_finite and not bool(torch.isfinite(W).all()):
        raise non_finite(name)
    return W.detach()


def non_finite(name: str) -> ValueError:
    return ValueError(f"{name} has NaN or infinite entries: fix or drop those rows first")
