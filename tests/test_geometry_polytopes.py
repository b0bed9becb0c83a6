"""Feature-dimensionality polytopes of Elhage et al. (2022) beyond the digon and pentagon.

:func:`feature_dimensionality` on trained toy models of superposition (``_toy_superposition``):
a triangle (``D = 2/3``) and a regular tetrahedron (``D = 3/4``), and a sparsity sweep in
which the features stick at the fractions ``dimensions / features`` of small polytopes.

What the runs showed, and what the tests therefore ask for:

* **Alone, 3 features in 2 dimensions and 4 in 3 do not form a triangle or a tetrahedron** at
  high sparsity: they form a digon plus one or two features with a dimension each (a run
  started on a regular tetrahedron moved there too). The cost when two features fire together
  explains it: ``3·2·E[min(x, x'/2)²] = 3/8`` for the triangle and ``10/27`` for the
  tetrahedron, against ``2·E[min(x, x')²] = 1/3`` for the digon.
* **Embedded in a larger model they do form**: 16 features in 12 dimensions at sparsity 0.45
  split into mutually orthogonal triangles, regular tetrahedra and a few larger pieces (a tegum
  product), with ``D`` within 0.02 of 2/3 and 3/4 and angles within 1.5° (five seeds).
* **The sweep** (40 features in 10 dimensions): dimensions per feature fall with sparsity and
  stay at exactly 1/2 (20 features in 10 digons) from sparsity 0.5 to 0.7. Between 0.4 and 0.75
  (digons, triangles, pentagons, a square antiprism) 82-100% of the represented features lie
  within 0.01 of a polytope fraction, against 21-39% for random directions with the same norms
  (five seeds). In the dense (0.3) and the very sparse (0.9) models the features share one
  large irregular frame, and there the control scores as well as the trained model or better.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from itertools import pairwise

import pytest
import torch
from _toy_superposition import train_toy_models

from workbench._device import cpu_threads
from workbench.geometry import feature_dimensionality, interference

SEED = 0
# dimensions / features of small polytopes: one feature per dimension, tetrahedron, triangle,
# digon, pentagon, square antiprism, six in a plane
FRACTIONS = torch.tensor([1, 3 / 4, 2 / 3, 1 / 2, 2 / 5, 3 / 8, 1 / 3], dtype=torch.float64)
SWEEP = (0.1, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9)
POLYTOPE_RANGE = (0.4, 0.5, 0.6, 0.7, 0.75)  # where the sweep's models are tegum products


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Small matrices: on small shared CPUs one torch thread is many times faster than two."""
    with cpu_threads(1, torch.device("cpu")):
        yield


def represented(W: torch.Tensor) -> list[int]:
    """Features the model keeps (``‖W_i‖`` near 1; the others shrink towards 0)."""
    return (W.norm(dim=0) > 0.5).nonzero().flatten().tolist()


def polytopes(W: torch.Tensor) -> list[tuple[list[int], int]]:
    """The represented features split into groups that overlap (``|cos| > 0.1``, transitively)
    and are orthogonal to each other, each with the dimension it spans: the factors of a tegum
    product. A group that is a polytope has ``D_i = rank / size`` for each of its features."""
    live = represented(W)
    U = W[:, live] / W[:, live].norm(dim=0)
    linked = (U.T @ U).abs() > 0.1
    seen: set[int] = set()
    groups = []
    for start in range(len(live)):
        if start in seen:
            continue
        seen.add(start)
        stack, group = [start], []
        while stack:
            a = stack.pop()
            group.append(live[a])
            for b in linked[a].nonzero().flatten().tolist():
                if b not in seen:
                    seen.add(b)
                    stack.append(b)
        sv = torch.linalg.svdvals(W[:, group])
        groups.append((sorted(group), int((sv > 0.2 * sv[0]).sum())))
    return groups


def at_fraction(D: torch.Tensor, tol: float = 0.01) -> torch.Tensor:
    """Which ``D_i`` lie within ``tol`` of a polytope fraction."""
    return (D[:, None] - FRACTIONS).abs().min(1).values < tol


def random_directions(W: torch.Tensor, seed: int) -> torch.Tensor:
    """The control: ``W``'s column norms on Gaussian directions (no data, no training)."""
    R = torch.randn(W.shape, generator=torch.Generator().manual_seed(seed))
    return R / R.norm(dim=0) * W.norm(dim=0)


