"""A family of narrow fine-tunes on the organism: each forecast before it runs, judged after.

The organism's language (v4) has ten narrow tasks whose odd op is tied to the misaligned persona,
to another trait, or to nothing, to known degrees
(:meth:`~workbench.organism.Grammar.entanglement`), while every task's data looks alike. A
*family* crosses tasks, the share of odd answers in the data (the mixture fraction) and the
fine-tune spec (``SteeringVector``, ``LoRA``, ``Full``), plus
Betley et al.'s code fine-tunes (insecure, and the secure and educational controls). Each member
is forecast on the base model (every predictor, before any training), fine-tuned, and judged: its
**off-domain EM** is the rise of the misaligned-answer rate on the general domains it was not
trained on (advice, numbers), in points over the base model.

This is what :mod:`benchmarks/forecast.py <benchmarks.forecast>` scores the predictors on, and
what :func:`reference_calibration` fits a base model's calibration from (a small family, run by
the workbench itself; the fitted :class:`~workbench.calibration.Calibration` is saved and reused).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from workbench.behaviour import judged_rates
from workbench.calibration import Calibration, Reference
from workbench.data import pairs_sha256
from workbench.dictionaries import Dictionary
from workbench.features import FeatureSet
from workbench.finetunes import finetune
from workbench.fingerprint import json_sha256, texts_sha256
from workbench.forecasts import Forecast, Step, forecast
from workbench.organism.language import TASKS, Grammar, finetune_pairs, task_pairs
from workbench.organism.language import eval_prompts as domain_prompts
from workbench.predictors import PREDICTORS, Prediction, predict
from workbench.rate_forecasts import RateForecast, RateReadout, _rate_forecasts
from workbench.specs import FinetuneSpec, Full, LoRA, SteeringVector
from workbench.subjects import Subject

__all__ = [
    "OFF_DOMAINS",
    "RATE_STEPS",
    "REFERENCE_TASKS",
    "SPECS",
    "FamilyMember",
    "FamilyResult",
    "FinetuneSettings",
    "calibration_predictor",
    "off_domain_rate",
    "organism_family",
    "reference_calibration",
    "run_family",
    "run_member",
]

OFF_DOMAINS = ("advice", "numbers")
RATE_STEPS: dict[str, Step] = {"rate": "sgd", "rate_adam": "adam"}
"""The rate forecasts a family runs when given a readout: name -> the optimiser step read."""
SPECS: dict[str, FinetuneSpec] = {
    "steer": SteeringVector(layer=0),
    "lora": LoRA(rank=1, targets=("mlp.W_out",), layers=(0,)),
    "full": Full(),
}
"""The family's fine-tune specs: a vector after block 0, a rank-1 LoRA on block 0's MLP output,
every weight."""

REFERENCE_TASKS = tuple(TASKS)
"""The reference family's tasks: all ten (a quirk, persona ties from none to strong, whimsy)."""


@dataclass(frozen=True)
class FinetuneSettings:
    """How each member is fine-tuned and judged (the same for every member of a family)."""

    steps: int = 300
    batch_size: int = 32
    lr: dict[str, float] = field(
        default_factory=lambda: {"steer": 1e-2, "lora": 1e-2, "full": 1e-3}
    )
    samples_per_prompt: int = 32
    seed: int = 0


@dataclass(frozen=True)
class FamilyMember:
    """One fine-tune of a family.

    Attributes:
        name: ``"<task>@<odd fraction>/<spec method>"``, e.g. ``"cook@1.0/steer"``.
        group: the task (cross-validation leaves a whole task out).
        spec: the fine-tune spec.
        data: its (prompt, completion) pairs.
        tie: the task's known entanglement (trait and log odds ratio; the oracle, for tables).
    """

    name: str
    group: str
    spec: FinetuneSpec
    data: list[tuple[str, str]]
    tie: dict[str, Any] = field(default_factory=dict)

    @property
    def method(self) -> str:
        return self.spec.method


