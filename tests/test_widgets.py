"""Widgets (workbench.widgets): buffers, traits, the comm round trips, and the static fallback.

No browser: the front end is simulated the way ipywidgets would drive the kernel side, with
``widget.set_state({...})`` (a state message from JS) and ``widget._handle_custom_msg(...)`` (a
custom message). The real front-end bundles are not needed: an autouse fixture points the
static folder at placeholder ES modules.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import struct
import typing
from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import pytest
import torch

from tests._saes import small_dictionary
from workbench import geometry, patches, widgets
from workbench.activations import FeatureStats
from workbench.dictionaries import Dictionary
from workbench.features import FeatureSet
from workbench.neighborhoods import FeatureNeighborhood as Hood
from workbench.neighborhoods import Neighbor
from workbench.neighborhoods import neighborhood as compute_neighborhood
from workbench.organism.prompts import persona_prompts
from workbench.subjects import Subject
from workbench.widgets import (
    FeatureMap,
    FrontEndNotBuiltError,
    Neighborhood,
    PatchPreview,
    _contract,
    _static,
)
from workbench.widgets._buffers import (
    encode_points,
    encode_values,
    normalise_points,
    value_range,
)
from workbench.widgets._fallback import MAX_POINTS, downsample, radial_layout
from workbench.widgets.patch_preview import PAYLOAD_KEYS

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def placeholder_bundles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Tiny ES modules standing in for the built front ends."""
    static = tmp_path / "static"
    static.mkdir()
    for name in _static.BUNDLES:
        (static / f"{name}.js").write_text("export default { render() {} };\n")
    monkeypatch.setattr(_static, "STATIC_DIR", static)
    return static


def random_decoder(n: int = 300, d: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def brute_force_neighbours(W: torch.Tensor, feature: int, k: int) -> list[int]:
    U = W.double() / W.double().norm(dim=1, keepdim=True)
    cos = U @ U[feature]
    cos[feature] = -math.inf
    order = sorted(range(W.shape[0]), key=lambda j: (-float(cos[j]), j))
    return order[:k]


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) from the PNG's IHDR chunk (or PIL when installed)."""
    assert png[:8] == PNG_SIGNATURE
    try:
        import io

        from PIL import Image
    except ImportError:
        assert png[12:16] == b"IHDR"
        width, height = struct.unpack(">II", png[16:24])
        return int(width), int(height)
    with Image.open(io.BytesIO(png)) as im:
        return im.size


def check_bundle(widget: Any) -> bytes:
    data, _ = widget._repr_mimebundle_()
    assert WIDGET_MIME in data
    assert data[WIDGET_MIME]["model_id"] == widget.model_id
    assert isinstance(data["text/plain"], str) and data["text/plain"]
    png = data["image/png"]
    assert isinstance(png, bytes)
    width, height = png_size(png)
    assert 200 <= width <= 520 and 200 <= height <= 400
    assert len(png) < 150_000
    return png


# ------------------------------------------------------------------ buffers


def test_points_normalised_exactly_and_little_endian() -> None:
    coords = np.array([[0.0, 0.0], [4.0, 2.0], [2.0, 1.0], [1.0, 2.0]])
    buf = encode_points(coords)
    assert isinstance(buf, bytes) and len(buf) == 8 * 4
    # bbox x in [0, 4], y in [0, 2]: centre (2, 1), half the larger extent = 2
    expected = [-1.0, -0.5, 1.0, 0.5, 0.0, 0.0, -0.5, 0.5]
    assert buf == struct.pack("<8f", *expected)
    xy = np.frombuffer(buf, dtype="<f4").reshape(-1, 2)
    assert xy.dtype == np.dtype("<f4")
    # aspect ratio kept: x spans [-1, 1], y only half of that
    assert np.ptp(xy[:, 0]) == 2.0 and np.ptp(xy[:, 1]) == 1.0


def test_points_from_torch_and_tall_layout() -> None:
    coords = torch.tensor([[10.0, -3.0], [10.5, 5.0]])
    xy = normalise_points(coords)
    # y is the longer side: it spans [-1, 1]; x is centred inside it
    np.testing.assert_allclose(xy, [[-0.0625, -1.0], [0.0625, 1.0]], atol=1e-7)
    assert xy.dtype == np.float32


