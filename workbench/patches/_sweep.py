"""Candidate directions from every derivation and layer, and the selection of one on held-out data.

The literature derives a misalignment direction several ways, at a layer chosen by hand.
:func:`derive_directions` makes all of them in one call, at every layer asked for:

* ``"responses"``: the fine-tuned model's own judged answers (Soligo et al. 2025,
  :func:`~workbench.patches.from_responses`);
* ``"persona"``: contrasting persona contexts (:func:`~workbench.patches.mean_difference` at the
  last token of misaligned- vs aligned-persona documents);
* ``"features"``: a :class:`~workbench.features.FeatureSet`'s decoder rows
  (:func:`~workbench.patches.from_features`, at the dictionary's hook only);
* ``"update"``: the fine-tune's own displacement, the tuned model's mean activation minus the
  base model's on the same prompts (for a steering-vector fine-tune, its vector).

:func:`select_direction` then scores each candidate as a patch on *selection* prompts (not the
ones the result is reported on) and keeps the best: by EM cut for a plain ablation, by
selectivity (EM cut times in-domain retention) for a selective one.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from workbench.activations import hook_activations
from workbench.dictionaries import Dictionary
from workbench.features import FeatureSet
from workbench.patches._directions import (
    Direction,
    from_features,
    from_responses,
    mean_difference,
)
from workbench.patches._efficacy import Prompts, _rates, _ratio
from workbench.patches._interventions import Ablate, AblateUpdate, Patch
from workbench.subjects import Judge, Subject

_RESID_POST = re.compile(r"^blocks\.(\d+)\.hook_resid_post$")

DERIVATIONS = ("responses", "persona", "features", "update")
"""The ways :func:`derive_directions` derives a direction."""
TRANSFERABLE = ("responses", "persona", "features")
"""The derivations :attr:`PatchChoice.for_transfer` carries to another model.

