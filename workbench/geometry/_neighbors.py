"""Exact top-``k`` cosine neighbours of every feature direction, without the ``n x n`` matrix.

The search behind :func:`workbench.geometry.neighbors` (the rules it keeps, ties and dead rows,
are in the :mod:`workbench.geometry` docstring). Rows are normalised once; the cosine matrix is
then visited one pair of row blocks at a time (:func:`_blocked_topk`), each block product
scanned for the few entries that can still enter a row's running top-``k`` (:func:`_scan`,
:func:`_exact_topk`) and merged into it (:func:`_merge`). Rows that are bitwise the same direction
are searched once, as one group, and expanded afterwards (:func:`_neighbors_with_duplicates`), so
the index rule, not floating-point noise, orders them. Memory is ``O(block_size²)`` beyond the
normalised input; ``benchmarks/geometry.py`` compares the time with a bare matmul of the same size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from workbench._device import cpu_threads, resolve_device
from workbench.geometry._checks import check_matrix, non_finite

__all__ = ["CPU_BLOCK_SIZE", "CUDA_BLOCK_SIZE", "Neighbors", "neighbors"]

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

    Tie and dead-row rules: see the :mod:`workbench.geometry` docstring.

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
    X = check_matrix(W_dec, "W_dec", check_finite=False)
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


def _unit_rows(X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit rows of the live (non-zero) rows of ``X`` in float32 (float64 for float64 input),
    and the indices of those rows. Raises on NaN/inf (detected through the norms: one pass)."""
    dtype = torch.float64 if X.dtype == torch.float64 else torch.float32
    X = X.to(dtype)
    norms = torch.linalg.vector_norm(X, dim=1)
    if not bool(torch.isfinite(norms).all()):
        if not bool(torch.isfinite(X).all()):
            raise non_finite("W_dec")
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