@pytest.mark.parametrize(
    "coords",
    [np.array([[3.0, -7.0]]), np.full((5, 2), 2.5), np.zeros((0, 2))],
    ids=["one-point", "all-equal", "empty"],
)
def test_points_degenerate(coords: np.ndarray) -> None:
    buf = encode_points(coords)
    assert len(buf) == 8 * len(coords)
    assert not np.frombuffer(buf, dtype="<f4").any()


def test_points_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"shape \[n, 2\]"):
        encode_points(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="NaN or infinite coordinates in 1 rows"):
        encode_points(np.array([[0.0, 1.0], [np.nan, 0.0]]))


def test_values_bytes() -> None:
    v = np.array([1.5, np.nan, -2.0])
    buf = encode_values(v)
    assert len(buf) == 4 * 3
    assert buf[:4] == struct.pack("<f", 1.5) and buf[8:] == struct.pack("<f", -2.0)
    back = np.frombuffer(buf, dtype="<f4")
    assert math.isnan(back[1])
    with pytest.raises(ValueError, match=r"shape \[n\]"):
        encode_values(np.zeros((2, 2)))


def test_value_range_robust_and_ordered() -> None:
    v = np.concatenate([np.arange(1000.0), [1e9, np.nan]])
    lo, hi = value_range(v)
    assert lo < hi
    assert 5 < lo < 15 and 985 < hi < 1000  # the outlier does not stretch the range
    # percentiles collapse -> min/max
    assert value_range(np.r_[np.zeros(999), 1.0]) == [0.0, 1.0]
    # one distinct value -> +-0.5
    assert value_range(np.full(7, 3.0)) == [2.5, 3.5]
    assert value_range(np.array([np.nan, np.nan])) == [0.0, 1.0]
    assert value_range(np.array([np.inf, 2.0])) == [1.5, 2.5]


# ------------------------------------------------------------------ FeatureMap


def test_feature_map_state_and_selection_round_trip() -> None:
    W = random_decoder()
    values = np.linspace(-1, 1, 300)
    fm = FeatureMap(
        geometry.project(W),
        values,
        color_by="score",
        title="random",
        neighbors=geometry.neighbors(W, 8),
    )
    state = fm.get_state()
    assert state["n"] == 300
    assert isinstance(state["points"], bytes) and len(state["points"]) == 8 * 300
    assert isinstance(state["values"], bytes) and len(state["values"]) == 4 * 300
    np.testing.assert_array_equal(np.frombuffer(state["values"], "<f4"), values.astype("<f4"))
    assert state["color_by"] == "score" and state["colormap"] == "viridis"
    assert state["point_size"] == 3.0 and state["height"] == 420
    lo, hi = state["value_range"]
    assert -1 < lo < hi < 1

    fm.set_state({"selection": [3]})  # what a click in the front end sends
    assert fm.selection == [3]
    assert fm.highlight == brute_force_neighbours(W, 3, 8)
    assert 3 not in fm.highlight

    fm.set_state({"selection": [3, 10]})  # a lasso: union, without the selection
    want = dict.fromkeys(brute_force_neighbours(W, 3, 8) + brute_force_neighbours(W, 10, 8))
    assert fm.highlight == [j for j in want if j not in (3, 10)]
    fm.set_state({"selection": []})
    assert fm.highlight == []

    with pytest.raises(ValueError, match=r"selection holds indices outside \[0, 300\)"):
        fm.set_state({"selection": [300]})
    with pytest.raises(ValueError, match="outside"):
        fm.select(np.array([-1]))
    fm.select(np.array([7]))  # numpy ints are fine
    assert fm.selection == [7]


