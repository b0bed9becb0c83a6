"""Neighborhood: one feature's superposition neighbours as a radial graph.

The front end (``neighborhood.js``, SVG) puts the centre feature in the middle and its
decoder-cosine neighbours (:func:`workbench.neighborhoods.neighborhood`) on a circle, ordered by
``|cosine|`` from 12 o'clock clockwise. Edges carry the decoder cosine (width by ``|cosine|``,
blue when positive, orange and dashed when negative); node size grows with co-activation,
P(neighbour fires | centre fires). Neighbour-neighbour edges are drawn where their own decoder
cosine passes a threshold. Clicking a node re-centres the graph on it (Python recomputes the
neighbourhood), and :meth:`Neighborhood.link` ties it to a :class:`~workbench.widgets.FeatureMap`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
import traitlets

from workbench import neighborhoods
from workbench.activations import FeatureStats
from workbench.dictionaries import Dictionary
from workbench.subjects import Subject
from workbench.widgets._buffers import as_numpy, json_float, one_line
from workbench.widgets._fallback import StaticFallbackWidget, neighborhood_png
from workbench.widgets._static import BundleESM, bundle_path
from workbench.widgets.feature_map import FeatureMap

__all__ = ["Neighborhood", "build_graph"]

Recompute = Callable[[int], neighborhoods.FeatureNeighborhood]
Labels = Sequence[str] | Callable[[int], str]


def _label(labels: Labels | None, i: int) -> str:
    if labels is None:
        return f"feature {i}"
    if callable(labels):
        return str(labels(i))
    return str(labels[i]) if 0 <= i < len(labels) else f"feature {i}"


def build_graph(
    hood: neighborhoods.FeatureNeighborhood,
    *,
    dictionary: Dictionary | None = None,
    edge_threshold: float = 0.3,
    labels: Labels | None = None,
    values: Any = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The ``nodes`` and ``edges`` of the widget contract for one neighbourhood.

    Nodes: the centre first (``cosine`` and ``coactivation`` null), then the neighbours in the
    neighbourhood's rank order, with ``cosine`` = decoder cosine to the centre (sign kept),
    ``coactivation`` = P(neighbour fires | centre fires) (null without co-activation data) and
    ``value`` = ``values[id]`` when a per-feature column is given, else the neighbour's Pearson
    correlation with the centre (null for the centre and when unmeasured).

    Edges: centre -> every neighbour with its cosine, then, with a ``dictionary``, every pair of
    neighbours (in node order) whose decoder rows have ``|cosine| >= edge_threshold``.
    """
    column = None if values is None else as_numpy(values, "values").ravel()

    def value(i: int, fallback: float | None) -> float | None:
        if column is None:
            return json_float(fallback)
        return json_float(float(column[i])) if 0 <= i < column.shape[0] else None

    c = int(hood.feature)
    nodes: list[dict[str, Any]] = [
        {
            "id": c,
            "label": _label(labels, c),
            "cosine": None,
            "coactivation": None,
            "value": value(c, None),
        }
    ]
    edges: list[dict[str, Any]] = []
    for nb in hood.neighbors:
        i = int(nb.feature)
        nodes.append(
            {
                "id": i,
                "label": _label(labels, i),
                "cosine": json_float(nb.cosine),
                "coactivation": json_float(nb.p_fires_given_feature),
                "value": value(i, nb.correlation),
            }
        )
        edges.append({"source": c, "target": i, "cosine": float(nb.cosine)})
    ids = [int(nb.feature) for nb in hood.neighbors]
    if dictionary is not None and len(ids) > 1:
        W = dictionary.W_dec.detach()[ids].to("cpu", torch.float64)
        norms = W.norm(dim=1, keepdim=True)
        U = torch.where(norms > 0, W / norms.clamp_min(1e-300), 0.0)
        cos = (U @ U.T).numpy()
        a, b = np.triu_indices(len(ids), k=1)
        for p, q in zip(a.tolist(), b.tolist(), strict=True):
            if abs(cos[p, q]) >= edge_threshold:
                edges.append({"source": ids[p], "target": ids[q], "cosine": float(cos[p, q])})
    return nodes, edges


