"""Static fallback: a PNG in every widget's MIME bundle, for viewers that run no JavaScript.

A live notebook renders ``application/vnd.jupyter.widget-view+json``; GitHub's notebook viewer,
``nbconvert`` without saved widget state and plain terminals do not, and fall back to the next
MIME type they understand. :class:`StaticFallbackWidget` adds an ``image/png`` (drawn with
Altair and rendered by ``vl-convert``, no browser) and a short ``text/plain`` to anywidget's
bundle. The PNG is cached until one of the traits it depends on changes.

Renderers: :func:`feature_map_png` (scatter coloured by a column), :func:`neighborhood_png`
(the radial layout of :func:`radial_layout`, the same the front end draws) and
:func:`patch_preview_png` (metrics before/after as grouped bars).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import anywidget
import numpy as np

__all__ = [
    "PNG_HEIGHT",
    "PNG_WIDTH",
    "StaticFallbackWidget",
    "feature_map_png",
    "neighborhood_png",
    "patch_preview_png",
    "radial_layout",
]

PNG_WIDTH = 480
"""Width of the fallback image in pixels (the whole image, legend and axes included)."""

PNG_HEIGHT = 360
"""Height of the fallback image in pixels."""

SQUARE_SIDE = 320
"""Side of the square plot area of the map images (legend and title come on top)."""

MAX_POINTS = 8_000
"""At most this many points are drawn in a FeatureMap's fallback image."""

CRISP_POINTS = 5_000
"""From this many points on, a FeatureMap's image is drawn without anti-aliasing (smaller)."""

_PNG_MIME = "image/png"
_NAN_GREY = "#bdbdbd"
_POSITIVE = "#1976d2"
_NEGATIVE = "#e65100"


class StaticFallbackWidget(anywidget.AnyWidget):
    """An anywidget whose MIME bundle also holds a static PNG and a one-line text summary.

    Subclasses list the traits the image depends on in ``_png_traits`` and implement
    :meth:`_render_png` and :meth:`_summary`.
    """

    _png_traits: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **kwargs: Any) -> None:
        self._png_cache: bytes | None = None
        super().__init__(**kwargs)
        if self._png_traits:
            self.observe(self._drop_png, names=list(self._png_traits))

    def _drop_png(self, change: Any = None) -> None:
        self._png_cache = None

    def _render_png(self) -> bytes:
        raise NotImplementedError

    def _summary(self) -> str:
        return type(self).__name__

    def to_png(self) -> bytes:
        """The static image of the widget's current state (PNG bytes, cached)."""
        if self._png_cache is None:
            self._png_cache = self._render_png()
        return self._png_cache

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]] | None:
        out = super()._repr_mimebundle_(**kwargs)
        if out is None:  # pragma: no cover - anywidget returns None only without a view
            return None
        data, metadata = out
        data = dict(data)
        data["text/plain"] = self._summary()
        exclude = kwargs.get("exclude") or ()
        include = kwargs.get("include")
        if _PNG_MIME not in exclude and (include is None or _PNG_MIME in include):
            try:
                data[_PNG_MIME] = self.to_png()
            except Exception as err:  # a display must never fail because of its fallback
                self.log.warning("no static PNG for %s: %s", type(self).__name__, err)
        return data, dict(metadata)


# ------------------------------------------------------------------ rendering


def _to_png(
    chart: Any,
    *,
    datasets: Mapping[str, list[dict[str, Any]]] | None = None,
    crisp: bool = False,
    validate: bool = True,
) -> bytes:
    """Render an Altair chart to PNG with vl-convert (no browser).

    ``crisp`` renders shapes without anti-aliasing (SVG ``shape-rendering="crispEdges"``; text
    stays smooth): thousands of small anti-aliased points make a PNG that compresses badly
    (about 180 KB for 20,000 points at 480x360), crisp ones about a quarter less.
    ``datasets`` are the rows of the charts' ``alt.NamedData`` sources, added to the spec
    after Altair is done with it (Altair's own handling of 20,000 inline rows takes seconds).
    """
    import vl_convert

    spec = chart.to_dict(validate=validate)
    if datasets:
        spec["datasets"] = {**spec.get("datasets", {}), **datasets}
    if not crisp:
        return bytes(vl_convert.vegalite_to_png(spec, scale=1))
    svg = vl_convert.vegalite_to_svg(spec)
    svg = svg.replace("<svg ", '<svg shape-rendering="crispEdges" ', 1)
    return bytes(vl_convert.svg_to_png(svg, scale=1))


def _base_properties(title: str, *, square: bool = False) -> dict[str, Any]:
    """Chart size: the whole image fits ``PNG_WIDTH x PNG_HEIGHT``; ``square`` charts (maps,
    where both axes share a scale) get a square plot area instead, so circles stay round."""
    props: dict[str, Any] = (
        {"width": SQUARE_SIDE, "height": SQUARE_SIDE}
        if square
        else {
            "width": PNG_WIDTH,
            "height": PNG_HEIGHT,
            "autosize": {"type": "fit", "contains": "padding"},
        }
    )
    if title:
        props["title"] = title
    return props


