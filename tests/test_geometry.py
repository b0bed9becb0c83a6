"""Decoder geometry: neighbours against brute force, superposition metrics on trained toy models
of superposition (Elhage et al. 2022), projections."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch
from _toy_superposition import train_toy_models

from workbench._device import cpu_threads
from workbench.geometry import (
    Neighbors,
    feature_dimensionality,
    interference,
    neighbors,
    project,
)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Small matrices: on small shared CPUs one torch thread is many times faster than two."""
    with cpu_threads(1, torch.device("cpu")):
        yield


# ------------------------------------------------------------------------------------------
# brute force and test matrices


def brute_force(W: torch.Tensor, k: int, exclude_self: bool = True) -> tuple[torch.Tensor, ...]:
    """The full cosine matrix, then each row's first ``k`` entries by (cosine desc, index asc).

    Cosines are computed in float64 and rounded to float32, so rows that are the same direction
    tie exactly; a stable descending sort keeps tied columns in index order. Dead (zero) rows are
    never neighbours, and empty slots are (-1, NaN): the rule documented in workbench.geometry.
    """
    X = W.to(torch.float64)
    norms = X.norm(dim=1)
    live = norms > 0
    U = torch.where(live[:, None], X / norms.clamp_min(1e-300)[:, None], 0.0)
    F = (U @ U.T).float()
    F[:, ~live] = -math.inf
    if exclude_self:
        F.fill_diagonal_(-math.inf)
    v, i = torch.sort(F, dim=1, descending=True, stable=True)
    v, i = v[:, :k].clone(), i[:, :k].clone()
    empty = (v == -math.inf) | ~live[:, None]
    i[empty] = -1
    v[empty] = math.nan
    return i, v


def assert_brute_force(W: torch.Tensor, k: int, block_size: int, exclude_self: bool = True) -> None:
    got = neighbors(W, k, block_size=block_size, exclude_self=exclude_self)
    want_i, want_v = brute_force(W, k, exclude_self)
    assert got.indices.dtype == torch.int64 and got.cosines.dtype == torch.float32
    assert got.indices.device.type == "cpu" and got.cosines.device.type == "cpu"
    assert got.indices.shape == (W.shape[0], k) and got.k == k
    assert torch.equal(got.indices, want_i)
    torch.testing.assert_close(got.cosines, want_v, atol=1e-5, rtol=0, equal_nan=True)