class Neighborhood(StaticFallbackWidget):
    """A radial graph of one feature's decoder-cosine neighbours and their co-activation.

    Shows the centre feature in the middle and its neighbours around it (ordered by
    ``|cosine|``, from 12 o'clock clockwise), edges coloured by the cosine's sign and sized by
    its magnitude, nodes sized by co-activation. Clicking a node sets ``selection = [id]``,
    which re-centres the graph on that feature through ``recompute`` (or, without one, a
    geometry-only :func:`workbench.neighborhoods.neighborhood` on ``dictionary``).

    Args:
        hood: the neighbourhood to show (:func:`workbench.neighborhoods.neighborhood`).
        recompute: ``feature -> FeatureNeighborhood`` for re-centring.
        dictionary: adds neighbour-neighbour edges (``|cosine| >= edge_threshold``), and
            re-centres without ``recompute``.
        edge_threshold: the ``|cosine|`` a neighbour-neighbour edge needs.
        labels: feature labels (a sequence indexed by feature, or a callable).
        values: a per-feature column (``[d_sae]``) for the nodes' ``value``; default: the
            neighbour's correlation with the centre.
        title: shown above the graph (default: ``"neighbourhood of feature <centre>"``,
            updated on re-centring).
        height: SVG height in CSS pixels.

    A re-centring asked for by the front end (a click, or a linked map) that fails leaves the
    graph as it was, logs the error and keeps it in ``last_error`` (``"Type: message"``).

    Raises:
        FrontEndNotBuiltError: the front end bundle is missing (the message says how to build it).
    """

    _esm = BundleESM("neighborhood")

    center = traitlets.Int(0, help="the centre feature").tag(sync=True)
    nodes = traitlets.List(traitlets.Dict(), help="graph nodes").tag(sync=True)
    edges = traitlets.List(traitlets.Dict(), help="graph edges").tag(sync=True)
    selection = traitlets.List(traitlets.Int(), help="[id] of a clicked node").tag(sync=True)
    height = traitlets.Int(360, help="SVG height in CSS px").tag(sync=True)
    title = traitlets.Unicode("", help="shown above the graph").tag(sync=True)

    _png_traits = ("center", "nodes", "edges", "title")

    def __init__(
        self,
        hood: neighborhoods.FeatureNeighborhood,
        *,
        recompute: Recompute | None = None,
        dictionary: Dictionary | None = None,
        edge_threshold: float = 0.3,
        labels: Labels | None = None,
        values: Any = None,
        title: str | None = None,
        height: int = 360,
        **kwargs: Any,
    ) -> None:
        bundle_path("neighborhood")
        if not isinstance(hood, neighborhoods.FeatureNeighborhood):
            raise ValueError(
                "hood must be a workbench.neighborhoods.FeatureNeighborhood (from "
                f"workbench.neighborhoods.neighborhood(...)), got {type(hood).__name__}"
            )
        if not 0 <= edge_threshold <= 1:
            raise ValueError(f"edge_threshold is a |cosine| in [0, 1] (got {edge_threshold})")
        self._recompute = recompute
        self._dictionary = dictionary
        self._edge_threshold = float(edge_threshold)
        self._labels = labels
        self._values = values
        self._auto_title = title is None
        self._busy = False  # re-centring: ignore our own selection writes
        self._linking = False  # propagating through link(): ignore echoes
        self._link_handles: list[tuple[FeatureMap, Callable[..., None], Callable[..., None]]] = []
        self.hood = hood
        self.last_error = ""
        nodes, edges = self._graph(hood)
        super().__init__(
            center=int(hood.feature),
            nodes=nodes,
            edges=edges,
            selection=[int(hood.feature)],
            title=self._title_for(hood.feature) if title is None else title,
            height=int(height),
            **kwargs,
        )

    @classmethod
    def from_neighborhood(
        cls,
        hood: neighborhoods.FeatureNeighborhood,
        *,
        recompute: Recompute | None = None,
        dictionary: Dictionary | None = None,
        edge_threshold: float = 0.3,
        **kwargs: Any,
    ) -> Neighborhood:
        """The widget for ``hood`` (same as the constructor); see :class:`Neighborhood`."""
        return cls(
            hood,
            recompute=recompute,
            dictionary=dictionary,
            edge_threshold=edge_threshold,
            **kwargs,
        )

    @classmethod
    def for_feature(
        cls,
        dictionary: Dictionary,
        feature: int,
        *,
        subject: Subject | None = None,
        prompts: Sequence[str] | None = None,
        stats: FeatureStats | None = None,
        k: int = 16,
        threshold: float = 0.3,
        edge_threshold: float = 0.3,
        **kwargs: Any,
    ) -> Neighborhood:
        """The neighbourhood of ``feature`` in ``dictionary``, re-centred the same way on clicks.

        Calls :func:`workbench.neighborhoods.neighborhood` (``threshold``, ``k``; co-activation
        from ``subject`` and ``prompts``, or from ``stats`` collected with ``keep_dense=True``)
        and uses the same call for every re-centring.
        """
        bundle_path("neighborhood")

        def recompute(f: int) -> neighborhoods.FeatureNeighborhood:
            return neighborhoods.neighborhood(
                dictionary,
                f,
                threshold=threshold,
                k=k,
                prompts=prompts,
                subject=subject,
                stats=stats,
            )

        return cls(
            recompute(int(feature)),
            recompute=recompute,
            dictionary=dictionary,
            edge_threshold=edge_threshold,
            **kwargs,
        )

    # ------------------------------------------------------------------ re-centring

    def _graph(
        self, hood: neighborhoods.FeatureNeighborhood
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return build_graph(
            hood,
            dictionary=self._dictionary,
            edge_threshold=self._edge_threshold,
            labels=self._labels,
            values=self._values,
        )

    @staticmethod
    def _title_for(feature: int) -> str:
        return f"neighbourhood of feature {feature}"

    def _neighborhood_of(self, feature: int) -> neighborhoods.FeatureNeighborhood:
        if self._recompute is not None:
            return self._recompute(feature)
        if self._dictionary is not None:
            return neighborhoods.neighborhood(
                self._dictionary, feature, threshold=self.hood.threshold, k=self.hood.k
            )
        raise ValueError(
            "this Neighborhood cannot re-centre: build it with recompute= (feature -> "
            "FeatureNeighborhood) or dictionary=, or use "
            "Neighborhood.for_feature(dictionary, feature)"
        )

    def recenter(self, feature: int) -> Neighborhood:
        """Show the neighbourhood of ``feature`` (recomputed); returns the widget.

        Raises:
            ValueError: no ``recompute`` callback nor dictionary to recompute with, or what the
                callback raises.
        """
        feature = int(feature)
        if feature == self.center:
            return self
        hood = self._neighborhood_of(feature)
        nodes, edges = self._graph(hood)
        self.hood = hood
        self.last_error = ""
        self._busy = True
        try:
            with self.hold_sync():
                self.center = int(hood.feature)
                self.nodes = nodes
                self.edges = edges
                self.selection = [int(hood.feature)]
                if self._auto_title:
                    self.title = self._title_for(hood.feature)
        finally:
            self._busy = False
        return self

    @traitlets.observe("selection")
    def _on_selection(self, change: Any) -> None:
        if self._busy:
            return
        sel = list(change["new"])
        if len(sel) != 1 or sel[0] == self.center:
            return
        self._try_recenter(sel[0])

    def _try_recenter(self, feature: int) -> None:
        """Re-centre for an event from the front end: a failure is logged and kept in
        :attr:`last_error`, and the old graph stays."""
        try:
            self.recenter(feature)
        except Exception as err:
            self.last_error = one_line(err)
            self.log.error("could not re-centre on feature %s: %s", feature, err)

    # ------------------------------------------------------------------ linking

    @contextlib.contextmanager
    def _propagating(self) -> Iterator[None]:
        self._linking = True
        try:
            yield
        finally:
            self._linking = False

    def link(self, feature_map: FeatureMap) -> Neighborhood:
        """Tie this graph to a FeatureMap of the same dictionary; returns the widget.

        Selecting exactly one feature in the map re-centres this graph on it; clicking a node
        here selects that feature in the map (``feature_map.selection = [id]``, which also
        highlights its neighbours there). Each side's update is not echoed back.
        """
        if not isinstance(feature_map, FeatureMap):
            raise ValueError(f"link() takes a FeatureMap, got {type(feature_map).__name__}")

        def from_map(change: Any) -> None:
            sel = list(change["new"])
            if self._linking or len(sel) != 1:
                return
            with self._propagating():
                self._try_recenter(sel[0])

        def from_graph(change: Any) -> None:
            sel = list(change["new"])
            if self._linking or self._busy or len(sel) != 1:
                return
            if list(feature_map.selection) == sel:
                return
            with self._propagating():
                try:
                    feature_map.selection = sel
                except ValueError as err:  # a feature the map does not have
                    self.last_error = one_line(err)
                    self.log.error("could not select feature %s in the map: %s", sel[0], err)

        feature_map.observe(from_map, names="selection")
        self.observe(from_graph, names="selection")
        self._link_handles.append((feature_map, from_map, from_graph))
        return self

    def unlink(self) -> Neighborhood:
        """Undo every :meth:`link`; returns the widget."""
        for fm, from_map, from_graph in self._link_handles:
            fm.unobserve(from_map, names="selection")
            self.unobserve(from_graph, names="selection")
        self._link_handles.clear()
        return self

    # ------------------------------------------------------------------ fallback

    def _render_png(self) -> bytes:
        return neighborhood_png(self.nodes, self.edges, self.center, title=self.title)

    def _summary(self) -> str:
        return (
            f"Neighborhood of feature {self.center}: {max(len(self.nodes) - 1, 0)} neighbours, "
            f"{len(self.edges)} edges"
        )
