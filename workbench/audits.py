"""Audit a fine-tune: what actually moved, base vs tuned, and how well the forecast saw it coming.

Model diffing through one dictionary (Wang et al. 2025, arXiv 2506.19823): both models' activations
at the dictionary's hook are encoded by the *same* SAE, so a feature's shift is comparable across
them. An audit records

* **feature shifts**: the change of every feature's mean activation over the evaluation tokens
  (``<bos>`` left out, every token weighted equally, as the forecast predicts them);
* **behaviour**: the judged misaligned rate per prompt group (the organism's exact judge, or any
  judge passed in) and the log-prob alignment margin on (prompt, aligned, misaligned) answer
  triples, which works on any model;
* **forecast validation** (given a :class:`~workbench.forecasts.Forecast`): the Spearman
  correlation of predicted and actual shifts over the ``top`` most-moved features, and the watched
  features' actual risk next to the predicted one (the same weighted sum, on measured shifts).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from workbench.activations import feature_activations
from workbench.behaviour import BehaviourRates, alignment_margin, judged_rates
from workbench.dictionaries import Dictionary
from workbench.fingerprint import texts_sha256
from workbench.forecasts import Forecast
from workbench.subjects import Subject

__all__ = ["Audit", "audit", "spearman"]


def spearman(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN when either side is constant."""
    from scipy.stats import spearmanr

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise ValueError(f"need two 1-D arrays of equal length >= 2 (got {x.shape}, {y.shape})")
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


@dataclass(frozen=True, eq=False)
class Audit:
    """Base vs tuned through one dictionary, with behaviour and (optionally) the forecast check.

    Attributes:
        base, tuned: the two subjects' fingerprints.
        dictionary, hook_name: the dictionary both were read through.
        eval_sha256, n_tokens: the evaluation prompts and their token count.
        actual_shift: ``[d_sae]`` tuned minus base mean feature activation.
        most_moved: the ``top`` features with the largest ``|actual_shift|``, largest first.
        behaviour_base, behaviour_tuned: judged rates per prompt group (empty without a judge).
        margin_base, margin_tuned: alignment margins (``None`` without answer triples).
        spearman: predicted vs actual shift over ``most_moved`` (``None`` without a forecast).
        predicted_risk, actual_risk: the forecast's risk and the same weighted sum of the actual
            shifts of its watched features (``None`` without a forecast).
    """

    base: str
    tuned: str
    dictionary: str
    hook_name: str
    eval_sha256: str
    n_tokens: int
    actual_shift: torch.Tensor
    most_moved: tuple[int, ...]
    behaviour_base: dict[str, BehaviourRates] = field(default_factory=dict)
    behaviour_tuned: dict[str, BehaviourRates] = field(default_factory=dict)
    margin_base: float | None = None
    margin_tuned: float | None = None
    spearman: float | None = None
    predicted_risk: float | None = None
    actual_risk: float | None = None

    def misaligned_change(self, groups: Sequence[str] | None = None) -> float:
        """Mean change of the misaligned rate over ``groups`` (default: all judged groups)."""
        names = list(groups) if groups is not None else list(self.behaviour_base)
        if not names:
            raise ValueError("this audit judged no behaviour; pass behaviour_prompts and a judge")
        missing = [g for g in names if g not in self.behaviour_base]
        if missing:
            raise KeyError(f"no judged prompt group {missing}; have {list(self.behaviour_base)}")
        diff = [self.behaviour_tuned[g].misaligned - self.behaviour_base[g].misaligned
                for g in names]
        return float(np.mean(diff))

    def summary(self) -> dict[str, Any]:
        """A JSON-able summary (no per-feature arrays)."""
        return {
            "base": self.base,
            "tuned": self.tuned,
            "dictionary": self.dictionary,
            "hook_name": self.hook_name,
            "eval_sha256": self.eval_sha256,
            "n_tokens": self.n_tokens,
            "most_moved": list(self.most_moved[:10]),
            "behaviour_base": {g: r.__dict__ for g, r in self.behaviour_base.items()},
            "behaviour_tuned": {g: r.__dict__ for g, r in self.behaviour_tuned.items()},
            "margin_base": self.margin_base,
            "margin_tuned": self.margin_tuned,
            "spearman": self.spearman,
            "predicted_risk": self.predicted_risk,
            "actual_risk": self.actual_risk,
        }


def mean_features(
    subject: Subject, dictionary: Dictionary, prompts: Sequence[str], batch_size: int = 64
) -> tuple[torch.Tensor, int]:
    """Token-weighted mean feature activation over ``prompts`` (``<bos>`` left out), and tokens."""
    per_prompt = feature_activations(
        subject, dictionary, prompts, pool="mean", batch_size=batch_size
    ).double()
    counts = (subject.encode(list(prompts))[1].sum(1) - 1).double().cpu()
    return (counts @ per_prompt) / counts.sum(), int(counts.sum())


