"""Patches: steer, ablate or orthogonalize a direction in the residual stream, and move it across
models.

A **direction** (:class:`Direction`) is a vector in one hook's activation space, recorded with the
hook and the fingerprint of the subject it was derived on. Four ways to get one:

* :func:`mean_difference`: the mean activation over a positive prompt set minus the mean over a
  negative one (Soligo et al. 2025, *Convergent linear representations of emergent
  misalignment*, arXiv 2506.11618, use exactly this as a "misalignment direction"). The raw
  difference is kept, not normalised, so its norm is in activation units and ``Steer(d, 1.0)``
  moves the negative mean onto the positive one.
* :func:`from_features`: dictionary decoder rows of the top features of a
  :class:`workbench.features.FeatureSet`, each weighted by its signed effect size.
* :func:`random_direction`: a norm-matched Gaussian control.
* :func:`map_direction` / :func:`transfer`: a direction carried to another model through an
  affine map fitted between the two residual streams (:func:`fit_map`; the idea of Oozeer et
  al. 2025, *Activation space interventions can be transferred between large language models*,
  arXiv 2503.04429).

A **patch** applies a direction to a subject. Three kinds, each a frozen dataclass:

* :class:`Steer` adds ``alpha * direction.vector`` at one hook, at every position.
* :class:`Ablate` removes (``strength=1``) or shrinks the component along the unit direction
  ``r`` from every write to the residual stream, ``x <- x - strength * (x . r) r`` on the token
  and position embeddings and on every attention and MLP output: directional ablation
  (Arditi et al. 2024, *Refusal in language models is mediated by a single direction*,
  arXiv 2406.11717).
* :class:`Orthogonalize` is the same map as a weight edit, ``W <- W - strength * (W r) r^T`` on
  every matrix and bias that writes to the residual stream (``W_E``, ``W_pos``, each block's
  ``W_O``, ``b_O``, ``W_out``, ``b_out``; in TransformerLens the residual axis is the last one).
  TransformerLens adds ``b_O`` once after summing the heads, and the map is linear, so the edit
  is exact: the orthogonalized model computes what the ablation hooks compute.

Every patch has two verbs:

* ``patch.apply(subject)`` returns a **new** Subject (a deep copy of the model, edited; the base
  is untouched) whose ``recipe`` records the patch and the base fingerprint. ``Steer`` folds its
  vector into a bias (only for ``blocks.L.hook_resid_post``), ``Ablate`` returns the
  orthogonalized weights (mathematically the same model, and a plain TransformerLens model
  with no hooks to lose on ``reset_hooks()``).
* ``with patch.applied(subject) as s:`` patches the caller's model in place only inside the
  block (hooks, or a weight edit whose originals are saved) and restores it bit for bit on exit,
  also when the block raises. It works for any hook. The yielded ``s`` shares the caller's model;
  its ``fingerprint`` is a sha256 of (base fingerprint, patch), not a weight hash.

:func:`preview` runs a patch on a few prompts and returns what a notebook widget shows
(:class:`Preview`): greedy answers before and after, which tokens changed, watched feature
activations and behaviour metrics.

The package is one module per concept; import from ``workbench.patches``, not from these:

* :mod:`~workbench.patches._directions`: :class:`Direction` and the functions that derive one;
* :mod:`~workbench.patches._interventions`: :class:`Patch`, :class:`Steer`, :class:`Ablate`,
  :class:`Orthogonalize`, and the residual-stream hook and weight-edit machinery they share;
* :mod:`~workbench.patches._transfer`: :class:`ResidualMap`, :func:`fit_map`,
  :func:`map_direction`, :func:`transfer`;
* :mod:`~workbench.patches._preview`: :class:`Preview`, :func:`preview`;
* :mod:`~workbench.patches._efficacy`: :class:`PatchEfficacy`, :func:`patch_efficacy` (EM cut,
  random-direction controls, weight edit vs hooks, task loss) and :class:`TransferEfficacy`,
  :func:`transfer_efficacy` (kept fraction of a transferred patch, with its controls).
"""

from workbench.patches._directions import (
    CONTROLS,
    SOURCES,
    Direction,
    activation_covariance,
    from_features,
    from_responses,
    mean_difference,
    orthogonal_to,
    projection_variance,
    random_direction,
)
from workbench.patches._efficacy import (
    PatchEfficacy,
    TradeoffPoint,
    TransferEfficacy,
    misaligned_rate,
    own_data_loss,
    patch_efficacy,
    task_loss,
    tradeoff,
    transfer_efficacy,
)
from workbench.patches._interventions import Ablate, AblateUpdate, Orthogonalize, Patch, Steer
from workbench.patches._interventions import P as P  # the patch TypeVar (module-level before)
from workbench.patches._preview import Preview, preview
from workbench.patches._sweep import (
    DERIVATIONS,
    PATCH_KINDS,
    Candidate,
    DirectionSet,
    Selection,
    derive_directions,
    select_direction,
)
from workbench.patches._transfer import (
    SIDES,
    TRANSFER_SIDES,
    ResidualMap,
    fit_map,
    map_direction,
    map_patch,
    patch_side,
    transfer,
)
from workbench.patches._transfer import _fit_affine as _fit_affine  # private; the tests use it

__all__ = [
    "CONTROLS",
    "DERIVATIONS",
    "PATCH_KINDS",
    "SIDES",
    "SOURCES",
    "TRANSFER_SIDES",
    "Ablate",
    "AblateUpdate",
    "Candidate",
    "Direction",
    "DirectionSet",
    "Orthogonalize",
    "Patch",
    "PatchEfficacy",
    "Preview",
    "ResidualMap",
    "Selection",
    "Steer",
    "TradeoffPoint",
    "TransferEfficacy",
    "activation_covariance",
    "derive_directions",
    "fit_map",
    "from_features",
    "from_responses",
    "map_direction",
    "map_patch",
    "mean_difference",
    "misaligned_rate",
    "orthogonal_to",
    "own_data_loss",
    "patch_efficacy",
    "patch_side",
    "preview",
    "projection_variance",
    "random_direction",
    "select_direction",
    "task_loss",
    "tradeoff",
    "transfer",
    "transfer_efficacy",
]