def gaussian(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def lattice(n: int, d: int, seed: int) -> torch.Tensor:
    """Rows with four entries of ±1 (the rest 0): unit rows are exact (±1/2), every cosine is an
    exact multiple of 1/4 whatever the summation order, so almost every list has exact ties."""
    g = torch.Generator().manual_seed(seed)
    L = torch.zeros(n, d)
    cols = torch.rand(n, d, generator=g).argsort(1)[:, :4]
    L.scatter_(1, cols, torch.randint(0, 2, (n, 4), generator=g).float() * 2 - 1)
    return L


def with_duplicates_and_zeros(W: torch.Tensor) -> torch.Tensor:
    W = W.clone()
    n = W.shape[0]
    W[5] = W[17]  # exact duplicate
    W[n - 1] = 2 * W[17]  # same direction, twice the norm (bitwise-equal unit row)
    W[10:20] = W[0]  # a run of duplicates, larger than k
    W[3] = 0  # dead rows
    W[n // 2] = 0
    return W


SHAPES = [  # (n, d, k, block_size): block sizes that divide n, do not, exceed n, are tiny
    (300, 16, 5, 64),
    (257, 33, 10, 50),
    (1000, 64, 10, 128),
    (100, 8, 3, 7),
    (500, 32, 20, 97),
    (64, 4, 63, 16),
    (200, 24, 10, 1000),
]

# ------------------------------------------------------------------------------------------
# neighbors


@pytest.mark.parametrize(("n", "d", "k", "block_size"), SHAPES)
@pytest.mark.parametrize("exclude_self", [True, False])
def test_neighbors_equal_brute_force_on_random_rows(
    n: int, d: int, k: int, block_size: int, exclude_self: bool
) -> None:
    W = gaussian(n, d, seed=n + d)
    assert_brute_force(W, min(k, n - 1), block_size, exclude_self)


@pytest.mark.parametrize(("n", "d", "k", "block_size"), SHAPES)
@pytest.mark.parametrize("exclude_self", [True, False])
def test_neighbors_with_duplicate_and_zero_rows(
    n: int, d: int, k: int, block_size: int, exclude_self: bool
) -> None:
    W = with_duplicates_and_zeros(gaussian(n, d, seed=n * d))
    assert_brute_force(W, min(k, n - 1), block_size, exclude_self)


@pytest.mark.parametrize(("n", "d", "k", "block_size"), SHAPES)
def test_neighbors_with_exact_ties(n: int, d: int, k: int, block_size: int) -> None:
    W = lattice(n, d, seed=n)
    assert_brute_force(W, min(k, n - 1), block_size)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("make", [gaussian, lattice])
def test_neighbors_any_float_dtype(
    dtype: torch.dtype, make: Callable[[int, int, int], torch.Tensor]
) -> None:
    W = with_duplicates_and_zeros(make(400, 48, 7)).to(dtype)
    assert_brute_force(W, 12, 96)


def test_duplicates_are_ordered_by_index() -> None:
    W = gaussian(50, 8, seed=1)
    W[[7, 30, 44]] = W[12].clone()
    nb = neighbors(W, 4, block_size=16)
    # row 12's three duplicates are its best neighbours, in index order, at cosine 1
    assert nb.indices[12, :3].tolist() == [7, 30, 44]
    torch.testing.assert_close(nb.cosines[12, :3], torch.ones(3))
    assert nb.indices[30, :3].tolist() == [7, 12, 44]
    assert nb.indices[30, 3] == nb.indices[12, 3]


def test_dead_rows_rule() -> None:
    W = gaussian(6, 3, seed=2)
    W[[1, 4]] = 0
    nb = neighbors(W, 5)
    live = [0, 2, 3, 5]
    # a dead row's own list is empty ...
    for r in (1, 4):
        assert nb.indices[r].tolist() == [-1] * 5
        assert torch.isnan(nb.cosines[r]).all()
    # ... and dead rows are nobody's neighbours: a live row lists the 3 other live rows, then
    # empty slots
    for r in live:
        assert sorted(nb.indices[r, :3].tolist()) == [x for x in live if x != r]
        assert nb.indices[r, 3:].tolist() == [-1, -1]
        assert not torch.isnan(nb.cosines[r, :3]).any() and torch.isnan(nb.cosines[r, 3:]).all()
    all_dead = neighbors(torch.zeros(4, 3), 2)
    assert (all_dead.indices == -1).all() and torch.isnan(all_dead.cosines).all()


def test_neighbors_orthogonal_and_opposite() -> None:
    W = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0], [1.0, 1.0]])
    nb = neighbors(W, 3)
    s = 1 / math.sqrt(2)
    assert nb.indices.tolist() == [[3, 1, 2], [3, 0, 2], [1, 3, 0], [0, 1, 2]]
    torch.testing.assert_close(
        nb.cosines,
        torch.tensor([[s, 0, -1], [s, 0, 0], [0, -s, -1], [s, s, -s]]),
    )


def test_neighbors_progress_and_threads() -> None:
    W = gaussian(300, 16, seed=3)
    a = neighbors(W, 5, block_size=64, progress=True, threads=2)
    b = neighbors(W, 5, block_size=64)
    assert torch.equal(a.indices, b.indices) and torch.equal(a.cosines, b.cosines)
    assert isinstance(a, Neighbors)


