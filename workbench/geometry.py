"""Decoder geometry of a dictionary: which features sit near which, and how crowded each is.

A sparse autoencoder writes feature ``i`` into the residual stream along its decoder row
``W_dec[i]``. Superposition means these ``n`` directions are packed into a space of only ``d < n``
dimensions, so they cannot all be orthogonal: every feature shares some of its direction with
others. The workbench's central claim (DESIGN.md) is that features sharing directions are
strengthened together by a fine-tune, so the geometry of the decoder rows is the map on which
alignment risk is read. This module gives three views of that map, all plain functions on a
``[n, d]`` matrix whose rows are feature directions:

* :func:`neighbors`: the exact top-``k`` cosine neighbours of every feature, computed in blocks
  that never hold the ``n x n`` similarity matrix (a gpt2-small SAE has 24,576 features; the full
  matrix would be 2.4 GB, a Gemma Scope one 17 GB);
* :func:`project`: 2-D coordinates of all features (PCA by default, UMAP on request) for maps;
* :func:`feature_dimensionality` and :func:`interference`: Elhage et al. (2022)'s superposition
  metrics, how many dimensions each feature effectively owns and how much other features overlap
  its direction.

``workbench.neighborhoods`` puts the geometric neighbours of one feature next to how often they
co-activate; ``forecast`` reads the neighbours of the features a fine-tune will amplify.

Rules of :func:`neighbors` (what "exact" means):

* cosine of rows ``a, b`` is ``â · b̂`` with ``x̂ = x / ‖x‖``, computed in float32 (float64 when the
  input is float64);
* ties are broken by the lower row index, i.e. each row's neighbours are the first ``k`` rows in
  the order (cosine descending, index ascending) -- the same list a brute-force stable sort of the
  full cosine matrix gives. Rows that are bitwise-identical after normalisation are recognised as
  one direction, so their cosines to every other row are *exactly* equal and the index rule, not
  floating-point noise, orders them;
* a zero-norm (dead) row has no direction: it is never anyone's neighbour, and its own list is
  empty. Empty slots (a dead row's whole list, or the tail of a live row's list when fewer than
  ``k`` live rows exist) hold index ``-1`` and cosine ``NaN``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from workbench._device import cpu_threads, resolve_device

__all__ = [
    "Neighbors",
    "feature_dimensionality",
    "interference",
    "neighbors",
    "project",
]

CPU_BLOCK_SIZE = 1024
"""Default rows per block on CPU (fastest of 512-4096 in ``benchmarks/geometry.py``, 2-core CPU)."""

CUDA_BLOCK_SIZE = 8192
"""Default rows per block on CUDA (a 256 MiB float32 block product: few, large kernels)."""

_POOL = 16
"""Columns pooled into one max per chunk when scanning a block for candidates."""

_NEG_INF = float("-inf")


@dataclass(frozen=True, eq=False)
class Neighbors:
    """Top-``k`` cosine neighbours of every row of a decoder matrix (see :func:`neighbors`).

    Attributes:
        indices: ``[n, k]`` int64 on CPU; row ``i`` lists its neighbours best first
            (cosine descending, lower index first among equal cosines); ``-1`` marks an empty slot.
        cosines: ``[n, k]`` float32 on CPU, the matching cosines; ``NaN`` in empty slots.
    """

    indices: torch.Tensor
    cosines: torch.Tensor

    @property
    def k(self) -> int:
        """Number of neighbour slots per row."""
        return int(self.indices.shape[1])


# --------------------------------------------------------------------------------------------
# neighbors


def neighbors(
    W_dec: torch.Tensor,
    k: int,
    *,
    block_size: int | None = None,
    device: str | torch.device | None = None,
    exclude_self: bool = True,
    threads: int | None = None,
    progress: bool = False,
) -> Neighbors:
    """Exact top-``k`` cosine neighbours of every row of ``W_dec`` (rows are feature directions).

    The cosine matrix is computed one pair of row blocks at a time and each pair ``(i, j)`` with
    ``i < j`` only once: its product ``S = Ŵ_i Ŵ_jᵀ`` serves the rows of block ``i`` (against the
    columns of block ``j``) and, transposed, the rows of block ``j``. So the work is half a full
    product and memory is ``O(block_size²)`` beyond the normalised input, never ``O(n²)``. Each
    row keeps a running top-``k`` list; a block entry can only enter it if it is at least the
    row's current ``k``-th best cosine, so each block is scanned for such entries (a max over
    chunks of 16 columns first, then the few chunks that can hold one) and only those are merged.
    Diagonal blocks are done first so that every row starts with a real ``k``-th best.

    Tie and dead-row rules: see the module docstring.

    Args:
        W_dec: ``[n, d]`` float tensor (float16, bfloat16, float32 or float64; any device).
        k: neighbours per row, ``1 <= k <= n - 1`` (``<= n`` with ``exclude_self=False``).
        block_size: rows per block; the block product takes ``block_size² x 4`` bytes (``x 8``
            for float64). ``None``: :data:`CPU_BLOCK_SIZE` or :data:`CUDA_BLOCK_SIZE`.
        device: where to compute (``"auto"``: CUDA if present); ``None``: where ``W_dec`` is.
        exclude_self: leave row ``i`` out of its own list (bitwise duplicates of row ``i`` stay:
            they are other features with the same direction).
        threads: torch CPU threads for the computation (``None``: leave torch's setting). On
            small, shared CPUs one thread is often faster than several.
        progress: show a progress bar over block pairs.

    Returns:
        :class:`Neighbors` with ``[n, k]`` indices and cosines on CPU.

    Raises:
        ValueError: ``W_dec`` is not a 2-D float matrix, has non-finite entries, or ``k`` is out
            of range (the message says the largest ``k`` allowed).
    """
    X = _check_matrix(W_dec, "W_dec", check_finite=False)
    n = X.shape[0]
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    limit = n - 1 if exclude_self else n
    if k > limit:
        hint = (
            f"at most {limit} neighbours per row (a row is not its own neighbour; "
            f"pass exclude_self=False to allow k <= {n})"
            if exclude_self
            else f"at most {limit} neighbours per row"
        )
        raise ValueError(f"k={k} but W_dec has {n} rows, so {hint}: pass k <= {limit}")
    dev = X.device if device is None else resolve_device(device)
    if block_size is None:
        block_size = CUDA_BLOCK_SIZE if dev.type == "cuda" else CPU_BLOCK_SIZE
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")

    out_i = torch.full((n, k), -1, dtype=torch.int64)
    out_v = torch.full((n, k), math.nan, dtype=torch.float32)
    with cpu_threads(threads, dev), torch.no_grad():
        U, live = _unit_rows(X.to(device=dev))
        del X
        if live.numel() == 0:
            return Neighbors(out_i, out_v)
        live_cpu = live.cpu()
        groups = _duplicate_groups(U)
        if groups is None:
            # no repeated direction: one group per live row, in index order
            m = U.shape[0]
            vals, idx = _blocked_topk(
                U, k, block_size, mask_diagonal=exclude_self, progress=progress
            )
            del U
            idx_cpu = idx.cpu()
            found = idx_cpu < m
            out_i[live_cpu] = torch.where(found, live_cpu[idx_cpu.clamp(max=m - 1)], -1)
            out_v[live_cpu] = torch.where(found, vals.cpu().float(), math.nan)
        else:
            uniq, inverse = groups
            del U
            li, lv = _neighbors_with_duplicates(
                uniq, inverse, live, k, block_size, exclude_self, progress
            )
            out_i[live_cpu] = li
            out_v[live_cpu] = lv
    return Neighbors(out_i, out_v)


def _check_matrix(W: torch.Tensor, name: str, *, check_finite: bool = True) -> torch.Tensor:
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
        raise _non_finite(name)
    return W.detach()


def _non_finite(name: str) -> ValueError:
    return ValueError(f"{name} has NaN or infinite entries: fix or drop those rows first")


def _unit_rows(X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit rows of the live (non-zero) rows of ``X`` in float32 (float64 for float64 input),
    and the indices of those rows. Raises on NaN/inf (detected through the norms: one pass)."""
    dtype = torch.float64 if X.dtype == torch.float64 else torch.float32
    X = X.to(dtype)
    norms = torch.linalg.vector_norm(X, dim=1)
    if not bool(torch.isfinite(norms).all()):
        if not bool(torch.isfinite(X).all()):
            raise _non_finite("W_dec")
        # finite entries whose squares overflow: rescale rows first (cosines are scale-free)
        X = X / X.abs().amax(1, keepdim=True).clamp_min(torch.finfo(dtype).tiny)
        norms = torch.linalg.vector_norm(X, dim=1)
    alive = norms > 0
    if bool(alive.all()):
        return X / norms[:, None], torch.arange(X.shape[0], device=X.device)
    live = torch.nonzero(alive).squeeze(1)
    return X[live] / norms[live, None], live


def _duplicate_groups(U: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``torch.unique(U, dim=0, return_inverse=True)`` if some rows of ``U`` are bitwise equal,
    else ``None``. Rows that differ in their first few entries are distinct, so the full sort
    only runs when those agree somewhere (always true for genuine duplicates)."""
    head = U[:, : min(8, U.shape[1])]
    if torch.unique(head, dim=0).shape[0] == U.shape[0]:
        return None
    uniq, inverse = torch.unique(U, dim=0, return_inverse=True)
    if uniq.shape[0] == U.shape[0]:
        return None
    return uniq, inverse


def _neighbors_with_duplicates(
    uniq: torch.Tensor,
    inverse: torch.Tensor,
    live: torch.Tensor,
    k: int,
    block_size: int,
    exclude_self: bool,
    progress: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Neighbours of the live rows when some directions repeat (bitwise, after normalisation).

    Neighbours are found among the ``m`` distinct directions ("groups", ordered by their first
    row) and expanded to rows. The ``k + 1`` best groups of a group (itself included) always hold
    the ``k`` best rows of any of its members: each group contributes at least one row, and at
    most one of those rows is the member itself.
    """
    dev = uniq.device
    m = uniq.shape[0]
    n_live = live.shape[0]
    pos = torch.arange(n_live, device=dev)
    # group order = order of first occurrence, so group index order = lowest-row-index order
    first = torch.full((m,), n_live, dtype=torch.int64, device=dev)
    first.scatter_reduce_(0, inverse, pos, reduce="amin")
    order = torch.argsort(first)
    rank_of = torch.empty_like(order)
    rank_of[order] = torch.arange(m, device=dev)
    group = rank_of[inverse]  # group of each live row, groups numbered by first row
    U = uniq[order]
    del uniq
    kg = min(k + 1, m)
    gv, gi = _blocked_topk(U, kg, block_size, mask_diagonal=False, progress=progress)
    gv, gi = gv.cpu(), gi.cpu()
    group = group.cpu()
    live = live.cpu()

    # the first k + 1 members (original row indices, ascending) of every group
    by_group = torch.argsort(group, stable=True)  # live rows sorted by (group, index)
    sizes = torch.bincount(group, minlength=m)
    starts = torch.cumsum(sizes, 0) - sizes
    slot = torch.arange(n_live) - starts[group[by_group]]
    width = k + 1
    members = torch.full((m, width), -1, dtype=torch.int64)
    keep = slot < width
    members[group[by_group][keep], slot[keep]] = live[by_group][keep]

    # expand each group's neighbour groups into rows; order by (cosine desc, row index asc)
    found = gi < m
    cand_i = members[gi.clamp(max=m - 1)]  # [m, kg, width]
    cand_i = torch.where(found[:, :, None] & (cand_i >= 0), cand_i, -1)
    cand_v = torch.where(cand_i >= 0, gv[:, :, None], _NEG_INF).reshape(m, -1)
    cand_i = cand_i.reshape(m, -1)
    big = int(live.max()) + 1
    cand_i = torch.where(cand_i >= 0, cand_i, big)
    o = torch.argsort(cand_i, dim=1)
    cand_v, cand_i = cand_v.gather(1, o), cand_i.gather(1, o)
    o = torch.sort(cand_v, dim=1, descending=True, stable=True).indices[:, :width]
    cand_v, cand_i = cand_v.gather(1, o), cand_i.gather(1, o)  # [m, k + 1], best first

    # per live row: its group's list, minus the row itself
    row_v, row_i = cand_v[group], cand_i[group]
    if exclude_self:
        is_self = row_i == live[:, None]
        o = torch.argsort(is_self.to(torch.int8), dim=1, stable=True)
        row_v, row_i = row_v.gather(1, o), row_i.gather(1, o)
    row_v, row_i = row_v[:, :k], row_i[:, :k]
    empty = row_i >= big
    return (
        torch.where(empty, -1, row_i),
        torch.where(empty, math.nan, row_v.float()),
    )


def _blocked_topk(
    U: torch.Tensor, K: int, block_size: int, *, mask_diagonal: bool, progress: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``K`` of every row of ``U Uᵀ`` by (value desc, column asc), one block pair at a time.

    ``U`` holds distinct unit rows. Returns ``[m, K]`` values and column indices, best first;
    empty slots have value ``-inf`` and an index ``>= m``.
    """
    m = U.shape[0]
    dev, dtype = U.device, U.dtype
    B = min(block_size, m)
    starts = list(range(0, m, B))
    nb = len(starts)
    best_v = torch.full((m, K), _NEG_INF, dtype=dtype, device=dev)
    best_i = (m + torch.arange(K, device=dev)).repeat(m, 1)
    buf = torch.empty(B * B, dtype=dtype, device=dev)
    bar = tqdm(total=nb * (nb + 1) // 2, desc="neighbors", unit="block", disable=not progress)

    def block(i0: int, j0: int) -> torch.Tensor:
        a = U[i0 : i0 + B]
        b = U[j0 : j0 + B]
        S = buf[: a.shape[0] * b.shape[0]].view(a.shape[0], b.shape[0])
        torch.mm(a, b.t(), out=S)
        return S

    # diagonal blocks first: every row then has a real k-th best to prune the rest with
    for i0 in starts:
        S = block(i0, i0)
        if mask_diagonal:
            S.diagonal().fill_(_NEG_INF)
        rows = torch.arange(i0, i0 + S.shape[0], device=dev)
        cv, ci = _exact_topk(S, K, col_base=i0, pad_base=m + K)
        best_v[rows], best_i[rows] = _merge(best_v[rows], best_i[rows], cv, ci, m)
        bar.update()
    for bi, i0 in enumerate(starts):
        for j0 in starts[bi + 1 :]:
            S = block(i0, j0)
            R, C = S.shape
            # rows of block i against the columns of block j ...
            g = _POOL if C >= 4 * _POOL else 1
            w = C // g
            pooled = S if g == 1 else S[:, : g * w].view(R, g, w).amax(1)
            _scan(best_v, best_i, S, pooled, g, w, i0, j0, m, K)
            # ... and, transposed, rows of block j against the columns of block i
            g = _POOL if R >= 4 * _POOL else 1
            w = R // g
            pooled = S.t() if g == 1 else S[: g * w].view(g, w, C).amax(0).t()
            _scan(best_v, best_i, S.t(), pooled, g, w, j0, i0, m, K)
            bar.update()
    bar.close()
    return best_v, best_i


def _scan(
    best_v: torch.Tensor,
    best_i: torch.Tensor,
    X: torch.Tensor,
    pooled: torch.Tensor,
    g: int,
    w: int,
    row0: int,
    col0: int,
    m: int,
    K: int,
) -> None:
    """Merge the entries of block ``X`` (rows ``row0...``, columns ``col0...``) into the lists.

    ``pooled[r, c]`` is the max of ``X[r, c + w*t]`` over ``t < g`` (columns ``g*w...`` are
    left over and scanned one by one). Only entries ``>=`` the row's current ``K``-th best can
    enter its list, so only chunks whose max reaches it are opened; a row with more than a few
    such entries (early on, or with many exact ties) takes the exact top-``K`` of its whole row.
    """
    R, C = X.shape
    dev = X.device
    thr = best_v[row0 : row0 + R, K - 1]
    r, c = torch.nonzero(pooled >= thr[:, None], as_tuple=True)
    if g > 1:
        c = (c[:, None] + w * torch.arange(g, device=dev)).reshape(-1)
        r = r.repeat_interleave(g)
    if g * w < C:  # leftover columns: each is its own chunk
        r2, c2 = torch.nonzero(X[:, g * w :] >= thr[:, None], as_tuple=True)
        r, c = torch.cat([r, r2]), torch.cat([c, c2 + g * w])
        o = torch.argsort(r, stable=True)
        r, c = r[o], c[o]
    v = X[r, c]
    keep = v >= thr[r]
    r, c, v = r[keep], c[keep], v[keep]
    if r.numel() == 0:
        return
    counts = torch.bincount(r, minlength=R)
    cap = 2 * K + 8
    heavy = counts > cap
    if bool(heavy.any()):
        hr = torch.nonzero(heavy).squeeze(1)
        cv, ci = _exact_topk(X[hr], K, col_base=col0, pad_base=m + K)
        rows = row0 + hr
        best_v[rows], best_i[rows] = _merge(best_v[rows], best_i[rows], cv, ci, m)
        light = ~heavy[r]
        r, c, v = r[light], c[light], v[light]
        counts = torch.where(heavy, 0, counts)
        if r.numel() == 0:
            return
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(r.numel(), device=dev) - starts[r]
    width = int(counts.max())
    active = torch.nonzero(counts).squeeze(1)
    at = torch.full((R,), -1, dtype=torch.int64, device=dev)
    at[active] = torch.arange(active.numel(), device=dev)
    cv = torch.full((active.numel(), width), _NEG_INF, dtype=X.dtype, device=dev)
    ci = (m + K + torch.arange(width, device=dev)).repeat(active.numel(), 1)
    cv[at[r], slot] = v
    ci[at[r], slot] = c + col0
    rows = row0 + active
    best_v[rows], best_i[rows] = _merge(best_v[rows], best_i[rows], cv, ci, m)


def _exact_topk(
    V: torch.Tensor, K: int, *, col_base: int, pad_base: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The top-``K`` set of each row of ``V`` by (value desc, column asc), unordered.

    ``torch.topk`` gets the set right unless the ``K``-th and ``(K+1)``-th values tie; those rows
    are redone with a stable sort, which keeps equal values in column order. ``-inf`` entries
    become empty slots with distinct indices ``pad_base + slot``.
    """
    R, C = V.shape
    dev = V.device
    if C <= K:
        vals = V.clone()
        idx = torch.arange(C, device=dev).repeat(R, 1)
    else:
        vals, idx = V.topk(K + 1, dim=1)
        tie = (vals[:, K - 1] == vals[:, K]) & (vals[:, K - 1] > _NEG_INF)
        vals, idx = vals[:, :K], idx[:, :K]
        if bool(tie.any()):
            tr = torch.nonzero(tie).squeeze(1)
            sv, si = torch.sort(V[tr], dim=1, descending=True, stable=True)
            vals[tr], idx[tr] = sv[:, :K], si[:, :K]
    empty = vals == _NEG_INF
    slots = pad_base + torch.arange(idx.shape[1], device=dev)
    return vals, torch.where(empty, slots, idx + col_base)


def _merge(
    bv: torch.Tensor, bi: torch.Tensor, cv: torch.Tensor, ci: torch.Tensor, pad_base: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge candidates ``(cv, ci)`` into sorted lists ``(bv, bi)``: the best ``K`` by (value desc,
    index asc), sorted.

    Indices within a row are distinct, so the order is strict and an entry's rank is the number
    of entries that precede it; the lists are sorted already, so only candidate-vs-list and
    candidate-vs-candidate comparisons are needed. Entries land at their rank. Empty slots
    (``-inf``) of the result are renumbered ``pad_base + slot``, which candidate lists (padded
    from ``pad_base + K``) never use, so the next merge sees distinct indices again.
    """
    K, C = bv.shape[1], cv.shape[1]
    dev = bv.device
    cq, cqi = cv[:, :, None], ci[:, :, None]
    # cross[a, q, p]: candidate q precedes list entry p
    cross = (cq > bv[:, None, :]) | ((cq == bv[:, None, :]) & (cqi < bi[:, None, :]))
    # among[a, q', q]: candidate q' precedes candidate q
    among = (cq > cv[:, None, :]) | ((cq == cv[:, None, :]) & (cqi < ci[:, None, :]))
    rank_b = torch.arange(K, device=dev) + cross.sum(1)
    rank_c = (K - cross.sum(2)) + among.sum(1)
    rank = torch.cat([rank_b, rank_c], dim=1)
    out_v = torch.empty((bv.shape[0], K + C), dtype=bv.dtype, device=dev)
    out_i = torch.empty((bv.shape[0], K + C), dtype=bi.dtype, device=dev)
    out_v.scatter_(1, rank, torch.cat([bv, cv], dim=1))
    out_i.scatter_(1, rank, torch.cat([bi, ci], dim=1))
    out_v, out_i = out_v[:, :K], out_i[:, :K]
    slots = pad_base + torch.arange(K, device=dev)
    return out_v, torch.where(out_v == _NEG_INF, slots, out_i)


# --------------------------------------------------------------------------------------------
# projection


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
    X = _check_matrix(W_dec, "W_dec").to(device="cpu", dtype=torch.float64)
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


# --------------------------------------------------------------------------------------------
# superposition metrics


def _overlap_sums(
    W: torch.Tensor, block_size: int, device: str | torch.device | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``‖W_i‖²`` and ``Σ_j (Ŵ_i·W_j)²`` for every row, in float64 on CPU.

    ``Σ_j (Ŵ_i·W_j)² = Ŵ_i (WᵀW) Ŵ_iᵀ``, so only the ``d x d`` Gram matrix is formed, and rows
    are pushed through it ``block_size`` at a time: memory is ``O(d² + block_size·d)``.
    """
    X = _check_matrix(W, "W")
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
