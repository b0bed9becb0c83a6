"""FeatureMap: every feature of a dictionary as a point on a 2-D map of its decoder geometry.

The front end (``feature_map.js``, regl-scatterplot on WebGL) draws one point per feature at its
projected decoder direction (:func:`workbench.geometry.project`), coloured by a column such as
firing frequency, mean activation, feature dimensionality or a contrast's effect size. Clicking
or lasso-selecting points writes ``selection``; Python answers by setting ``highlight`` to the
selected features' decoder-cosine neighbours, and answers hover messages with a card holding the
feature's label, its colour value and its top-activating contexts. Large arrays travel as
little-endian float32 bytes (see :mod:`workbench.widgets._buffers`), so a million points stay
interactive.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
import traitlets

from workbench import geometry
from workbench.activations import FeatureStats
from workbench.dictionaries import Dictionary
from workbench.features import FeatureSet
from workbench.widgets._buffers import (
    as_index_list,
    as_numpy,
    encode_values,
    json_float,
    normalise_points,
    points_bytes,
)
from workbench.widgets._buffers import (
    value_range as robust_range,
)
from workbench.widgets._fallback import StaticFallbackWidget, feature_map_png
from workbench.widgets._static import BundleESM, bundle_path

__all__ = ["FeatureMap", "IndexRangeError"]

Colormap = Literal["viridis", "coolwarm"]
ContextSource = Callable[[int], Sequence[str]] | FeatureStats

MAX_CONTEXTS = 5
"""Top-activating contexts a hover card shows."""

SIGNED_COLUMNS = ("effect",)
"""Columns drawn with the diverging colour map when registered without ``signed=``."""


class IndexRangeError(traitlets.TraitError, ValueError):
    """A ``selection`` or ``highlight`` index outside ``[0, n)``.

    A ``ValueError``, and a ``TraitError`` so that traitlets rolls the bad value back (also
    when it arrives from the front end, inside ``set_state``) instead of notifying observers.
    """


class FeatureMap(StaticFallbackWidget):
    """A 2-D map of a dictionary's features, coloured by a per-feature column.

    Shows ``n`` points (features) at normalised 2-D coordinates, coloured by the current column
    (``color_by``; grey where the value is missing), with the selected features and their
    decoder neighbours emphasised, and a hover card per feature (label, value, up to 5
    top-activating contexts). Select in the front end (click, shift-drag lasso) or from Python
    with :meth:`select`; switch the colour column with :meth:`color`.

    Build one from raw arrays, or from a dictionary with :meth:`from_dictionary`.

    Args:
        coords: ``[n, 2]`` coordinates (numpy, torch or nested lists), e.g.
            ``workbench.geometry.project(W_dec)``; normalised into ``[-1, 1]`` with the
            aspect ratio kept.
        values: ``[n]`` colour column (NaN: missing); registered as column ``color_by``
            (``"value"`` if empty).
        color_by: the colour column's name (the legend title).
        title: shown above the plot.
        labels: ``n`` feature labels for the hover card (default ``"feature i"``).
        contexts: the hover card's contexts: a callable ``index -> list of texts`` or a
            :class:`~workbench.activations.FeatureStats` (its ``top_contexts``).
        neighbors: each feature's decoder neighbours, a
            :class:`~workbench.geometry.Neighbors` or an ``[n, k]`` integer array (``-1``:
            empty slot); selecting features highlights theirs.
        columns: more colour columns, ``name -> [n] values``.
        signed: names of columns to draw with the diverging colour map (``"coolwarm"``);
            others use ``"viridis"``. Default: :data:`SIGNED_COLUMNS`.
        point_size, height: point size and canvas height in CSS pixels.
        **kwargs: other widget traits (e.g. ``layout``).

    Raises:
        FrontEndNotBuiltError: the front end bundle is missing (the message says how to build it).
        ValueError: wrong shapes, a length that differs from ``n``, NaN coordinates, an unknown
            colour column.
    """

    _esm = BundleESM("feature_map")

    n = traitlets.Int(0, help="number of points").tag(sync=True)
    points = traitlets.Bytes(b"", help="float32[2n] x0,y0,x1,y1,... in [-1, 1]").tag(sync=True)
    values = traitlets.Bytes(b"", help="float32[n] colour column, NaN = missing").tag(sync=True)
    color_by = traitlets.Unicode("", help="name of the colour column").tag(sync=True)
    value_range = traitlets.List(
        traitlets.Float(), default_value=[0.0, 1.0], minlen=2, maxlen=2
    ).tag(sync=True)
    colormap = traitlets.Enum(("viridis", "coolwarm"), default_value="viridis").tag(sync=True)
    selection = traitlets.List(traitlets.Int(), help="selected point indices").tag(sync=True)
    highlight = traitlets.List(traitlets.Int(), help="indices to emphasise").tag(sync=True)
    point_size = traitlets.Float(3.0, help="point size in CSS px").tag(sync=True)
    height = traitlets.Int(420, help="canvas height in CSS px").tag(sync=True)
    title = traitlets.Unicode("", help="shown above the plot").tag(sync=True)

    _png_traits = (
        "points",
        "values",
        "value_range",
        "colormap",
        "color_by",
        "selection",
        "highlight",
        "title",
    )

    def __init__(
        self,
        coords: Any,
        values: Any = None,
        *,
        color_by: str = "",
        title: str = "",
        labels: Sequence[str] | None = None,
        contexts: ContextSource | None = None,
        neighbors: geometry.Neighbors | np.ndarray | torch.Tensor | None = None,
        columns: Mapping[str, Any] | None = None,
        signed: Sequence[str] | None = None,
        point_size: float = 3.0,
        height: int = 420,
        **kwargs: Any,
    ) -> None:
        bundle_path("feature_map")  # fail first, with the fix, when the front end is not built
        xy = normalise_points(coords)
        n = int(xy.shape[0])
        self._xy = xy
        self._n = n
        self._signed = set(SIGNED_COLUMNS if signed is None else signed)
        self._columns: dict[str, np.ndarray] = {}
        if values is not None:
            self._columns[color_by or "value"] = self._check_column(color_by or "value", values)
        for name, col in (columns or {}).items():
            self._columns[str(name)] = self._check_column(str(name), col)
        self._labels = self._check_labels(labels)
        if contexts is not None and not (isinstance(contexts, FeatureStats) or callable(contexts)):
            raise ValueError(
                "contexts must be a callable index -> list of texts or a FeatureStats, got "
                f"{type(contexts).__name__}"
            )
        if isinstance(contexts, FeatureStats) and contexts.d_sae != n:
            raise ValueError(
                f"contexts are FeatureStats of {contexts.d_sae} features but the map has {n} "
                "points; collect them with the same dictionary"
            )
        self._contexts = contexts
        self._neighbors = self._check_neighbors(neighbors)

        if self._columns:
            start = color_by if color_by in self._columns else next(iter(self._columns))
            if color_by and color_by not in self._columns:
                raise ValueError(
                    f"color_by={color_by!r} is not a column; columns: {', '.join(self._columns)}"
                )
            colour = self._colour_state(start)
        else:
            colour = {
                "values": encode_values(np.full(n, np.nan)),
                "value_range": [0.0, 1.0],
                "color_by": "",
                "colormap": "viridis",
            }
        super().__init__(
            n=n,
            points=points_bytes(xy),
            title=title,
            point_size=float(point_size),
            height=int(height),
            **colour,
            **kwargs,
        )
        self.on_msg(self._on_custom_msg)

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_dictionary(
        cls,
        dictionary: Dictionary,
        *,
        method: Literal["pca", "umap"] = "pca",
        columns: Mapping[str, Any] | None = None,
        color_by: str | None = None,
        stats: FeatureStats | None = None,
        features: FeatureSet | None = None,
        k: int = 8,
        labels: Sequence[str] | None = None,
        title: str | None = None,
        seed: int = 0,
        **kwargs: Any,
    ) -> FeatureMap:
        """A map of ``dictionary``'s decoder rows, with its neighbours and standard columns.

        Projects ``W_dec`` with :func:`workbench.geometry.project` (``method``, ``seed``), finds
        each feature's ``k`` decoder-cosine neighbours with :func:`workbench.geometry.neighbors`
        (for the selection's highlight) and registers the columns:

        * ``"frequency"`` and ``"mean"`` from ``stats`` (and the hover card's contexts);
        * ``"dimensionality"``: :func:`workbench.geometry.feature_dimensionality`;
        * ``"effect"`` for a ``features`` FeatureSet: its effect size per feature, NaN for the
          features not in the set (drawn with the diverging colour map);
        * any ``columns`` given (``name -> [d_sae]``).

        ``color_by`` picks the starting column (default: ``"effect"``, else ``"frequency"``,
        else ``"dimensionality"``).
        """
        bundle_path("feature_map")
        W = dictionary.W_dec.detach()
        n = int(W.shape[0])
        cols: dict[str, Any] = {}
        if stats is not None:
            if stats.dictionary != dictionary.fingerprint:
                raise ValueError(
                    "stats were collected with another dictionary (fingerprints differ); "
                    "collect them with this one: workbench.activations.collect(subject, "
                    "dictionary, prompts)"
                )
            cols["frequency"] = stats.frequency
            cols["mean"] = stats.mean
        cols["dimensionality"] = geometry.feature_dimensionality(W)
        if features is not None:
            if features.dictionary != dictionary.fingerprint:
                raise ValueError(
                    "this FeatureSet was computed with another dictionary (fingerprints differ); "
                    "recompute it with workbench.features.contrast(subject, dictionary, ...)"
                )
            effect = np.full(n, np.nan)
            effect[list(features.indices)] = np.asarray(features.effect, dtype=np.float64)
            cols["effect"] = effect
        cols.update(columns or {})
        if color_by is None:
            color_by = next(c for c in ("effect", "frequency", "dimensionality") if c in cols)
        kk = min(int(k), n - 1)
        nbrs = geometry.neighbors(W, kk) if kk >= 1 else None
        return cls(
            geometry.project(W, method=method, seed=seed),
            color_by=color_by,
            title=dictionary.name if title is None else title,
            labels=labels,
            contexts=stats,
            neighbors=nbrs,
            columns=cols,
            **kwargs,
        )

    # ------------------------------------------------------------------ columns

    @property
    def columns(self) -> list[str]:
        """Names of the colour columns, in registration order."""
        return list(self._columns)

    def column(self, name: str) -> np.ndarray:
        """A copy of colour column ``name`` (float32, NaN: missing)."""
        return self._get_column(name).copy()

    def add_column(self, name: str, values: Any, *, signed: bool | None = None) -> FeatureMap:
        """Register (or replace) colour column ``name`` (``[n]`` values); ``signed=True`` draws
        it with the diverging colour map. Returns the map; re-colours it when ``name`` is the
        current column."""
        self._columns[name] = self._check_column(name, values)
        if signed is not None:
            (self._signed.add if signed else self._signed.discard)(name)
        if name == self.color_by:
            self.color(name)
        return self

    def color(self, name: str) -> FeatureMap:
        """Colour the points by column ``name`` (sets ``values``, ``value_range``,
        ``color_by`` and ``colormap``). Returns the map."""
        state = self._colour_state(name)
        with self.hold_sync():
            for key, value in state.items():
                setattr(self, key, value)
        return self

    def select(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> FeatureMap:
        """Select these features (as a click or lasso would); their neighbours get highlighted.
        Returns the map."""
        self.selection = as_index_list(indices, "selection")
        return self

    # ------------------------------------------------------------------ internals

    def _check_column(self, name: str, values: Any) -> np.ndarray:
        v = as_numpy(values, f"column {name!r}")
        if v.ndim != 1:
            raise ValueError(
                f"column {name!r} must hold one value per feature, shape [n], got {tuple(v.shape)}"
            )
        if v.shape[0] != self._n:
            raise ValueError(
                f"column {name!r} has {v.shape[0]} values but the map has {self._n} points; "
                "pass one value per feature (NaN for missing ones)"
            )
        with np.errstate(over="ignore"):
            return v.astype(np.float32)

    def _get_column(self, name: str) -> np.ndarray:
        if name not in self._columns:
            known = ", ".join(self._columns) or "none yet"
            raise ValueError(
                f"no colour column {name!r} (columns: {known}); add it with "
                "add_column(name, values)"
            )
        return self._columns[name]

    def _colour_state(self, name: str) -> dict[str, Any]:
        v = self._get_column(name)
        return {
            "values": encode_values(v),
            "value_range": robust_range(v),
            "color_by": name,
            "colormap": "coolwarm" if name in self._signed else "viridis",
        }

    def _check_labels(self, labels: Sequence[str] | None) -> list[str] | None:
        if labels is None:
            return None
        if isinstance(labels, str):
            raise ValueError("labels must be a list of n strings, not one string")
        out = [str(s) for s in labels]
        if len(out) != self._n:
            raise ValueError(
                f"labels has {len(out)} entries but the map has {self._n} points; pass one "
                "label per feature"
            )
        return out

    def _check_neighbors(
        self, neighbors: geometry.Neighbors | np.ndarray | torch.Tensor | None
    ) -> np.ndarray | None:
        if neighbors is None:
            return None
        idx = neighbors.indices if isinstance(neighbors, geometry.Neighbors) else neighbors
        if isinstance(idx, torch.Tensor):
            idx = idx.detach().cpu().numpy()
        arr = np.asarray(idx)
        if arr.ndim != 2 or arr.shape[0] != self._n:
            raise ValueError(
                f"neighbors must be [n, k] feature indices with n={self._n}, got shape "
                f"{tuple(arr.shape)}; compute them with workbench.geometry.neighbors(W_dec, k)"
            )
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"neighbors must hold integer indices, got dtype {arr.dtype}")
        if arr.size and (arr.max() >= self._n or arr.min() < -1):
            raise ValueError(
                f"neighbors holds indices outside [0, {self._n}) (and -1 for empty slots)"
            )
        return arr.astype(np.int64)

    @traitlets.validate("selection")
    def _validate_selection(self, proposal: Any) -> list[int]:
        sel = [int(i) for i in proposal["value"]]
        bad = [i for i in sel if not 0 <= i < self._n]
        if bad:
            raise IndexRangeError(
                f"selection holds indices outside [0, {self._n}): {bad[:5]}; select feature "
                f"indices 0..{self._n - 1}"
            )
        return list(dict.fromkeys(sel))

    @traitlets.validate("highlight")
    def _validate_highlight(self, proposal: Any) -> list[int]:
        hl = [int(i) for i in proposal["value"]]
        bad = [i for i in hl if not 0 <= i < self._n]
        if bad:
            raise IndexRangeError(f"highlight holds indices outside [0, {self._n}): {bad[:5]}")
        return hl

    @traitlets.observe("selection")
    def _on_selection(self, change: Any) -> None:
        self.highlight = self.neighbours_of(change["new"])

    def neighbours_of(self, features: Sequence[int]) -> list[int]:
        """The union of these features' decoder neighbours, best first per feature, without the
        features themselves (empty when the map has no ``neighbors``)."""
        if self._neighbors is None:
            return []
        chosen = set(features)
        out: dict[int, None] = {}
        for f in features:
            for j in self._neighbors[f].tolist():
                if j >= 0 and j not in chosen:
                    out[int(j)] = None
        return list(out)

    def card(self, index: int) -> dict[str, Any]:
        """The hover card of point ``index``: ``{"type": "card", "index", "label", "value",
        "contexts"}`` (what the front end gets in reply to a hover message)."""
        if not 0 <= index < self._n:
            raise ValueError(f"index {index} outside [0, {self._n}): no such feature")
        return {**self._bare_card(index), "contexts": self._contexts_of(index)}

    def _contexts_of(self, index: int) -> list[str]:
        src = self._contexts
        if src is None:
            return []
        if isinstance(src, FeatureStats):
            texts: Sequence[str] = [c.text for c in src.top_contexts(index)]
        else:
            texts = src(index)
        return [str(t) for t in list(texts)[:MAX_CONTEXTS]]

    def _on_custom_msg(self, widget: Any, content: Any, buffers: Any) -> None:
        if not isinstance(content, dict) or content.get("type") != "hover":
            return
        index = content.get("index")
        if isinstance(index, bool) or not isinstance(index, int | float):
            return
        if not (isinstance(index, int) or float(index).is_integer()):
            return
        i = int(index)
        if not 0 <= i < self._n:
            return
        try:
            reply = self.card(i)
        except Exception as err:  # a broken context source must not kill the hover
            self.log.warning("hover card for feature %d failed: %s", i, err)
            reply = {**self._bare_card(i), "contexts": []}
        self.send(reply)

    def _bare_card(self, i: int) -> dict[str, Any]:
        value: float | None = None
        if self.color_by in self._columns:
            value = json_float(float(self._columns[self.color_by][i]))
        label = self._labels[i] if self._labels is not None else f"feature {i}"
        return {"type": "card", "index": i, "label": label, "value": value}

    # ------------------------------------------------------------------ fallback

    def _render_png(self) -> bytes:
        v = np.frombuffer(self.values, dtype="<f4") if self.values else np.full(self._n, np.nan)
        return feature_map_png(
            self._xy,
            v,
            self.value_range,
            colormap=self.colormap,
            color_by=self.color_by,
            title=self.title,
            selection=self.selection,
            highlight=self.highlight,
        )

    def _summary(self) -> str:
        colour = f", colour: {self.color_by}" if self.color_by else ""
        sel = f", selected: {self.selection[:8]}" if self.selection else ""
        more = "…" if len(self.selection) > 8 else ""
        title = f" {self.title!r}" if self.title else ""
        return f"FeatureMap{title}: {self.n} features{colour}{sel}{more}"