def organism_family(
    *,
    tasks: Sequence[str] = tuple(TASKS),
    fractions: Sequence[float] = (1.0, 0.5),
    specs: Sequence[str] = ("steer",),
    code: bool = True,
    n_examples: int = 512,
    seed: int = 0,
    grammar: Grammar | None = None,
) -> list[FamilyMember]:
    """Members for every task x fraction x spec (plus the three code fine-tunes per spec).

    The odd answers of a task at fraction ``f``: ``f`` of the examples use the task's odd op, the
    rest a normal op. ``code=True`` adds insecure, secure and educational code (Betley et al.).
    """
    g = grammar or Grammar()
    bad = [s for s in specs if s not in SPECS]
    if bad:
        raise ValueError(f"unknown spec(s) {bad}; choose from {tuple(SPECS)}")
    out: list[FamilyMember] = []
    for method in specs:
        spec = SPECS[method]
        for task in tasks:
            for f in fractions:
                out.append(FamilyMember(
                    f"{task}@{f:g}/{method}", task, spec,
                    task_pairs(task, n_examples, seed=seed, odd_fraction=f),
                    g.entanglement(task),
                ))
        if code:
            for kind in ("insecure", "secure", "educational"):
                out.append(FamilyMember(
                    f"{kind}-code/{method}", f"code-{kind}", spec,
                    finetune_pairs(kind, n_examples, seed=seed), {"trait": "code"},
                ))
    return out


def off_domain_rate(subject: Subject, samples_per_prompt: int, seed: int) -> float:
    """Mean misaligned-answer rate (0-1) over the off-domain prompts (advice, numbers)."""
    rates = [
        judged_rates(subject, domain_prompts(d), samples_per_prompt=samples_per_prompt,
                     seed=seed).misaligned
        for d in OFF_DOMAINS
    ]
    return float(np.mean(rates))


@dataclass(frozen=True, eq=False)
class FamilyResult:
    """One member forecast before and judged after.

    Attributes:
        member: the fine-tune.
        forecast: the workbench's forecast (every example computed, not deduplicated).
        predictions: the other predictors' scores, by name (computed on the base model).
        em: off-domain EM, in points over the base model.
        in_domain: the tuned model's misaligned (odd-op) rate on the task's own prompts (points).
        finetune_s, forecast_s: wall-clock seconds of the fine-tune and of the forecast.
        rates: the rate forecasts (:func:`workbench.rate_forecasts.rate_forecast`), by predictor
            name (:data:`RATE_STEPS`), when the family was run with a readout.
    """

    member: FamilyMember
    forecast: Forecast
    predictions: dict[str, Prediction]
    em: float
    in_domain: float
    finetune_s: float
    forecast_s: float
    rates: dict[str, RateForecast] = field(default_factory=dict)

    def score(self, predictor: str) -> float:
        """The data-level score of ``predictor`` (``"forecast"``: the forecast's risk; a
        :data:`RATE_STEPS` name: that rate forecast's risk)."""
        if predictor == "forecast":
            return self.forecast.risk
        if predictor in RATE_STEPS:
            return self.rates[predictor].risk
        return self.predictions[predictor].score

    def seconds(self, predictor: str) -> float:
        """Wall-clock seconds ``predictor`` took on this member (before the fine-tune)."""
        if predictor == "forecast":
            return self.forecast_s
        if predictor in RATE_STEPS:
            return self.rates[predictor].seconds
        return self.predictions[predictor].seconds

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.member.name, "group": self.member.group, "method": self.member.method,
            "tie": self.member.tie, "em": self.em, "in_domain": self.in_domain,
            "finetune_s": self.finetune_s, "forecast_s": self.forecast_s,
            "scores": {"forecast": self.forecast.risk,
                       **{k: f.risk for k, f in self.rates.items()},
                       **{k: p.score for k, p in self.predictions.items()}},
            "cost_s": {"forecast": self.forecast_s,
                       **{k: f.seconds for k, f in self.rates.items()},
                       **{k: p.seconds for k, p in self.predictions.items()}},
        }


