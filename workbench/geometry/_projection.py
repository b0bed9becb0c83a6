"""Low-dimensional coordinates of feature directions, for maps of a dictionary.

:func:`project` places every decoder row on a plane (PCA of the unit rows, or UMAP with the cosine
metric); the feature map widget draws one point per feature there.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from workbench.geometry._checks import check_matrix

__all__ = ["project"]


def project(
    W_dec: torch.Tensor,
    method: Literal["pca", "umap"] = "pca",
    seed: int = 0,
    n_components: int = 2,
) -> np.ndarray:
    """Low-dimensional coordinates of every feature direction, for maps of a dictionary.

    Rows are normalised first (a map of directions, not norms; dead rows stay at zero).

    * ``"pca"`` (default, fast, deterministic): projection of the centred unit rows on their top
      principal axes, from an exact eigendecomposition of the ``d x d`` covariance in float64.
      Signs are fixed so that each axis's largest-magnitude loading is positive, so the same
      input always gives the same output (``seed`` is unused).
    * ``"umap"``: UMAP with cosine metric, ``random_state=seed`` (deterministic for a seed; UMAP
      then runs single-threaded). Needs ``umap-learn`` (``pip install workbench[umap]``).

    Returns:
        ``[n, n_components]`` float32 numpy array.
    """
    X = check_matrix(W_dec, "W_dec").to(device="cpu", dtype=torch.float64)
    n, d = X.shape
    if isinstance(n_components, bool) or not isinstance(n_components, int) or n_components < 1:
        raise ValueError(f"n_components must be a positive integer, got {n_components!r}")
    norms = torch.linalg.vector_norm(X, dim=1, keepdim=True)
    U = torch.where(norms > 0, X / norms.clamp_min(torch.finfo(X.dtype).tiny), 0.0)
    if method == "pca":
        if n_components > d:
            raise ValueError(f"n_components={n_components} exceeds the row dimension d={d}")
        centred = U - U.mean(0, keepdim=True)
        _, vecs = torch.linalg.eigh(centred.T @ centred)
        axes = vecs[:, -n_components:].flip(1)  # largest variance first, [d, n_components]
        pivot = axes.abs().argmax(0)
        signs = torch.sign(axes[pivot, torch.arange(n_components)])
        return (centred @ (axes * signs)).numpy().astype(np.float32)
    if method == "umap":
        if n < 3:
            raise ValueError(f"UMAP needs at least 3 rows, got {n}; use method='pca'")
        try:
            import umap
        except ImportError as err:
            raise ImportError(
                "project(method='umap') needs umap-learn: pip install workbench[umap] "
                "(or use method='pca')"
            ) from err
        reducer = umap.UMAP(
            n_components=n_components,
            n_neighbors=min(15, n - 1),
            metric="cosine",
            random_state=seed,
            n_jobs=1,
        )
        return np.asarray(reducer.fit_transform(U.numpy()), dtype=np.float32)
    raise ValueError(f"unknown projection method {method!r}: use 'pca' or 'umap'")
