"""Notebook widgets (anywidget): a feature map, a neighbourhood graph and a patch preview.

* :class:`FeatureMap`: every feature of a dictionary as a point on a 2-D projection of its
  decoder, coloured by a column (frequency, mean activation, dimensionality, effect size);
  selecting points highlights their decoder neighbours, hovering shows a card with the
  feature's top-activating contexts.
* :class:`Neighborhood`: one feature's decoder-cosine neighbours as a radial graph with
  co-activation; clicking a node re-centres on it; ``link(feature_map)`` ties it to a map.
* :class:`PatchPreview`: a patch's effect on a few prompts (answers, watched features,
  behaviour metrics) with a strength slider that recomputes it.

The front ends are ES modules built from ``extension/src/widgets/`` into
``workbench/widgets/static/`` by ``npm run build`` (wheels ship them). Without them a widget
raises :class:`FrontEndNotBuiltError` naming the fix. Every widget's MIME bundle also holds a
static PNG and a text summary for viewers that run no JavaScript.
"""

from workbench.widgets._static import FrontEndNotBuiltError
from workbench.widgets.feature_map import FeatureMap
from workbench.widgets.neighborhood import Neighborhood
from workbench.widgets.patch_preview import PatchPreview

__all__ = ["FeatureMap", "FrontEndNotBuiltError", "Neighborhood", "PatchPreview"]