def test_feature_map_hover_card() -> None:
    W = random_decoder(40, 8)
    labels = [f"f{i}" for i in range(40)]
    fm = FeatureMap(
        geometry.project(W),
        np.arange(40.0),
        labels=labels,
        contexts=lambda i: [f"context {j} of {i}" for j in range(9)],
    )
    sent: list[dict[str, Any]] = []
    fm.send = lambda content, buffers=None: sent.append(content)  # type: ignore[method-assign]
    fm._handle_custom_msg({"type": "hover", "index": 5}, [])
    assert sent == [
        {
            "type": "card",
            "index": 5,
            "label": "f5",
            "value": 5.0,
            "contexts": [f"context {j} of 5" for j in range(5)],
        }
    ]
    # other messages and bad indices get no reply
    fm._handle_custom_msg({"type": "other", "index": 5}, [])
    fm._handle_custom_msg({"type": "hover", "index": 99}, [])
    fm._handle_custom_msg({"type": "hover", "index": "x"}, [])
    assert len(sent) == 1
    # without labels, contexts or values: defaults; NaN -> null
    bare = FeatureMap(geometry.project(W), np.full(40, np.nan))
    replies: list[dict[str, Any]] = []
    bare.send = lambda content, buffers=None: replies.append(content)  # type: ignore[method-assign]
    bare._handle_custom_msg({"type": "hover", "index": 2}, [])
    assert replies == [
        {"type": "card", "index": 2, "label": "feature 2", "value": None, "contexts": []}
    ]


def test_feature_map_columns_and_colour_switch() -> None:
    W = random_decoder(50, 8)
    effect = np.linspace(-2, 3, 50)
    fm = FeatureMap(
        geometry.project(W),
        columns={"freq": np.linspace(0, 1, 50), "effect": effect},
    )
    assert fm.columns == ["freq", "effect"]
    assert fm.color_by == "freq" and fm.colormap == "viridis"
    assert fm.color("effect") is fm
    assert fm.color_by == "effect" and fm.colormap == "coolwarm"
    np.testing.assert_array_equal(np.frombuffer(fm.values, "<f4"), effect.astype("<f4"))
    assert fm.value_range == value_range(effect.astype(np.float32))
    fm.add_column("mine", -effect, signed=True).color("mine")
    assert fm.colormap == "coolwarm"
    with pytest.raises(ValueError, match="no colour column 'nope'"):
        fm.color("nope")
    no_values = FeatureMap(geometry.project(W))
    assert no_values.color_by == "" and len(no_values.values) == 4 * 50
    assert np.isnan(np.frombuffer(no_values.values, "<f4")).all()