def downsample(n: int, keep: Sequence[int], limit: int = MAX_POINTS, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most ``limit`` of ``n`` points: every index in ``keep`` (up to
    ``limit`` of them) plus a fixed pseudo-random sample of the rest (same input, same sample)."""
    if n <= limit:
        return np.arange(n)
    kept = np.unique(np.asarray([i for i in keep if 0 <= i < n], dtype=np.int64))[:limit]
    rest = np.setdiff1d(np.arange(n), kept, assume_unique=True)
    extra = np.random.default_rng(seed).choice(rest, size=limit - kept.size, replace=False)
    return np.sort(np.concatenate([kept, extra]))


def feature_map_png(
    points: np.ndarray,
    values: np.ndarray,
    value_range: Sequence[float],
    *,
    colormap: str = "viridis",
    color_by: str = "",
    title: str = "",
    selection: Sequence[int] = (),
    highlight: Sequence[int] = (),
) -> bytes:
    """A scatter of normalised ``[n, 2]`` points coloured by ``values`` (NaN: grey), with the
    selection ringed in black and the highlighted points in orange; at most :data:`MAX_POINTS`
    points are drawn (selected and highlighted ones always)."""
    import altair as alt

    n = points.shape[0]
    idx = downsample(n, [*selection, *highlight])
    sel, hl = set(selection), set(highlight) - set(selection)
    rows = [
        {
            "i": int(i),
            "x": round(float(points[i, 0]), 4),
            "y": round(float(points[i, 1]), 4),
            "v": float(values[i]) if math.isfinite(float(values[i])) else None,
        }
        for i in idx.tolist()
    ]
    present = [r for r in rows if r["v"] is not None]
    missing = [r for r in rows if r["v"] is None]
    lo, hi = float(value_range[0]), float(value_range[1])
    many = len(rows) >= CRISP_POINTS
    size = 6 if many else 12 if len(rows) > 2000 else 24
    x = alt.X("x:Q", scale=alt.Scale(domain=[-1.05, 1.05]), axis=None)
    y = alt.Y("y:Q", scale=alt.Scale(domain=[-1.05, 1.05]), axis=None)
    scheme = (
        alt.Scale(scheme="redblue", reverse=True, domain=[lo, hi], clamp=True)
        if colormap == "coolwarm"
        else alt.Scale(scheme="viridis", domain=[lo, hi], clamp=True)
    )
    layers: list[Any] = []
    if missing:
        layers.append(
            alt.Chart(alt.NamedData(name="missing"))
            .mark_circle(size=size, opacity=1.0 if many else 0.6, color=_NAN_GREY)
            .encode(x=x, y=y)
        )
    if present:
        layers.append(
            alt.Chart(alt.NamedData(name="present"))
            .mark_circle(size=size, opacity=1.0 if many else 0.8)
            .encode(x=x, y=y, color=alt.Color("v:Q", scale=scheme, title=color_by or "value"))
        )
    for group, colour in ((hl, "#ff9800"), (sel, "#000000")):
        marked = [r for r in rows if r["i"] in group]
        if marked:
            layers.append(
                alt.Chart(alt.NamedData(name="marked_" + colour[1:]))
                .mark_circle(size=90, filled=False, strokeWidth=1.5, color=colour)
                .encode(x=x, y=y)
            )
    if not layers:  # no points at all: an empty frame
        layers.append(alt.Chart(alt.Data(values=[{"x": 0.0, "y": 0.0}])).mark_point(opacity=0))
    chart = (
        alt.layer(*layers)
        .properties(**_base_properties(title, square=True))
        .configure_view(stroke=None)
    )
    datasets = {"missing": missing, "present": present}
    for group, colour in ((hl, "#ff9800"), (sel, "#000000")):
        datasets["marked_" + colour[1:]] = [r for r in rows if r["i"] in group]
    return _to_png(chart, datasets=datasets, crisp=many)


def radial_layout(
    nodes: Sequence[Mapping[str, Any]], center: int, radius: float = 1.0
) -> dict[int, tuple[float, float]]:
    """Positions of a Neighborhood's nodes, the layout its front end draws.

    The centre node sits at the origin; the others on a circle of ``radius``, ordered by
    ``|cosine|`` descending (ties: lower id first; a null cosine counts as 0), the first at
    12 o'clock and the rest clockwise at equal angles. Coordinates are mathematical (``y`` up):
    the node at angle ``θ`` (clockwise from 12 o'clock) is at ``(r sin θ, r cos θ)``; on a
    screen with ``y`` down that is ``(cx + r sin θ, cy - r cos θ)``.
    """
    weights: dict[int, float] = {}
    for nd in nodes:
        i = int(nd["id"])
        if i == center or i in weights:
            continue
        c = nd.get("cosine")
        weights[i] = abs(float(c)) if c is not None and math.isfinite(float(c)) else 0.0
    ranked = sorted(weights, key=lambda i: (-weights[i], i))
    out: dict[int, tuple[float, float]] = {center: (0.0, 0.0)}
    for slot, i in enumerate(ranked):
        theta = 2.0 * math.pi * slot / len(ranked)
        out[i] = (radius * math.sin(theta), radius * math.cos(theta))
    return out


def neighborhood_png(
    nodes: Sequence[Mapping[str, Any]],
    edges: Sequence[Mapping[str, Any]],
    center: int,
    *,
    title: str = "",
) -> bytes:
    """The radial layout as points (size by co-activation) joined by rules (width by |cosine|,
    blue positive, orange dashed negative), every node labelled with its id."""
    import altair as alt

    pos = radial_layout(nodes, center)
    edge_rows = []
    for e in edges:
        s, t = int(e["source"]), int(e["target"])
        if s not in pos or t not in pos:
            continue
        c = float(e.get("cosine") or 0.0)
        edge_rows.append(
            {
                "x": pos[s][0],
                "y": pos[s][1],
                "x2": pos[t][0],
                "y2": pos[t][1],
                "w": 0.5 + 3.5 * min(abs(c), 1.0),
                "sign": "positive" if c >= 0 else "negative",
            }
        )
    node_rows = []
    for nd in nodes:
        i = int(nd["id"])
        co = nd.get("coactivation")
        node_rows.append(
            {
                "x": pos[i][0],
                "y": pos[i][1],
                "id": str(i),
                "size": 250.0
                if i == center
                else 120.0 + 600.0 * float(co)
                if co is not None
                else 80.0,
                "centre": "centre" if i == center else "neighbour",
            }
        )
    domain = [-1.3, 1.3]
    x = alt.X("x:Q", scale=alt.Scale(domain=domain), axis=None)
    y = alt.Y("y:Q", scale=alt.Scale(domain=domain), axis=None)
    layers: list[Any] = []
    for sign, colour, dash in (("positive", _POSITIVE, [1, 0]), ("negative", _NEGATIVE, [5, 3])):
        signed = [r for r in edge_rows if r["sign"] == sign]
        if signed:
            layers.append(
                alt.Chart(alt.Data(values=signed))
                .mark_rule(opacity=0.7, color=colour, strokeDash=dash)
                .encode(
                    x=x,
                    y=y,
                    x2="x2:Q",
                    y2="y2:Q",
                    strokeWidth=alt.StrokeWidth("w:Q", scale=None, legend=None),
                )
            )
    for role, colour in (("neighbour", "#90caf9"), ("centre", "#424242")):
        group = [r for r in node_rows if r["centre"] == role]
        if group:
            layers.append(
                alt.Chart(alt.Data(values=group))
                .mark_circle(opacity=1.0, color=colour, stroke="#ffffff", strokeWidth=1)
                .encode(x=x, y=y, size=alt.Size("size:Q", scale=None, legend=None))
            )
    layers.append(
        alt.Chart(alt.Data(values=node_rows))
        .mark_text(dy=-14, fontSize=10, color="#222222")
        .encode(x=x, y=y, text="id:N")
    )
    chart = (
        alt.layer(*layers)
        .properties(**_base_properties(title, square=True))
        .configure_view(stroke=None)
    )
    return _to_png(chart)


def patch_preview_png(payload: Mapping[str, Any], *, title: str = "") -> bytes:
    """Grouped bars: every metric of a patch preview before and after the patch."""
    import altair as alt

    before = payload.get("metrics_before") or {}
    after = payload.get("metrics_after") or {}
    rows = []
    for name in [*before, *(k for k in after if k not in before)]:
        for when, metrics in (("before", before), ("after", after)):
            v = metrics.get(name)
            if v is not None and math.isfinite(float(v)):
                rows.append({"metric": str(name), "when": when, "value": float(v)})
    if not title:
        kind = (payload.get("patch") or {}).get("kind", "patch")
        title = f"{kind} at strength {payload.get('strength', float('nan')):.3g}"
    chart = (
        alt.Chart(alt.Data(values=rows or [{"metric": "", "when": "before", "value": 0.0}]))
        .mark_bar()
        .encode(
            x=alt.X("metric:N", title=None, axis=alt.Axis(labelAngle=0)),
            xOffset=alt.XOffset("when:N", sort=["before", "after"]),
            y=alt.Y("value:Q", title=None),
            color=alt.Color(
                "when:N",
                scale=alt.Scale(domain=["before", "after"], range=["#9e9e9e", _POSITIVE]),
                title=None,
            ),
        )
        .properties(**_base_properties(title))
    )
    return _to_png(chart)