def test_k_out_of_range_names_the_fix() -> None:
    W = gaussian(10, 4, seed=0)
    with pytest.raises(ValueError, match=r"k=10 but W_dec has 10 rows.*pass k <= 9"):
        neighbors(W, 10)
    with pytest.raises(ValueError, match="exclude_self=False"):
        neighbors(W, 10)
    assert neighbors(W, 10, exclude_self=False).indices.shape == (10, 10)
    with pytest.raises(ValueError, match=r"pass k <= 10"):
        neighbors(W, 11, exclude_self=False)
    with pytest.raises(ValueError, match="positive integer"):
        neighbors(W, 0)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (torch.zeros(5), r"\[n, d\] matrix"),
        (torch.zeros(0, 4), r"\[n, d\] matrix"),
        (torch.ones(5, 3, dtype=torch.int64), "float tensor"),
        (torch.tensor([[1.0, math.nan], [1.0, 0.0], [0.0, 1.0]]), "NaN or infinite"),
        (torch.tensor([[1.0, math.inf], [1.0, 0.0], [0.0, 1.0]]), "NaN or infinite"),
    ],
)
def test_bad_input(bad: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        neighbors(bad, 1)


def test_bad_arguments() -> None:
    W = gaussian(10, 4, seed=0)
    with pytest.raises(ValueError, match=r"torch\.Tensor"):
        neighbors(W.numpy(), 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="block_size must be a positive integer"):
        neighbors(W, 1, block_size=0)
    with pytest.raises(ValueError, match="block_size must be a positive integer"):
        feature_dimensionality(W, block_size=0)
    with pytest.raises(ValueError, match="n_components must be a positive integer"):
        project(W, n_components=0)
    with pytest.raises(ValueError, match="at least 3 rows"):
        project(W[:2], "umap")


def test_huge_finite_entries_do_not_overflow() -> None:
    W = gaussian(40, 6, seed=4)
    scaled = W.clone()
    scaled[::3] *= 1e30  # squares overflow float32; cosines do not depend on scale
    a, b = neighbors(W, 5), neighbors(scaled, 5)
    assert torch.equal(a.indices, b.indices)
    torch.testing.assert_close(a.cosines, b.cosines)


def test_auto_device() -> None:
    W = gaussian(100, 8, seed=5)
    a = neighbors(W, 3, device="auto")
    b = neighbors(W, 3, device="cpu")
    assert torch.equal(a.indices, b.indices)
    with pytest.raises(ValueError, match="unknown device"):
        neighbors(W, 3, device="tpu-ish")


# ------------------------------------------------------------------------------------------
# superposition metrics


def test_pentagon_feature_dimensionality() -> None:
    """5 features in 2 dimensions at high sparsity sit on a pentagon: D_i = 2/5 each."""
    Ws, loss = train_toy_models(5, 2, sparsity=0.9)
    W = Ws[loss.argmin()]  # the best of 4 inits (others can stall in a local minimum)
    D = feature_dimensionality(W.T)  # rows = features
    assert D.shape == (5,) and D.dtype == torch.float64
    assert (D - 0.4).abs().max() < 0.05, D
    # and the five columns really form a pentagon: equal norms, neighbours 72° apart
    norms = W.norm(dim=0)
    assert (norms / norms.mean() - 1).abs().max() < 0.05
    angles = torch.sort(torch.atan2(W[1], W[0])).values
    gaps = torch.diff(torch.cat([angles, angles[:1] + 2 * math.pi]))
    assert (gaps - 2 * math.pi / 5).abs().max() < math.radians(5), gaps
    # interference: D = 1 / (1 + I)
    torch.testing.assert_close(interference(W.T), 1 / D - 1)


def test_digon_feature_dimensionality() -> None:
    """2 features in 1 dimension at high sparsity are antipodal: D_i = 1/2 each."""
    Ws, loss = train_toy_models(2, 1, sparsity=0.9)
    W = Ws[loss.argmin()]
    D = feature_dimensionality(W.T)
    assert (D - 0.5).abs().max() < 0.05, D
    assert W[0, 0] * W[0, 1] < 0  # opposite directions


def test_metrics_brute_force_and_edge_cases() -> None:
    W = gaussian(70, 9, seed=6)
    W[[3, 40]] = 0
    D = feature_dimensionality(W, block_size=16)
    I_ = interference(W, block_size=16)
    X = W.double()
    sq = (X * X).sum(1)
    live = sq > 0
    hat = X[live] / sq[live].sqrt()[:, None]
    total = ((hat @ X.T) ** 2).sum(1)
    torch.testing.assert_close(D[live], sq[live] / total)
    torch.testing.assert_close(I_[live], (total - sq[live]) / sq[live])
    assert D[~live].tolist() == [0.0, 0.0] and I_[~live].tolist() == [0.0, 0.0]
    # orthogonal features own a dimension each; an antipodal pair shares one
    eye = 3 * torch.eye(4)
    torch.testing.assert_close(feature_dimensionality(eye), torch.ones(4, dtype=torch.float64))
    torch.testing.assert_close(interference(eye), torch.zeros(4, dtype=torch.float64))
    pair = torch.tensor([[2.0], [-2.0]])
    torch.testing.assert_close(feature_dimensionality(pair), torch.full((2,), 0.5).double())
    torch.testing.assert_close(interference(pair), torch.ones(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="NaN or infinite"):
        feature_dimensionality(torch.tensor([[math.nan, 1.0]]))


# ------------------------------------------------------------------------------------------
# projection


def circle_in_16d(n: int = 80) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit directions around a circle in a plane, rotated into 16-D, with tiny noise."""
    g = torch.Generator().manual_seed(7)
    theta = torch.linspace(0, 2 * math.pi, n + 1)[:-1].double()
    plane = torch.stack([theta.cos(), theta.sin()], 1)
    Q, _ = torch.linalg.qr(torch.randn(16, 16, generator=g, dtype=torch.float64))
    W = plane @ Q[:2] + 1e-4 * torch.randn(n, 16, generator=g, dtype=torch.float64)
    return W.float(), plane


def test_pca_recovers_planar_structure() -> None:
    W, plane = circle_in_16d()
    xy = project(W)
    assert xy.shape == (80, 2) and xy.dtype == np.float32
    # the map is the circle up to rotation/reflection: all pairwise distances are preserved
    want = torch.cdist(plane, plane).numpy()
    got = torch.cdist(torch.from_numpy(xy).double(), torch.from_numpy(xy).double()).numpy()
    np.testing.assert_allclose(got, want, atol=1e-3)
    np.testing.assert_allclose(np.linalg.norm(xy, axis=1), 1.0, atol=1e-3)


def test_pca_is_deterministic_with_a_fixed_sign() -> None:
    W = gaussian(120, 10, seed=8)
    a, b = project(W, seed=0), project(W.clone(), seed=5)
    assert np.array_equal(a, b)
    # the sign convention depends on the directions, not on row order or row norms
    perm = torch.randperm(120, generator=torch.Generator().manual_seed(0))
    scale = torch.rand(120, 1, generator=torch.Generator().manual_seed(1)) + 0.5
    np.testing.assert_allclose(project(W[perm] * scale), a[perm.numpy()], atol=1e-5)
    assert project(W, n_components=3).shape == (120, 3)


def test_umap_is_deterministic_for_a_seed() -> None:
    pytest.importorskip("umap")
    W = gaussian(60, 8, seed=9)
    a = project(W, "umap", seed=3)
    b = project(W, "umap", seed=3)
    c = project(W, "umap", seed=4)
    assert a.shape == (60, 2) and a.dtype == np.float32
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_umap_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "umap", None)
    with pytest.raises(ImportError, match=r"pip install workbench\[umap\]"):
        project(gaussian(10, 3, seed=0), "umap")


def test_project_bad_method() -> None:
    with pytest.raises(ValueError, match="'pca' or 'umap'"):
        project(gaussian(10, 3, seed=0), "tsne")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_components"):
        project(gaussian(10, 3, seed=0), n_components=4)