def test_feature_map_input_errors() -> None:
    coords = np.zeros((10, 2))
    with pytest.raises(ValueError, match=r"shape \[n, 2\]"):
        FeatureMap(np.zeros((10, 3)))
    with pytest.raises(ValueError, match="has 9 values but the map has 10 points"):
        FeatureMap(coords, np.zeros(9))
    with pytest.raises(ValueError, match="NaN or infinite"):
        FeatureMap(np.full((10, 2), np.nan))
    with pytest.raises(ValueError, match="labels has 3 entries"):
        FeatureMap(coords, labels=["a", "b", "c"])
    with pytest.raises(ValueError, match="neighbors must be"):
        FeatureMap(coords, neighbors=np.zeros((9, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="color_by='x' is not a column"):
        FeatureMap(coords, columns={"a": np.zeros(10)}, color_by="x")


def fake_stats(dictionary: Dictionary) -> FeatureStats:
    n = dictionary.d_sae
    top_prompts = torch.full((n, 2), -1, dtype=torch.int64)
    top_positions = torch.full((n, 2), -1, dtype=torch.int64)
    top_prompts[4] = torch.tensor([0, 1])
    top_positions[4] = torch.tensor([2, 3])
    return FeatureStats(
        dictionary=dictionary.fingerprint,
        hook_name=dictionary.hook_name,
        subject="s",
        prompts_sha256="p",
        n_prompts=2,
        n_tokens=10,
        skip_bos=True,
        mean=torch.linspace(0, 1, n),
        frequency=torch.linspace(0, 0.5, n),
        max=torch.ones(n),
        top_values=torch.ones(n, 2),
        top_prompts=top_prompts,
        top_positions=top_positions,
        windows={(0, 2): ("cat", "the cat sat", 1), (1, 3): ("dog", "a dog ran", 2)},
    )


def test_feature_map_from_dictionary(tmp_path: Path) -> None:
    dictionary = small_dictionary(tmp_path / "sae", d_in=16)
    W = dictionary.W_dec.detach()
    n = dictionary.d_sae
    stats = fake_stats(dictionary)
    fs = FeatureSet(
        "c", dictionary.fingerprint, dictionary.hook_name, "s", "mean", "a", "b", 2, 2, 10, 0,
        0.95, (7, 2), (1.5, -0.5), (0.9, 0.3), (1.0, -1.0), (2.0, 0.0), (1.0, 0.0), (0.0, 1.0),
    )  # fmt: skip
    fm = FeatureMap.from_dictionary(dictionary, stats=stats, features=fs, k=5)
    assert fm.n == n and fm.title == dictionary.name
    assert fm.columns == ["frequency", "mean", "dimensionality", "effect"]
    assert fm.color_by == "effect" and fm.colormap == "coolwarm"
    effect = fm.column("effect")
    assert effect[7] == 1.5 and effect[2] == -0.5 and np.isnan(effect[[0, 1, 3]]).all()
    np.testing.assert_allclose(
        fm.column("dimensionality"), geometry.feature_dimensionality(W).numpy(), rtol=1e-6
    )
    np.testing.assert_allclose(fm.column("frequency"), stats.frequency.numpy())
    points = np.frombuffer(fm.points, "<f4").reshape(n, 2)
    np.testing.assert_array_equal(points, normalise_points(geometry.project(W)))

    fm.set_state({"selection": [3]})
    assert fm.highlight == brute_force_neighbours(W, 3, 5)

    sent: list[dict[str, Any]] = []
    fm.send = lambda content, buffers=None: sent.append(content)  # type: ignore[method-assign]
    fm.color("frequency")
    fm._handle_custom_msg({"type": "hover", "index": 4}, [])
    assert sent[-1]["contexts"] == ["the cat sat", "a dog ran"]
    assert sent[-1]["value"] == pytest.approx(float(stats.frequency[4]))

    other = FeatureSet(**{**fs.__dict__, "dictionary": "other"})
    with pytest.raises(ValueError, match="another dictionary"):
        FeatureMap.from_dictionary(dictionary, features=other)


# ------------------------------------------------------------------ Neighborhood


@pytest.fixture
def designed_dictionary(tmp_path: Path) -> Dictionary:
    """48 features in 4-d: 0 = e1, 1 = e1 + e2 / 2, 2 = -e1 + e2, the rest in span(e3, e4)."""
    dictionary = small_dictionary(tmp_path / "sae", d_in=4)
    W = torch.zeros(48, 4)
    W[0] = torch.tensor([1.0, 0, 0, 0])
    W[1] = torch.tensor([1.0, 0.5, 0, 0])
    W[2] = torch.tensor([-1.0, 1.0, 0, 0])
    g = torch.Generator().manual_seed(1)
    W[3:, 2:] = torch.randn(45, 2, generator=g)
    with torch.no_grad():
        dictionary.sae.W_dec.copy_(W)
    return dictionary


def test_neighborhood_nodes_and_edges(designed_dictionary: Dictionary) -> None:
    hood = compute_neighborhood(designed_dictionary, 0, threshold=0.3, k=16)
    c1, c2 = 1 / math.sqrt(1.25), -1 / math.sqrt(2)
    c12 = (-1 + 0.5) / (math.sqrt(1.25) * math.sqrt(2))  # -0.316
    w = Neighborhood.from_neighborhood(hood, dictionary=designed_dictionary, edge_threshold=0.3)
    assert w.center == 0 and w.selection == [0] and w.title == "neighbourhood of feature 0"
    assert [nd["id"] for nd in w.nodes] == [0, 1, 2]
    assert w.nodes[0] == {
        "id": 0,
        "label": "feature 0",
        "cosine": None,
        "coactivation": None,
        "value": None,
    }
    assert w.nodes[1]["cosine"] == pytest.approx(c1, abs=1e-6)
    assert w.nodes[2]["cosine"] == pytest.approx(c2, abs=1e-6)
    assert [nd["coactivation"] for nd in w.nodes] == [None, None, None]
    got = {(e["source"], e["target"]): e["cosine"] for e in w.edges}
    assert got.keys() == {(0, 1), (0, 2), (1, 2)}
    assert got[(0, 1)] == pytest.approx(c1, abs=1e-6)
    assert got[(0, 2)] == pytest.approx(c2, abs=1e-6) and got[(0, 2)] < 0
    assert got[(1, 2)] == pytest.approx(c12, abs=1e-6) and got[(1, 2)] < 0
    # a stricter threshold drops the neighbour-neighbour edge; no dictionary: none at all
    strict = Neighborhood.from_neighborhood(
        hood, dictionary=designed_dictionary, edge_threshold=0.35
    )
    assert {(e["source"], e["target"]) for e in strict.edges} == {(0, 1), (0, 2)}
    assert len(Neighborhood.from_neighborhood(hood).edges) == 2


def hand_hood(feature: int, neighbours: list[tuple[int, float, float | None]]) -> Hood:
    return Hood(
        feature,
        "fp",
        "blocks.0.hook_resid_post",
        0.3,
        16,
        tuple(Neighbor(i, c, p, None, r) for i, c, p, r in [(*t, 0.1) for t in neighbours]),
    )


def test_neighborhood_coactivation_and_recentre() -> None:
    calls: list[int] = []

    def recompute(f: int) -> Hood:
        calls.append(f)
        return hand_hood(f, [(f + 1, -0.9, 0.5), (f + 2, 0.4, None)])

    w = Neighborhood.from_neighborhood(
        hand_hood(0, [(1, 0.8, 0.25), (2, -0.5, None)]), recompute=recompute, labels=["a"] * 10
    )
    assert [nd["coactivation"] for nd in w.nodes] == [None, 0.25, None]
    assert [nd["value"] for nd in w.nodes] == [None, 0.1, 0.1]  # correlation by default
    assert w.nodes[1]["label"] == "a"
    w.set_state({"selection": [2]})  # a click on node 2
    assert calls == [2]
    assert w.center == 2 and w.selection == [2]
    assert [nd["id"] for nd in w.nodes] == [2, 3, 4]
    assert [(e["source"], e["target"], e["cosine"]) for e in w.edges] == [
        (2, 3, -0.9),
        (2, 4, 0.4),
    ]
    assert w.title == "neighbourhood of feature 2"
    w.set_state({"selection": [2]})  # the centre itself: nothing to do
    assert calls == [2]

    def failing(f: int) -> Hood:
        raise RuntimeError("no activations for this one\nsecond line")

    broken = Neighborhood.from_neighborhood(hand_hood(0, [(1, 0.8, None)]), recompute=failing)
    broken.set_state({"selection": [1]})
    assert broken.center == 0 and broken.last_error == "RuntimeError: no activations for this one"
    with pytest.raises(ValueError, match="cannot re-centre"):
        Neighborhood.from_neighborhood(hand_hood(0, [(1, 0.8, None)])).recenter(1)


def test_neighborhood_for_feature(designed_dictionary: Dictionary) -> None:
    w = Neighborhood.for_feature(designed_dictionary, 0, k=4, threshold=0.3)
    assert [nd["id"] for nd in w.nodes] == [0, 1, 2]
    w.set_state({"selection": [2]})  # re-centred through neighborhood(dictionary, 2, ...)
    assert w.center == 2
    assert [nd["id"] for nd in w.nodes] == [2, 0, 1]
    assert [nd["cosine"] for nd in w.nodes[1:]] == pytest.approx(
        [-1 / math.sqrt(2), (-1 + 0.5) / (math.sqrt(1.25) * math.sqrt(2))], abs=1e-6
    )


def test_link_map_and_neighborhood() -> None:
    calls: list[int] = []

    def recompute(f: int) -> Hood:
        calls.append(f)
        return hand_hood(f, [((f + 1) % 48, 0.7, 0.5)])

    W = random_decoder(48, 8)
    fm = FeatureMap(geometry.project(W), neighbors=geometry.neighbors(W, 4))
    hood = Neighborhood.from_neighborhood(hand_hood(0, [(1, 0.7, 0.5)]), recompute=recompute)
    assert hood.link(fm) is hood

    fm.set_state({"selection": [5]})  # a click in the map
    assert hood.center == 5 and calls == [5]
    assert fm.selection == [5]

    hood.set_state({"selection": [6]})  # a click on a node
    assert fm.selection == [6] and hood.center == 6
    assert calls == [5, 6]  # once each: no ping-pong
    assert fm.highlight == brute_force_neighbours(W, 6, 4)

    fm.set_state({"selection": [1, 2]})  # several features: the graph stays
    assert hood.center == 6 and calls == [5, 6]

    hood.unlink()
    fm.set_state({"selection": [9]})
    assert hood.center == 6


# ------------------------------------------------------------------ PatchPreview


def payload(strength: float, after: str = "x") -> dict[str, Any]:
    return {
        "prompts": ["p0", "p1"],
        "before": ["a b", "c d"],
        "after": ["a b", f"c {after}"],
        "before_tokens": [["a", " b"], ["c", " d"]],
        "after_tokens": [["a", " b"], ["c", f" {after}"]],
        "changed": [[False, False], [False, True]],
        "features": [3, 9],
        "before_acts": [[0.1, 0.2], [0.3, 0.4]],
        "after_acts": [[0.2, 0.2], [0.1, 0.9]],
        "metrics_before": {"task_loss": 2.0, "misaligned": 0.25, "incoherent": 0.1},
        "metrics_after": {"task_loss": 2.1, "misaligned": 0.05, "incoherent": float("nan")},
        "patch": {"kind": "steer", "alpha": strength},
        "strength": strength,
    }


def test_patch_preview_recompute_on_strength() -> None:
    calls: list[float] = []
    busy_seen: list[bool] = []

    def recompute(s: float) -> dict[str, Any]:
        calls.append(s)
        busy_seen.append(w.busy)
        return payload(s, after="y")

    w = PatchPreview.from_payload(payload(1.0), recompute, strength_range=(0, 4, 0.5))
    assert w.strength == 1.0 and w.strength_range == [0.0, 4.0, 0.5]
    assert w.payload["metrics_after"]["incoherent"] is None  # NaN is not valid JSON
    w.set_state({"strength": 0.5})  # the slider
    assert calls == [0.5] and busy_seen == [True]
    assert w.payload["strength"] == 0.5 and w.payload["after"][1] == "c y"
    assert w.busy is False and w.error == ""

    def failing(s: float) -> dict[str, Any]:
        raise RuntimeError("out of memory\nlong traceback text")

    bad = PatchPreview.from_payload(payload(1.0), failing)
    bad.set_state({"strength": 2.0})
    assert bad.error == "RuntimeError: out of memory"
    assert bad.payload["strength"] == 1.0 and bad.busy is False

    static = PatchPreview.from_payload(payload(1.0))
    static.set_state({"strength": 2.0})
    assert "static" in static.error
    with pytest.raises(ValueError, match="the payload lacks before, after"):
        PatchPreview.from_payload({"prompts": []})
    with pytest.raises(ValueError, match="strength_range"):
        PatchPreview.from_payload(payload(1.0), strength_range=(1, 0, 0.1))


def test_patch_preview_on_the_organism(small_subject: Subject) -> None:
    positive, negative = persona_prompts(20, seed=0)
    direction = patches.mean_difference(
        small_subject, positive, negative, "blocks.0.hook_resid_post"
    )
    patch = patches.Steer(direction, alpha=4.0)
    prompts = [positive[0], negative[1], positive[2]]
    w = PatchPreview(small_subject, patch, prompts, samples_per_prompt=2, max_new_tokens=4)
    p = w.payload
    assert p["prompts"] == prompts and p["strength"] == 4.0 and w.strength == 4.0
    assert w.strength_range == [0.0, 4.0, 0.1]  # widened to hold alpha=4
    assert p["patch"]["kind"] == "steer"
    assert any(a != b for a, b in zip(p["before"], p["after"], strict=True))
    assert set(p["metrics_before"]) >= {"task_loss", "misaligned", "incoherent"}
    w.set_state({"strength": 0.0})  # no steering: the patched answers are the plain ones
    assert w.error == "" and w.busy is False and w.payload["strength"] == 0.0
    assert w.payload["after"] == w.payload["before"] == p["before"]
    check_bundle(w)


# ------------------------------------------------------------------ static fallback


def test_mime_bundles_hold_a_png(placeholder_bundles: Path) -> None:
    W = random_decoder(200, 8)
    fm = FeatureMap(geometry.project(W), np.linspace(0, 1, 200), neighbors=geometry.neighbors(W, 4))
    fm.select([3])
    png = check_bundle(fm)
    assert fm.to_png() is png  # cached
    fm.add_column("effect", np.linspace(-1, 1, 200)).color("effect")
    assert fm.to_png() is not png  # the colour changed: drawn again

    hood = Neighborhood.from_neighborhood(hand_hood(0, [(i, 0.9 - 0.05 * i, 0.1) for i in (1, 2)]))
    check_bundle(hood)
    # the widgets ship their bundle's text as anywidget's _esm
    for widget, name in ((fm, "feature_map"), (hood, "neighborhood")):
        assert widget.get_state()["_esm"] == (placeholder_bundles / f"{name}.js").read_text()
    pp = PatchPreview.from_payload(payload(1.0))
    check_bundle(pp)
    assert "1 of 2 prompts" in pp._repr_mimebundle_()[0]["text/plain"]


def test_large_map_png_is_downsampled() -> None:
    n = 60_000
    rng = np.random.default_rng(0)
    fm = FeatureMap(rng.normal(size=(n, 2)), rng.normal(size=n), color_by="effect")
    fm.select([59_999])
    idx = downsample(n, [59_999, 5])
    assert len(idx) == MAX_POINTS and 59_999 in idx and 5 in idx
    np.testing.assert_array_equal(idx, downsample(n, [5, 59_999]))
    check_bundle(fm)


def test_radial_layout_clockwise_from_noon() -> None:
    nodes = [
        {"id": 7},
        {"id": 1, "cosine": 0.2},
        {"id": 2, "cosine": -0.9},
        {"id": 3, "cosine": 0.5},
        {"id": 4, "cosine": -0.4},
    ]
    pos = radial_layout(nodes, center=7)
    want = {7: (0, 0), 2: (0, 1), 3: (1, 0), 4: (0, -1), 1: (-1, 0)}
    for i, (x, y) in want.items():
        assert pos[i] == pytest.approx((x, y), abs=1e-12)
    # ties by id (as the front end breaks them), whatever the node order
    tied = radial_layout([{"id": 0}, {"id": 9, "cosine": -0.5}, {"id": 4, "cosine": 0.5}], 0)
    assert tied[4] == pytest.approx((0, 1)) and tied[9] == pytest.approx((0, -1))


# ------------------------------------------------------------------ missing front end


def test_missing_bundle_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_static, "STATIC_DIR", tmp_path / "nowhere")
    fix = r"npm install && npm run build"
    with pytest.raises(FrontEndNotBuiltError, match=fix) as info:
        FeatureMap(np.zeros((3, 2)))
    assert "feature_map.js" in str(info.value)
    with pytest.raises(FrontEndNotBuiltError, match=fix):
        Neighborhood.from_neighborhood(hand_hood(0, []))
    with pytest.raises(FrontEndNotBuiltError, match=fix):
        PatchPreview.from_payload(payload(1.0))
    assert isinstance(info.value, FileNotFoundError)


# ------------------------------------------------------------------ the contract (contract.json)

CONTRACT = _contract.load()
REPO = Path(__file__).resolve().parents[1]


def _widget_class(dotted: str) -> type[anywidget.AnyWidget]:
    module, name = dotted.rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name)
    assert isinstance(cls, type) and issubclass(cls, anywidget.AnyWidget)
    return cls