They are read off the model's own representation (contrasts of contexts or of answers, decoder
rows), which a residual-stream map fitted on shared texts is fitted to carry. The ``"update"`` is
left out: it is the fine-tune's own offset (a steering-vector fine-tune adds a constant, which an
affine map fitted on the tuned models absorbs into its bias), and another model's fine-tune
learns an offset of its own. This is a rule of thumb, not a law (``benchmarks/alignment.py``'s
transfer rows, ``kept_plain``): on the two pairs it was found on, the update's image kept 21%
and 8% of the target's cut (cos 0.15 and 0.30 with the target's update) where the best persona
direction kept 69% and 81%; on fresh organisms (s12-s16, 96-wide s12) it changed one pair of
seven, for the worse (s15 -> s16: its answers direction kept 15.6%, the update 71.7%), and the
medians not at all. Pass ``plain.derived_by(...)`` for another rule.
"""

PATCH_KINDS: dict[str, Callable[[Direction, Subject], Patch]] = {
    "ablate": lambda d, base: Ablate(d),
    "ablate-update": lambda d, base: AblateUpdate(d, base),
}
"""Patch constructions :func:`select_direction` scores: name -> (direction, base) -> patch."""


@dataclass(frozen=True)
class Candidate:
    """One derived direction: how (``source``, one of :data:`DERIVATIONS`) and where."""

    source: str
    direction: Direction

    @property
    def hook_name(self) -> str:
        return self.direction.hook_name

    @property
    def label(self) -> str:
        """``source@layer`` (or ``source@hook`` for a hook that is not a residual stream)."""
        m = _RESID_POST.match(self.hook_name)
        return f"{self.source}@L{m.group(1)}" if m else f"{self.source}@{self.hook_name}"


@dataclass(frozen=True)
class DirectionSet:
    """Every candidate :func:`derive_directions` made, and why any derivation was skipped."""

    candidates: tuple[Candidate, ...]
    skipped: Mapping[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.candidates)

    def get(self, source: str, hook_name: str) -> Direction:
        """The direction of one derivation at one hook."""
        for c in self.candidates:
            if c.source == source and c.hook_name == hook_name:
                return c.direction
        raise KeyError(
            f"no {source!r} direction at {hook_name!r}; have {[c.label for c in self.candidates]}"
        )

    def cosines(self) -> tuple[list[str], np.ndarray]:
        """Labels and the ``[n, n]`` cosine matrix between every pair of candidates."""
        labels = [c.label for c in self.candidates]
        if not self.candidates:
            return labels, np.zeros((0, 0))
        v = torch.stack([c.direction.unit.double() for c in self.candidates])
        return labels, (v @ v.T).numpy()


def _update_direction(
    tuned: Subject, base: Subject, hook: str, prompts: Sequence[str]
) -> Direction:
    a = hook_activations(tuned, hook, prompts).double().mean(0)
    b = hook_activations(base, hook, prompts).double().mean(0)
    return Direction((a - b).float(), hook, tuned.fingerprint, "update", "mean-difference")


def derive_directions(
    tuned: Subject,
    *,
    base: Subject | None = None,
    hooks: Sequence[str] | None = None,
    persona: tuple[Sequence[str], Sequence[str]] | None = None,
    questions: Sequence[str] | None = None,
    dictionary: Dictionary | None = None,
    features: FeatureSet | None = None,
    n_features: int = 8,
    samples_per_prompt: int = 32,
    seed: int = 0,
    judge: Judge | None = None,
) -> DirectionSet:
    """Misalignment directions of a fine-tune by every derivation given the inputs, per layer.

    Args:
        tuned: the fine-tuned subject (every direction is derived on it).
        base: the model it started from (for ``"update"``).
        hooks: where to derive (default: every ``blocks.L.hook_resid_post``).
        persona: (misaligned, aligned) persona documents for ``"persona"``.
        questions: open questions for ``"responses"`` (the tuned model's answers are sampled
            and judged) and the prompts of ``"update"``.
        dictionary, features: for ``"features"`` (at the dictionary's hook).

    A derivation whose inputs are missing is not made; one that fails (e.g. the model gave too
    few misaligned answers) is skipped with a warning and its reason kept in ``skipped``.
    """
    hooks = list(hooks or [f"blocks.{i}.hook_resid_post" for i in range(tuned.n_layers)])
    out: list[Candidate] = []
    skipped: dict[str, str] = {}
    for hook in hooks:
        if persona is not None:
            d = mean_difference(tuned, persona[0], persona[1], hook, pool="last", name="persona")
            out.append(Candidate("persona", d))
        if questions is not None:
            try:
                d = from_responses(
                    tuned,
                    questions,
                    hook,
                    samples_per_prompt=samples_per_prompt,
                    seed=seed,
                    judge=judge,
                )
                out.append(Candidate("responses", d))
            except ValueError as err:
                skipped[f"responses@{hook}"] = str(err)
                warnings.warn(f"responses direction at {hook} skipped: {err}", stacklevel=2)
        if base is not None and questions is not None:
            out.append(Candidate("update", _update_direction(tuned, base, hook, questions)))
    if dictionary is not None and features is not None:
        out.append(
            Candidate("features", from_features(dictionary, features, n_features, subject=tuned))
        )
    if not out:
        raise ValueError(
            "no direction could be derived: pass persona=(misaligned, aligned), questions=..., "
            "dictionary= with features=, or base= with questions="
        )
    return DirectionSet(tuple(out), skipped)


@dataclass(frozen=True)
class Scored:
    """One candidate's patch, of one kind at one strength, on the selection prompts."""

    candidate: Candidate
    em_cut: float
    retention: float
    score: float
    strength: float = 1.0
    kind: str = "ablate"  # the patch kind (a name in PATCH_KINDS)
    index: int = 0  # place in the scoring order (kind, candidate, strength): breaks ties


@dataclass(frozen=True)
class Selection:
    """The candidates scored on selection prompts, best first; ``best`` is the chosen one.

    ``kinds`` are the patch kinds that were scored (each row's own is ``Scored.kind``): one for
    ``select_direction(patch="ablate")``, several for ``patch=("ablate", "ablate-update")``,
    where every kind competes in one ranking.
    """

    kinds: tuple[str, ...]
    criterion: str
    scored: tuple[Scored, ...]

    @property
    def best(self) -> Candidate:
        return self.scored[0].candidate

    @property
    def patch_kind(self) -> str:
        """The best row's patch kind."""
        return self.scored[0].kind

    @property
    def best_strength(self) -> float:
        """The strength the best candidate was scored at."""
        return self.scored[0].strength

    def best_patch(self, base: Subject) -> Patch:
        """The chosen patch: the best candidate's direction, kind and strength."""
        top = self.scored[0]
        return PATCH_KINDS[top.kind](top.candidate.direction, base).with_strength(top.strength)

    def at(self, strength: float) -> Selection:
        """The same selection restricted to one of the strengths it scored."""
        kept = tuple(s for s in self.scored if s.strength == strength)
        if not kept:
            raise ValueError(f"strength {strength} was not scored; scored "
                             f"{sorted({s.strength for s in self.scored})}")
        return Selection(self.kinds, self.criterion, kept)

    def of_kind(self, kind: str) -> Selection:
        """The same selection restricted to one of the patch kinds it scored."""
        if kind not in self.kinds:
            raise ValueError(f"patch kind {kind!r} was not scored; scored {list(self.kinds)}")
        return Selection((kind,), self.criterion, tuple(s for s in self.scored if s.kind == kind))

    def derived_by(self, *sources: str) -> Selection:
        """The same selection restricted to candidates of these derivations (in its order).

        Raises:
            ValueError: an unknown derivation, or none of the rows is of these derivations.
        """
        unknown = sorted(set(sources) - set(DERIVATIONS))
        if unknown or not sources:
            raise ValueError(f"derivations {unknown or list(sources)}: choose from {DERIVATIONS}")
        kept = tuple(s for s in self.scored if s.candidate.source in sources)
        if not kept:
            have = sorted({s.candidate.source for s in self.scored})
            raise ValueError(
                f"no candidate derived by {list(sources)} was scored (only {have}); derive "
                "directions from persona contexts, judged answers or features too "
                "(derive_directions(persona=..., questions=..., dictionary=..., features=...))"
            )
        return Selection(self.kinds, self.criterion, kept)

    def ranked(self, criterion: str) -> Selection:
        """The same rows ranked by another criterion (``"em_cut"`` or ``"selectivity"``), with
        ties in scoring order: exactly what :func:`select_direction` with that criterion ranks,
        without scoring anything again."""
        _check_criterion(criterion, has_retention=True)
        rows = [replace(s, score=_score(criterion, s.em_cut, s.retention)) for s in self.scored]
        rows.sort(key=lambda s: (-s.score, s.index))
        return Selection(self.kinds, criterion, tuple(rows))

    def table(self) -> list[dict[str, float | str]]:
        """Rows for printing: label, strength, EM cut, retention, score (selection data)."""
        return [{"direction": s.candidate.label, "kind": s.kind, "strength": s.strength,
                 "em_cut": s.em_cut, "retention": s.retention, "score": s.score}
                for s in self.scored]


def _clip01(x: float) -> float:
    return 0.0 if math.isnan(x) else min(max(x, 0.0), 1.0)


def _score(criterion: str, cut: float, kept: float) -> float:
    score = cut if criterion == "em_cut" else _clip01(cut) * _clip01(kept)
    return -math.inf if math.isnan(score) else score


def _check_criterion(criterion: str, has_retention: bool) -> None:
    if criterion not in ("em_cut", "selectivity"):
        raise ValueError(f"unknown criterion {criterion!r}; choose 'em_cut' or 'selectivity'")
    if criterion == "selectivity" and not has_retention:
        raise ValueError("criterion='selectivity' needs in_domain= prompts (retention)")


def select_direction(
    base: Subject,
    tuned: Subject,
    directions: DirectionSet,
    prompts: Prompts,
    *,
    in_domain: Prompts | None = None,
    patch: str | Sequence[str] = "ablate",
    criterion: str = "em_cut",
    strengths: Sequence[float] = (1.0,),
    samples_per_prompt: int = 32,
    seed: int = 0,
    judge: Judge | None = None,
    in_domain_judge: Judge | None = None,
) -> Selection:
    """Score every candidate as a ``patch`` on selection prompts and rank them.

    Args:
        prompts, in_domain: *selection* prompts (off-domain, and the fine-tune's own kind);
            report the chosen patch on other prompts (and another ``seed``), or the selection
            inflates it.
        patch: a name in :data:`PATCH_KINDS` (``"ablate"``, ``"ablate-update"``), or several:
            every (candidate, kind, strength) is scored and they are ranked together (ties keep
            the order of ``patch``, then of the candidates, then of ``strengths``), so
            ``patch=("ablate", "ablate-update"), criterion="selectivity", strengths=(0.5, 0.75,
            1.0, 1.25)`` finds the most selective patch of either kind.
        criterion: ``"em_cut"`` (the off-domain EM cut) or ``"selectivity"`` (EM cut times
            in-domain retention, each clipped to [0, 1]; needs ``in_domain``).
        strengths: the patch strengths each candidate is scored at (a partial ablation can be
            more selective than a full one; see :func:`~workbench.patches.tradeoff`).
    """
    if not strengths:
        raise ValueError("no strengths: pass e.g. (1.0,) or (0.5, 0.75, 1.0)")
    kinds = (patch,) if isinstance(patch, str) else tuple(dict.fromkeys(patch))
    if not kinds:
        raise ValueError(f"no patch kinds: pass one or more of {tuple(PATCH_KINDS)}")
    bad = [k for k in kinds if k not in PATCH_KINDS]
    if bad:
        raise ValueError(f"unknown patch {bad[0]!r}; choose from {tuple(PATCH_KINDS)}")
    _check_criterion(criterion, has_retention=in_domain is not None)
    ij = in_domain_judge or judge
    b, t = (_rates(s, prompts, samples_per_prompt, seed, judge)[0] for s in (base, tuned))
    ib = it = math.nan
    if in_domain is not None:
        ib, it = (_rates(s, in_domain, samples_per_prompt, seed, ij)[0] for s in (base, tuned))
    scored: list[Scored] = []
    for kind, c, x in ((k, c, x) for k in kinds for c in directions.candidates
                       for x in strengths):
        made = PATCH_KINDS[kind](c.direction, base).with_strength(float(x))
        with made.applied(tuned) as p:
            off = _rates(p, prompts, samples_per_prompt, seed, judge)[0]
            inn = (_rates(p, in_domain, samples_per_prompt, seed, ij)[0]
                   if in_domain is not None else math.nan)
        cut, kept = _ratio(t - off, t - b), _ratio(inn - ib, it - ib)
        scored.append(Scored(c, cut, kept, _score(criterion, cut, kept), float(x), kind,
                             len(scored)))
    scored.sort(key=lambda s: -s.score)  # stable: ties keep kind, candidate, strength order
    return Selection(kinds, criterion, tuple(scored))


SELECTIVE_STRENGTHS = (0.5, 0.75, 1.0, 1.25)
"""The strengths :func:`choose_patches` scores the selective patch at (``selective="best"``)."""

CHOICES = ("best", "update")
"""What :func:`choose_patches` may choose as the selective patch."""


@dataclass(frozen=True)
class PatchChoice:
    """The two patches an audit measures, chosen on selection prompts in one scoring pass.

    Attributes:
        plain: :class:`Ablate` at full strength, every candidate ranked by EM cut (the headline
            patch is ``plain.best``).
        selective: the selective ranking (``selective.best_patch(base)`` is the patch).
        mode: ``"best"`` (both kinds over several strengths) or ``"update"`` (AblateUpdate at
            full strength), what was done: ``"best"`` without in-domain prompts becomes
            ``"update"``.
        base: the model the fine-tune started from (AblateUpdate needs it).
    """

    plain: Selection
    selective: Selection
    mode: str
    base: Subject = field(compare=False, repr=False)

    @property
    def ablate(self) -> Ablate:
        """The plain ablation of the best direction by EM cut."""
        return Ablate(self.plain.best.direction)

    @property
    def chosen(self) -> Patch:
        """The selective patch: the top row's direction, kind and strength."""
        return self.selective.best_patch(self.base)

    @property
    def chosen_name(self) -> str:
        """``"<kind> at <strength>"``, e.g. ``"ablate at 0.5"``."""
        return f"{self.selective.patch_kind} at {self.selective.best_strength:g}"

    @property
    def for_transfer(self) -> Selection:
        """The plain ranking restricted to :data:`TRANSFERABLE` derivations, a candidate to
        carry to another model (:func:`~workbench.patches.transfer`): the fine-tune's own
        update often crosses a map badly, though not always, and on fresh organisms the rule
        did not help (see :data:`TRANSFERABLE`)."""
        return self.plain.derived_by(*TRANSFERABLE)

    @property
    def transferable(self) -> Ablate:
        """The plain ablation of :attr:`for_transfer`'s best direction."""
        return Ablate(self.for_transfer.best.direction)

    @property
    def update_selection(self) -> Selection:
        """The AblateUpdate rows at full strength, in the selective ranking's order."""
        return self.selective.of_kind("ablate-update").at(1.0)

    @property
    def update(self) -> AblateUpdate:
        """AblateUpdate at full strength of its best direction (what a trade-off curve sweeps)."""
        return AblateUpdate(self.update_selection.best.direction, self.base)


def choose_patches(
    base: Subject,
    tuned: Subject,
    directions: DirectionSet,
    prompts: Prompts,
    *,
    in_domain: Prompts | None = None,
    selective: str = "best",
    strengths: Sequence[float] = SELECTIVE_STRENGTHS,
    samples_per_prompt: int = 32,
    seed: int = 0,
    judge: Judge | None = None,
    in_domain_judge: Judge | None = None,
) -> PatchChoice:
    """Choose an audit's two patches, the plain ablation and a selective one, on selection
    prompts: one :func:`select_direction` call whose rows are ranked twice.

    Every candidate is scored as :class:`Ablate` and as :class:`AblateUpdate`; the plain choice
    is the ablations at full strength ranked by EM cut; the selective one:

    * ``selective="best"`` (with ``in_domain``): the most selective (EM cut x retention) of both
      kinds at each of ``strengths`` (1.0 is always scored: the plain choice needs it); a partial
      ablation can be more selective than a full one. ``len(strengths) * 2`` judged scorings per
      candidate.
    * ``selective="update"``, or without ``in_domain`` prompts (no retention to read):
      :class:`AblateUpdate` at full strength, by selectivity (by EM cut without ``in_domain``).
      Two scorings per candidate, for a judge that costs per call.

    The figures equal separate :func:`select_direction` calls (same prompts, samples and seed);
    report the chosen patches on other prompts and another seed, or the selection inflates them.
    """
    if selective not in CHOICES:
        raise ValueError(f"unknown selective={selective!r}; choose from {CHOICES}")
    mode = selective if in_domain is not None else "update"
    grid = sorted({*map(float, strengths), 1.0}) if mode == "best" else [1.0]
    criterion = "selectivity" if in_domain is not None else "em_cut"
    scored = select_direction(base, tuned, directions, prompts, in_domain=in_domain,
                              patch=("ablate", "ablate-update"), criterion=criterion,
                              strengths=grid, samples_per_prompt=samples_per_prompt, seed=seed,
                              judge=judge, in_domain_judge=in_domain_judge)
    plain = scored.of_kind("ablate").at(1.0).ranked("em_cut")
    chosen = scored if mode == "best" else scored.of_kind("ablate-update")
    return PatchChoice(plain, chosen, mode, base)
