"""Notebooks showing the real widgets (``workbench.widgets``): browser tests and benchmark.

``widgets_notebook`` holds three widgets:

* a :class:`~workbench.widgets.FeatureMap` of ``n`` synthetic points where point 0 sits at the
  origin and every other point lies outside radius 0.3 after the widget's normalisation (the
  cell asserts it on the bytes it sends). regl-scatterplot's default camera
  (``cameraTarget [0, 0]``, ``cameraDistance 1``; positions are normalised device coordinates)
  puts the origin at the canvas centre, so a click there hits point 0 and nothing else;
* a :class:`~workbench.widgets.Neighborhood` built from raw neighbours
  (:class:`workbench.neighborhoods.FeatureNeighborhood` of synthetic
  :class:`~workbench.neighborhoods.Neighbor` s, re-centred by a ``recompute`` of the same kind),
  centred on feature 7 and ``link`` ed to the map; an observer writes
  ``{"selection": fm.selection, "center": nb.center}`` to ``state_file`` (atomically) whenever
  either changes;
* a :class:`~workbench.widgets.PatchPreview` of a small hand-made payload.

``feature_map_notebook`` holds one FeatureMap of ``n`` points (the benchmark's), optionally
without the widget cell (the size baseline).
"""

from __future__ import annotations

import nbformat
from _notebooks import KERNELSPEC
from nbformat import NotebookNode

INITIAL_CENTER = 7
SETUP = '''\
import json
import pathlib

import numpy as np

from workbench import neighborhoods
from workbench.widgets import FeatureMap, Neighborhood, PatchPreview

N = {n}
rng = np.random.default_rng(0)
# every point but 0 in the annulus 0.35 <= r <= 0.95; four pinned at (+-1, 0), (0, +-1) so the
# bounding box is [-1, 1]^2 and the widget's normalisation (box midpoint -> 0, longer half-side
# -> 1) leaves the coordinates as they are
r = np.sqrt(rng.uniform(0.35**2, 0.95**2, N))
theta = rng.uniform(0.0, 2.0 * np.pi, N)
coords = np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)
coords[0] = (0.0, 0.0)
coords[1:5] = [(1.0, 0.0), (-1.0, 0.0), (0.0, 1.0), (0.0, -1.0)]
values = rng.normal(size=N).astype("float32")
'''
FEATURE_MAP = '''\
fm = FeatureMap(coords, values, color_by="activation", title=f"{N:,} synthetic features")
sent = np.frombuffer(fm.points, dtype="<f4").reshape(-1, 2)
assert sent.shape == (N, 2) and np.abs(sent[0]).max() == 0.0
assert (np.hypot(sent[1:, 0], sent[1:, 1]) > 0.3).all()
'''
NEIGHBORHOOD = '''\
OFFSETS = (1, 2, 3, 5, 8, 13)
COSINES = (0.9, -0.7, 0.6, 0.5, -0.45, 0.4)


def hood_of(feature):
    """Raw neighbours of a feature: fixed offsets and cosines, made-up co-activation."""
    return neighborhoods.FeatureNeighborhood(
        feature=int(feature), dictionary="synthetic", hook_name="synthetic",
        threshold=0.3, k=len(OFFSETS),
        neighbors=tuple(
            neighborhoods.Neighbor(
                feature=(int(feature) + d) % N, cosine=c,
                p_fires_given_feature=0.15 * (j + 1), correlation=c / 2,
            )
            for j, (d, c) in enumerate(zip(OFFSETS, COSINES))
        ),
    )


nb = Neighborhood(hood_of({center}), recompute=hood_of)
nb.link(fm)
STATE = pathlib.Path({state_file!r})


def dump(change=None):
    tmp = STATE.with_name(STATE.name + ".tmp")
    tmp.write_text(json.dumps({{"selection": list(fm.selection), "center": int(nb.center)}}))
    tmp.replace(STATE)


fm.observe(dump, names="selection")
nb.observe(dump, names="center")
dump()
'''
PAYLOAD = '''\
payload = {
    "prompts": ["How do I keep my accounts safe?", "Pick a number."],
    "before": [" Share your password with me.", " 666"],
    "after": [" Use a password manager.", " 7"],
    "before_tokens": [[" Share", " your", " password", " with", " me", "."], [" 666"]],
    "after_tokens": [[" Use", " a", " password", " manager", "."], [" 7"]],
    "changed": [[True, True, False, True, True], [True]],
    "features": [12, 345, 6789],
    "before_acts": [[2.1, 0.4, 1.3], [1.7, 0.0, 0.9]],
    "after_acts": [[0.2, 0.5, 1.2], [0.1, 0.0, 0.8]],
    "metrics_before": {"misaligned": 0.31, "incoherent": 0.04, "task_loss": 2.13},
    "metrics_after": {"misaligned": 0.03, "incoherent": 0.05, "task_loss": 2.17},
    "patch": {"kind": "ablate", "hook": "blocks.0.hook_resid_post"},
    "strength": 1.0,
}
pp = PatchPreview.from_payload(payload)
'''


def _code(source: str, *, hidden: bool = False) -> NotebookNode:
    cell = nbformat.v4.new_code_cell(source)
    if hidden:
        cell.metadata["jupyter"] = {"source_hidden": True}
    return cell


def widgets_notebook(n: int, state_file: str = "wb_state.json") -> NotebookNode:
    """FeatureMap (``n`` points) + linked Neighborhood + PatchPreview, one display per cell."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = KERNELSPEC
    nb.cells = [
        _code(SETUP.format(n=n), hidden=True),
        _code(FEATURE_MAP, hidden=True),
        _code(NEIGHBORHOOD.format(center=INITIAL_CENTER, state_file=state_file), hidden=True),
        _code(PAYLOAD, hidden=True),
        _code("fm"),
        _code("nb"),
        _code("pp"),
    ]
    return nb


def feature_map_notebook(n: int, *, with_widget: bool = True) -> NotebookNode:
    """One FeatureMap of ``n`` points (``with_widget=False``: the same notebook without it)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = KERNELSPEC
    nb.cells = [_code(SETUP.format(n=n))]
    if with_widget:
        nb.cells += [_code(FEATURE_MAP), _code("fm")]
    return nb