@pytest.mark.parametrize("key", list(CONTRACT["widgets"]))
def test_synced_traits_equal_the_contract(key: str) -> None:
    """Every synced trait (name, traitlets type, default, item type, length, enum values) is
    the one contract.json lists, and nothing else is synced: renaming, adding or retyping a
    trait on the Python side alone fails here (the TypeScript side is held to the same JSON
    by contract.test.ts)."""
    spec = CONTRACT["widgets"][key]
    cls = _widget_class(spec["python"])
    want = sorted((_contract.python_view(t) for t in spec["traits"]), key=lambda t: t["name"])
    assert _contract.describe_traits(cls) == want
    assert isinstance(cls._esm, _static.BundleESM) and f"{cls._esm.name}.js" == spec["module"]


def test_every_widget_is_in_the_contract() -> None:
    exported = {
        f"workbench.widgets.{name}"
        for name in widgets.__all__
        if isinstance(obj := getattr(widgets, name), type) and issubclass(obj, anywidget.AnyWidget)
    }
    assert exported == {spec["python"] for spec in CONTRACT["widgets"].values()}
    assert sorted(_static.BUNDLES) == sorted(CONTRACT["widgets"])


def test_binary_traits_have_the_contract_layout() -> None:
    """Bytes traits decode with the contract's dtype and shape (``"n"``: the ``n`` trait)."""
    coords = np.array([[0.0, 0.0], [4.0, 2.0], [2.0, 1.0], [1.0, 2.0], [3.0, 0.5]])
    values = np.array([0.5, np.nan, -2.0, 7.0, 1e-3])
    fm = FeatureMap(coords, values)
    decoded = {}
    for t in CONTRACT["widgets"]["feature_map"]["traits"]:
        if t["type"] != "Bytes":
            continue
        dtype = np.dtype(CONTRACT["binary"]["dtypes"][t["dtype"]])
        assert dtype.str == f"<{dtype.kind}{dtype.itemsize}"  # little-endian, as declared
        shape = [fm.n if s == "n" else s for s in t["shape"]]
        decoded[t["name"]] = np.frombuffer(getattr(fm, t["name"]), dtype=dtype).reshape(shape)
    assert set(decoded) == {"points", "values"}
    np.testing.assert_array_equal(decoded["points"], normalise_points(coords))
    np.testing.assert_array_equal(decoded["values"], values.astype(np.float32))
    assert CONTRACT["binary"]["byte_order"] == "little"


