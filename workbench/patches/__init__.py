"""Patches: steer, ablate or orthogonalize a direction in the residual stream, selectively or
not, measure what they cut and what they keep, and move them across models.

A **direction** (:class:`Direction`) is a vector in one hook's activation space, recorded with the
hook and the fingerprint of the subject it was derived on. The ways to get one:

* :func:`mean_difference`: the mean activation over a positive prompt set minus the mean over a
  negative one (persona contexts). The raw difference is kept, not normalised, so its norm is in
  activation units and ``Steer(d, 1.0)`` moves the negative mean onto the positive one.
* :func:`from_responses`: the fine-tuned model's own judged answers, misaligned minus aligned,
  pooled over each answer's tokens (Soligo et al. 2025, *Convergent linear representations of
  emergent misalignment*, arXiv 2506.11618).
* :func:`from_features`: dictionary decoder rows of the top features of a
  :class:`workbench.features.FeatureSet`, each weighted by its signed effect size.
* :func:`derive_directions`: all of these (and the fine-tune's update, tuned minus base) at every
  layer in one call, with their cosines (:class:`DirectionSet`); :func:`select_direction`
  scores each as a patch on *selection* prompts and ranks them (:class:`Selection`);
  :func:`choose_patches` picks an audit's plain and selective patch from one such scoring
  (:class:`PatchChoice`).
* :func:`orthogonal_to`: a direction with others' components removed.
* :func:`random_direction`: a control, matched in norm, or in the projection variance of the
  activations (:func:`activation_covariance`), or variance-matched in the orthogonal complement.
* :func:`map_direction` / :func:`transfer`: a direction carried to another model through an
  affine map fitted between the two residual streams (:func:`fit_map`; Oozeer et al. 2025,
  arXiv 2503.04429), by the push-forward, the pull-back, or (an ablation) as its exact oblique
  image (:func:`map_patch`).

A **patch** applies a direction to a subject. Each is a frozen dataclass:

* :class:`Steer` adds ``alpha * direction.vector`` at one hook, at every position.
* :class:`Ablate` removes (``strength=1``) or shrinks the component along the unit direction
  ``r`` from every write to the residual stream, ``x <- x - strength * (x . r) r`` on the token
  and position embeddings and on every attention and MLP output: directional ablation
  (Arditi et al. 2024, arXiv 2406.11717); with a ``reading`` the projection is oblique.
* :class:`Orthogonalize` is the same map as a weight edit, ``W <- W - strength * (W r) r^T`` on
  every matrix and bias that writes to the residual stream. TransformerLens adds ``b_O`` once
  after summing the heads, and the map is linear, so the edit is exact.
* :class:`AblateUpdate` is selective: it removes only the fine-tune's own update along ``r``
  from the residual writers, ``W <- W_base + ΔW - strength * (ΔW r) r^T``, and leaves the base
  model's use of ``r`` alone.

Every patch has two verbs:

* ``patch.apply(subject)`` returns a **new** Subject (a deep copy of the model, edited; the base
  is untouched) whose ``recipe`` records the patch and the base fingerprint.
* ``with patch.applied(subject) as s:`` patches the caller's model in place only inside the
  block and restores it bit for bit on exit, also when the block raises.

**Measuring** (:mod:`~workbench.patches._efficacy`): :func:`patch_efficacy` reports the off-domain
EM cut beside the **retention** of the fine-tune's in-domain behaviour, the loss on its own data
and on named text sets, coherence, and random-direction controls (:data:`CONTROLS`);
:func:`tradeoff` the cut against retention over strength; :func:`transfer_efficacy` the kept
fraction of a transferred patch with random directions through the same map, the map's R² both
ways, the cosine with the target's own direction and the loss cost. :func:`preview` runs a patch
on a few prompts for the PatchPreview widget.

The package is one module per concept; import from ``workbench.patches``, not from these:
``_directions`` (directions and controls), ``_interventions`` (the patches), ``_transfer``
(maps), ``_sweep`` (derivations over layers, selection), ``_preview``, ``_efficacy``.
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
    CHOICES,
    DERIVATIONS,
    PATCH_KINDS,
    SELECTIVE_STRENGTHS,
    TRANSFERABLE,
    Candidate,
    DirectionSet,
    PatchChoice,
    Selection,
    choose_patches,
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
    "CHOICES",
    "CONTROLS",
    "DERIVATIONS",
    "PATCH_KINDS",
    "SELECTIVE_STRENGTHS",
    "SIDES",
    "SOURCES",
    "TRANSFERABLE",
    "TRANSFER_SIDES",
    "Ablate",
    "AblateUpdate",
    "Candidate",
    "Direction",
    "DirectionSet",
    "Orthogonalize",
    "Patch",
    "PatchChoice",
    "PatchEfficacy",
    "Preview",
    "ResidualMap",
    "Selection",
    "Steer",
    "TradeoffPoint",
    "TransferEfficacy",
    "activation_covariance",
    "choose_patches",
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