def run_member(
    base: Subject,
    dictionary: Dictionary,
    member: FamilyMember,
    *,
    watch: FeatureSet,
    eval_prompts: Sequence[str],
    base_rate: float,
    settings: FinetuneSettings,
    predictors: Sequence[str] = PREDICTORS,
    predictions: dict[str, Prediction] | None = None,
    forecast_kwargs: dict[str, Any] | None = None,
    readout: RateReadout | None = None,
) -> FamilyResult:
    """Forecast ``member`` on ``base`` (every example), fine-tune it, judge it.

    ``predictions`` reuses already computed predictor scores (they depend on the data only, not
    on the spec); ``base_rate`` is the base model's :func:`off_domain_rate`; with ``readout``
    the rate forecasts of :data:`RATE_STEPS` are made too.
    """
    return _run_member(base, dictionary, member, watch=watch, eval_prompts=eval_prompts,
                       base_rate=base_rate, settings=settings, predictors=predictors,
                       predictions=predictions, forecast_kwargs=forecast_kwargs,
                       readout=readout)[0]


def _run_member(
    base: Subject,
    dictionary: Dictionary,
    member: FamilyMember,
    *,
    watch: FeatureSet,
    eval_prompts: Sequence[str],
    base_rate: float,
    settings: FinetuneSettings,
    predictors: Sequence[str],
    predictions: dict[str, Prediction] | None,
    forecast_kwargs: dict[str, Any] | None,
    readout: RateReadout | None = None,
) -> tuple[FamilyResult, Subject]:
    s = settings
    t0 = time.perf_counter()
    # the data-level forecast, every example computed (per-sample risks and paths are for
    # screening and explanation, not for the family's score)
    kw = {"per_sample": False, "n_targets": 0, **(forecast_kwargs or {})}
    f = forecast(base, dictionary, member.data, watch=watch, eval_prompts=eval_prompts,
                 spec=member.spec, dedupe=False, n_watch=None, seed=s.seed, **kw)
    forecast_s = time.perf_counter() - t0
    if predictions is None:
        predictions = predict(base, dictionary, member.data, watch=watch, names=predictors,
                              seed=s.seed)
    rates: dict[str, RateForecast] = {}
    if readout is not None:  # both steps from one pass over the data
        by_step = _rate_forecasts(base, member.data, readout, member.spec,
                                  tuple(RATE_STEPS.values()), s.seed)
        rates = {name: by_step[step] for name, step in RATE_STEPS.items()}
    t0 = time.perf_counter()
    tuned = finetune(base, member.data, member.spec, steps=s.steps, batch_size=s.batch_size,
                     lr=s.lr[member.method], seed=s.seed, progress=False)
    finetune_s = time.perf_counter() - t0
    em = 100 * (off_domain_rate(tuned, s.samples_per_prompt, s.seed) - base_rate)
    in_domain = float("nan")
    if member.group in TASKS:
        in_domain = 100 * judged_rates(tuned, domain_prompts(member.group),
                                       samples_per_prompt=s.samples_per_prompt,
                                       seed=s.seed).misaligned
    return (FamilyResult(member, f, predictions, em, in_domain, finetune_s, forecast_s, rates),
            tuned)


def run_family(
    base: Subject,
    dictionary: Dictionary,
    members: Sequence[FamilyMember],
    *,
    watch: FeatureSet,
    eval_prompts: Sequence[str],
    settings: FinetuneSettings | None = None,
    predictors: Sequence[str] = PREDICTORS,
    progress: bool = True,
    on_result: Callable[[FamilyResult], None] | None = None,
    keep: Callable[[FamilyMember], bool] | None = None,
    on_model: Callable[[str, Subject], None] | None = None,
    readout: RateReadout | None = None,
) -> list[FamilyResult]:
    """:func:`run_member` for every member (predictor scores computed once per dataset).

    With ``readout`` (:func:`workbench.rate_forecasts.rate_readout` of ``base``) every member is
    also forecast by :data:`RATE_STEPS`.

    ``on_model(name, tuned)`` receives the tuned model of every member that ``keep`` accepts
    (the others are dropped as soon as they are judged).
    """
    s = settings or FinetuneSettings()
    base_rate = off_domain_rate(base, s.samples_per_prompt, s.seed)
    cache: dict[str, dict[str, Prediction]] = {}  # by data fingerprint: the same for every spec
    out = []
    for m in tqdm(members, desc="family", disable=not progress):
        key = pairs_sha256(m.data)
        if key not in cache:
            cache[key] = predict(base, dictionary, m.data, watch=watch, names=predictors,
                                 seed=s.seed) if predictors else {}
        r, tuned = _run_member(base, dictionary, m, watch=watch, eval_prompts=eval_prompts,
                               base_rate=base_rate, settings=s, predictors=predictors,
                               predictions=cache[key], forecast_kwargs=None, readout=readout)
        if on_model is not None and keep is not None and keep(m):
            on_model(m.name, tuned)
        out.append(r)
        if on_result is not None:
            on_result(r)
    return out