def test_records_and_messages_have_the_contract_fields(designed_dictionary: Dictionary) -> None:
    records = CONTRACT["records"]
    hood = compute_neighborhood(designed_dictionary, 0, threshold=0.3, k=16)
    w = Neighborhood.from_neighborhood(hood, dictionary=designed_dictionary)
    assert len(w.nodes) == 3 and len(w.edges) == 3
    assert all(list(node) == list(records["neighborhood_node"]) for node in w.nodes)
    assert all(list(edge) == list(records["neighborhood_edge"]) for edge in w.edges)

    assert list(PAYLOAD_KEYS) == list(records["patch_preview_payload"])
    preview_cls = typing.get_type_hints(patches.preview)["return"]
    assert [f.name for f in dataclasses.fields(preview_cls)] == list(PAYLOAD_KEYS)

    messages = CONTRACT["widgets"]["feature_map"]["messages"]
    fm = FeatureMap(np.zeros((4, 2)), np.arange(4.0), labels=list("abcd"))
    sent: list[dict[str, Any]] = []
    fm.send = lambda content, buffers=None: sent.append(content)  # type: ignore[method-assign]
    hover = {"type": "hover", "index": 2}
    assert list(hover) == list(messages["js->py"]["hover"]["fields"])
    fm._handle_custom_msg(hover, [])
    assert sent == [{"type": "card", "index": 2, "label": "c", "value": 2.0, "contexts": []}]
    assert list(sent[0]) == list(messages["py->js"]["card"]["fields"])
    for spec in CONTRACT["widgets"].values():
        assert set(spec["messages"]) <= {"js->py", "py->js"}


def test_contract_md_tables_are_generated_from_the_json() -> None:
    path = REPO / "extension" / "src" / "widgets" / "CONTRACT.md"
    text = path.read_text(encoding="utf-8")
    assert _contract.render_markdown(text) == text, (
        "CONTRACT.md's tables are stale: run .venv/bin/python -m workbench.widgets._contract"
    )
    for spec in CONTRACT["widgets"].values():
        for t in spec["traits"]:
            assert f"| `{t['name']}` |" in text


def test_widget_names_are_not_data_class_names() -> None:
    """One name per concept: the widget ``Neighborhood`` draws a ``FeatureNeighborhood``."""
    from workbench import neighborhoods

    assert not set(neighborhoods.__all__) & set(widgets.__all__)
    assert "FeatureNeighborhood" in neighborhoods.__all__
    assert widgets.Neighborhood is not neighborhoods.FeatureNeighborhood
