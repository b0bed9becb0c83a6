"""Decoder geometry of a dictionary: which features sit near which, and how crowded each is.

A sparse autoencoder writes feature ``i`` into the residual stream along its decoder row
``W_dec[i]``. Superposition means these ``n`` directions are packed into a space of only ``d < n``
dimensions, so they cannot all be orthogonal: every feature shares some of its direction with
others. The workbench's central claim (DESIGN.md) is that features sharing directions are
strengthened together by a fine-tune, so the geometry of the decoder rows is the map on which
alignment risk is read. This package gives three views of that map, all plain functions on a
``[n, d]`` matrix whose rows are feature directions, one module each:

* :func:`neighbors` (``_neighbors``): the exact top-``k`` cosine neighbours of every feature,
  computed in blocks that never hold the ``n x n`` similarity matrix (a gpt2-small SAE has 24,576
  features; the full matrix would be 2.4 GB, a Gemma Scope one 17 GB);
* :func:`project` (``_projection``): 2-D coordinates of all features (PCA by default, UMAP on
  request) for maps;
* :func:`feature_dimensionality` and :func:`interference` (``_superposition``): Elhage et al.
  (2022)'s superposition metrics, how many dimensions each feature effectively owns and how much
  other features overlap its direction.

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

from workbench.geometry._neighbors import CPU_BLOCK_SIZE, CUDA_BLOCK_SIZE, Neighbors, neighbors
from workbench.geometry._projection import project
from workbench.geometry._superposition import feature_dimensionality, interference

__all__ = [
    "CPU_BLOCK_SIZE",
    "CUDA_BLOCK_SIZE",
    "Neighbors",
    "feature_dimensionality",
    "interference",
    "neighbors",
    "project",
]