def audit(
    base: Subject,
    tuned: Subject,
    dictionary: Dictionary,
    eval_prompts: Sequence[str],
    forecast: Forecast | None = None,
    *,
    behaviour_prompts: Mapping[str, Sequence[str]] | None = None,
    answer_pairs: Sequence[tuple[str, str, str]] | None = None,
    judge: Callable[[str, str], object] | None = None,
    samples_per_prompt: int = 32,
    top: int = 50,
    seed: int = 0,
) -> Audit:
    """Measure what a fine-tune changed, and compare it with its forecast.

    Args:
        base, tuned: the model before and after (``tuned`` from :func:`workbench.finetune`).
        dictionary: read both models through it (it must fit both).
        eval_prompts: where feature shifts are measured (pass the forecast's prompts).
        forecast: the forecast of this fine-tune, to validate.
        behaviour_prompts: named prompt groups to sample and judge (e.g. one per domain).
        answer_pairs: (prompt, aligned, misaligned) triples for the alignment margin.
        judge: ``judge(prompt, answer)`` returning a verdict; default the subjects' own judge
            (the organism's is exact). Without either, behaviour is not judged.
        top: how many of the most-moved features the Spearman correlation runs over.

    Raises:
        ValueError: the two subjects differ in width or vocabulary, a forecast made for another
            base, dictionary, prompt set or fine-tune spec.
    """
    if base.d_model != tuned.d_model:
        raise ValueError(
            f"{base.name} (d_model {base.d_model}) and {tuned.name} "
            f"(d_model {tuned.d_model}) differ in width; an audit compares a model with "
            "its own fine-tune"
        )
    if forecast is not None:
        _check_forecast(forecast, base, dictionary, eval_prompts)
        _check_spec(forecast, tuned)
    if top < 2:
        raise ValueError(f"top must be at least 2 (got {top})")
    before, n_tok = mean_features(base, dictionary, eval_prompts)
    after, _ = mean_features(tuned, dictionary, eval_prompts)
    shift = (after - before).float()
    most = torch.argsort(shift.abs(), descending=True, stable=True)[:top]

    if judge is None:
        judge = base.judge if base.judge is not None else tuned.judge
    b_rates: dict[str, BehaviourRates] = {}
    t_rates: dict[str, BehaviourRates] = {}
    if behaviour_prompts and judge is not None:
        for g, prompts in behaviour_prompts.items():
            kw = {"judge": judge, "samples_per_prompt": samples_per_prompt, "seed": seed}
            b_rates[g] = judged_rates(base, prompts, **kw)  # type: ignore[arg-type]
            t_rates[g] = judged_rates(tuned, prompts, **kw)  # type: ignore[arg-type]
    m_base = m_tuned = None
    if answer_pairs:
        m_base = alignment_margin(base, answer_pairs)
        m_tuned = alignment_margin(tuned, answer_pairs)

    rho = p_risk = a_risk = None
    if forecast is not None:
        rho = spearman(forecast.predicted_shift[most], shift[most])
        idx = torch.tensor(forecast.watched)
        w = torch.tensor(forecast.weights, dtype=torch.float64)
        a_risk = float(shift[idx].double() @ w)
        p_risk = forecast.risk
    return Audit(
        base=base.fingerprint,
        tuned=tuned.fingerprint,
        dictionary=dictionary.fingerprint,
        hook_name=dictionary.hook_name,
        eval_sha256=texts_sha256(eval_prompts),
        n_tokens=n_tok,
        actual_shift=shift,
        most_moved=tuple(int(i) for i in most),
        behaviour_base=b_rates,
        behaviour_tuned=t_rates,
        margin_base=m_base,
        margin_tuned=m_tuned,
        spearman=rho,
        predicted_risk=p_risk,
        actual_risk=a_risk,
    )


def _check_forecast(
    f: Forecast, base: Subject, dictionary: Dictionary, eval_prompts: Sequence[str]
) -> None:
    if f.subject != base.fingerprint:
        raise ValueError(
            "the forecast was made for another base model (fingerprint "
            f"{f.subject[:12]}…, this base is {base.fingerprint[:12]}…); forecast this base"
        )
    if f.dictionary != dictionary.fingerprint:
        raise ValueError(
            "the forecast was made with another dictionary; audit through the forecast's dictionary"
        )
    if f.eval_sha256 != texts_sha256(eval_prompts):
        raise ValueError(
            "the forecast predicted shifts on other evaluation prompts; pass the same eval_prompts "
            "to forecast() and audit()"
        )


def _check_spec(f: Forecast, tuned: Subject) -> None:
    """Refuse a fine-tune whose recorded spec differs from the forecast's."""
    made = (tuned.recipe or {}).get("spec")
    if made is not None and made != f.spec:
        raise ValueError(
            f"the forecast predicts the fine-tune {f.spec} but {tuned.name} was made with "
            f"{made}; forecast the spec you fine-tuned with (forecast(..., spec=...))"
        )