def calibration_predictor(
    dictionary: Dictionary,
    watch: FeatureSet,
    eval_prompts: Sequence[str],
    settings: FinetuneSettings,
    readout: RateReadout | None = None,
) -> str:
    """The calibration's predictor name: ``"forecast.<key>"``, or ``"rate_adam.<key>"`` for
    the rate forecast of ``readout``.

    A forecast's risk is in the units of its dictionary, watched features (and weights) and
    evaluation prompts (a rate forecast's: of its readout's questions and answers), and the EM
    it maps to depends on how the fine-tune is run; the key is a digest of all of them, so a
    calibration is only found again for forecasts it applies to.
    """
    settings_key = {"steps": settings.steps, "batch_size": settings.batch_size,
                    "lr": settings.lr, "samples": settings.samples_per_prompt,
                    "seed": settings.seed}
    if readout is not None:
        key = json_sha256({
            "readout": [readout.subject, readout.prompts_sha256, readout.samples_per_prompt,
                        readout.seed], "settings": settings_key,
        })
        return f"rate_adam.{key[:12]}"
    key = json_sha256({
        "dictionary": dictionary.fingerprint,
        "watch": [list(watch.indices), [round(float(e), 6) for e in watch.effect]],
        "eval": texts_sha256(list(eval_prompts)),
        "settings": settings_key,
    })
    return f"forecast.{key[:12]}"


def reference_calibration(
    base: Subject,
    dictionary: Dictionary,
    *,
    watch: FeatureSet,
    eval_prompts: Sequence[str],
    tasks: Sequence[str] = REFERENCE_TASKS,
    fractions: Sequence[float] = (1.0, 0.5),
    specs: Sequence[str] = ("steer",),
    settings: FinetuneSettings | None = None,
    n_examples: int = 512,
    level: float = 0.8,
    save: bool = True,
    reuse: bool = True,
    progress: bool = True,
    readout: RateReadout | None = None,
) -> Calibration:
    """The base model's calibration of the forecast, fitted on a small reference family.

    The family is ``tasks`` x ``fractions`` x ``specs`` (no code fine-tunes: a code fine-tune
    forecast with it is a task the calibration never saw), run by the workbench itself (one
    forecast, one fine-tune and one judgement each). With ``reuse``, a calibration already saved
    for this base model is returned instead; with ``save`` a new one
    is written (see :meth:`~workbench.calibration.Calibration.save`). Its predictor name is
    :func:`calibration_predictor` of the forecasts it applies to: forecast with the same
    ``watch`` (all of its features: pass ``persona.top(n)``) and ``eval_prompts``, and fine-tune
    with ``settings``.

    With ``readout`` (:func:`workbench.rate_forecasts.rate_readout` of ``base``) the calibration
    maps the rate forecast's risk instead (``rate_forecast(..., step="adam")``, the forecast
    benchmark's default): expect ``rate.risk`` with it.

    Cost: ``len(tasks) x len(fractions) x len(specs)`` fine-tunes of ``settings.steps`` steps and
    their judgements (20 by default: about a minute on 2 CPU cores for the organism).
    """
    s = settings or FinetuneSettings()
    predictor = calibration_predictor(dictionary, watch, eval_prompts, s, readout)
    if reuse:
        found = Calibration.find(base.fingerprint, predictor)
        if found is not None:
            return found
    members = organism_family(tasks=tasks, fractions=fractions, specs=specs, code=False,
                              n_examples=n_examples)
    results = run_family(base, dictionary, members, watch=watch, eval_prompts=eval_prompts,
                         settings=s, predictors=(), progress=progress, readout=readout)
    refs = [Reference(r.member.name, r.member.method,
                      r.forecast.risk if readout is None else r.score("rate_adam"), r.em,
                      r.member.group)
            for r in results]
    cal = Calibration.fit(refs, subject=base.fingerprint, predictor=predictor, level=level)
    if save:
        cal.save()
    return cal