def pair_cost(W: torch.Tensor, samples: int = 100_000) -> float:
    """``Σ_pairs E‖x - ReLU(WᵀW x)‖²`` with exactly that pair of features on, uniform on [0, 1]:
    the leading cost of a unit-norm, zero-bias configuration at high sparsity (Monte Carlo)."""
    n = W.shape[1]
    g = torch.Generator().manual_seed(0)
    total = 0.0
    for i in range(n):
        for j in range(i + 1, n):
            x = torch.zeros(samples, n, dtype=torch.float64)
            x[:, [i, j]] = torch.rand(samples, 2, generator=g, dtype=torch.float64)
            out = torch.relu(x @ W.T @ W)
            total += ((x - out) ** 2).sum(1).mean().item()
    return total


def test_alone_three_and_four_features_pair_up_instead() -> None:
    """At high sparsity 3 features in 2 dimensions form a digon plus a feature of its own
    (``D = 1/2, 1/2, 1``), not a triangle; 4 in 3 form a digon plus two (``1/2, 1/2, 1, 1``), not
    a tetrahedron: when two features fire together those cost less."""
    for n, m, want in [(3, 2, [0.5, 0.5, 1.0]), (4, 3, [0.5, 0.5, 1.0, 1.0])]:
        Ws, _ = train_toy_models(n, m, sparsity=0.9, instances=4, steps=1000, seed=SEED)
        for W in Ws:  # every initialisation, not just the best
            D = torch.sort(feature_dimensionality(W.T)).values
            assert (D - torch.tensor(want, dtype=torch.float64)).abs().max() < 0.03, D
    # the cost of two co-active features, against its exact value
    third = 2 * math.pi / 3
    triangle = torch.tensor(
        [[1, math.cos(third), math.cos(third)], [0, math.sin(third), -math.sin(third)]]
    )
    digon_1 = torch.tensor([[1.0, -1.0, 0.0], [0.0, 0.0, 1.0]])
    tetrahedron = torch.tensor([[1.0, 1, -1, -1], [1, -1, 1, -1], [1, -1, -1, 1]]) / math.sqrt(3)
    digon_2 = torch.tensor([[1.0, -1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    costs = [pair_cost(C.double()) for C in (triangle, digon_1, tetrahedron, digon_2)]
    assert costs == pytest.approx([3 / 8, 1 / 3, 10 / 27, 1 / 3], abs=0.005), costs


@pytest.fixture(scope="module")
def mixed() -> torch.Tensor:
    """16 features in 12 dimensions at sparsity 0.45, two initialisations: ``[2, 12, 16]``."""
    Ws, _ = train_toy_models(16, 12, 0.45, instances=2, steps=2000, anneal_steps=1000, seed=SEED)
    return Ws


def found(Ws: torch.Tensor, size: int, rank: int) -> list[tuple[torch.Tensor, list[int]]]:
    """Every group of ``size`` features spanning ``rank`` dimensions, with its model."""
    return [(W, g) for W in Ws for g, r in polytopes(W) if (len(g), r) == (size, rank)]


def check_polytope(W: torch.Tensor, group: list[int], D_want: float, cos_want: float) -> None:
    """Equal norms, the regular polytope's pairwise cosines, ``D``, ``D = 1/(1+I)``, and
    orthogonality to every other feature."""
    D = feature_dimensionality(W.T)
    assert (D[group] - D_want).abs().max() < 0.025, D[group]
    torch.testing.assert_close(interference(W.T)[group], 1 / D[group] - 1)
    norms = W[:, group].norm(dim=0)
    assert (norms / norms.mean() - 1).abs().max() < 0.03, norms
    U = W / W.norm(dim=0).clamp_min(1e-12)
    cos = U[:, group].T @ U[:, group]
    pairs = cos[torch.triu_indices(len(group), len(group), 1).unbind()]
    angles = torch.rad2deg(torch.arccos(pairs))
    assert (angles - math.degrees(math.acos(cos_want))).abs().max() < 3, angles
    rest = [j for j in range(W.shape[1]) if j not in group]
    assert (U[:, group].T @ W[:, rest]).abs().max() < 0.1


def test_triangle_feature_dimensionality(mixed: torch.Tensor) -> None:
    """3 features in a plane, 120° apart, equal norms: ``D_i = 2/3``."""
    triangles = found(mixed, 3, 2)
    assert triangles, [polytopes(W) for W in mixed]
    for W, group in triangles:
        check_polytope(W, group, 2 / 3, -1 / 2)
        # and the three really lie in a plane, at 120° steps around it
        basis = torch.linalg.svd(W[:, group], full_matrices=False).U[:, :2]
        xy = basis.T @ W[:, group]
        angles = torch.sort(torch.atan2(xy[1], xy[0])).values
        gaps = torch.diff(torch.cat([angles, angles[:1] + 2 * math.pi]))
        assert (gaps - 2 * math.pi / 3).abs().max() < math.radians(3), gaps


def test_tetrahedron_feature_dimensionality(mixed: torch.Tensor) -> None:
    """4 features in 3 dimensions, pairwise cosine -1/3, equal norms: ``D_i = 3/4``."""
    tetrahedra = found(mixed, 4, 3)
    assert tetrahedra, [polytopes(W) for W in mixed]
    for W, group in tetrahedra:
        check_polytope(W, group, 3 / 4, -1 / 3)


@pytest.fixture(scope="module")
def sweep() -> torch.Tensor:
    """40 features in 10 dimensions, one model per sparsity in ``SWEEP``: ``[9, 10, 40]``."""
    Ws, _ = train_toy_models(40, 10, SWEEP, steps=2000, anneal_steps=1000, seed=SEED)
    return Ws


def test_sparsity_sweep_sticks_at_polytope_fractions(sweep: torch.Tensor) -> None:
    """Elhage et al.'s sweep in small: as sparsity rises the model represents more features in
    fewer dimensions each, in steps, with the features at polytope fractions in between."""
    m, n = sweep.shape[1:]
    rows: dict[float, dict[str, float]] = {}
    for k, (S, W) in enumerate(zip(SWEEP, sweep, strict=True)):
        live = represented(W)
        D = feature_dimensionality(W.T)
        D_control = feature_dimensionality(random_directions(W, seed=100 + k).T)
        rows[S] = {
            "live": len(live),
            "dims_per_feature": m / len(live),
            "frobenius": m / float((W**2).sum()),
            "at": int(at_fraction(D[live]).sum()),
            "control_at": int(at_fraction(D_control[live]).sum()),
            "in_polytope": sum(
                int(((D[g] - r / len(g)).abs() < 0.01).sum())
                for g, r in polytopes(W)
                if len(g) <= 8
            ),
        }
    print("S     live  m/live  m/|W|²  at-fraction  control  in-polytope")
    for S, r in rows.items():
        count = r["live"]
        print(
            f"{S:<5} {count:>4.0f}  {r['dims_per_feature']:.3f}   {r['frobenius']:.3f}   "
            f"{r['at'] / count:>6.2f}     {r['control_at'] / count:.2f}     "
            f"{r['in_polytope'] / count:.2f}"
        )
    per_feature = [r["dims_per_feature"] for r in rows.values()]
    frobenius = [r["frobenius"] for r in rows.values()]
    # dimensions per feature fall with sparsity: about 1 when dense, 1/4 (all 40 kept) at 0.9
    assert all(a >= b for a, b in pairwise(per_feature)), per_feature
    assert all(a > b for a, b in pairwise(frobenius)), frobenius
    assert per_feature[0] > 0.85 and per_feature[-1] < 0.26, per_feature
    # ... and stick at 1/2: from 0.5 to 0.7 exactly n/2 features, in m antipodal pairs
    for S in (0.5, 0.6, 0.7):
        W = sweep[SWEEP.index(S)]
        assert rows[S]["live"] == n // 2
        groups = polytopes(W)
        assert sorted((len(g), r) for g, r in groups) == [(2, 1)] * m, groups
        for g, _ in groups:
            a, b = W[:, g].T
            assert torch.dot(a, b) / (a.norm() * b.norm()) < -0.99
    # in the tegum-product range the features sit at polytope fractions; random directions with
    # the same norms land there only where their D happens to fall near 1/3 or 3/8
    sums = {key: sum(rows[S][key] for S in POLYTOPE_RANGE) for key in rows[0.5]}
    share, control = sums["at"] / sums["live"], sums["control_at"] / sums["live"]
    assert share > 0.75 and control < 0.5 and share - control > 0.3, (share, control)
    assert sums["in_polytope"] / sums["live"] > 0.75, sums
    # where the model is one large irregular frame the statistic says so, and the control wins
    dense = rows[0.3]
    assert dense["at"] / dense["live"] < 0.1 and dense["control_at"] > dense["at"], dense
    assert rows[0.9]["in_polytope"] == 0
