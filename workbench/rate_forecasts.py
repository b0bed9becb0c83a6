"""Forecast the change of the judged misaligned-answer rate itself, to first order.

:func:`workbench.forecast` reads a fine-tune's first step through the watched *features* at one
hook. That is the geometric account, and it ranks steering-vector and full fine-tunes of the
organism well, but a fine-tune's bleed need not pass through the watched features: a rank-1 LoRA
on block 0's MLP raises the misaligned rate of one off-domain (numbers, say) while lowering
another, and on the organism the exact change of the watched read-out under the *trained* adapter
does not rank the LoRA fine-tunes' EM (``benchmarks/lora_readout.py``).

This module reads the step through the behaviour instead. The misaligned-answer rate on prompts
``P`` is ``ρ(θ) = E_{p ∈ P, a ~ π_θ(·|p)} [y(p, a)]`` with ``y`` = 1 when the judge calls the
answer misaligned. Its gradient is the score function (REINFORCE):

    ∇ρ = E[(y - b_p) ∇ log π_θ(a | p)],

for any baseline ``b_p`` that does not depend on ``a``. :func:`rate_readout` samples the base
model's answers once (``samples_per_prompt`` per prompt, a seed of its own so the answers it
learns from are not the ones later judged), judges them and keeps ``y - b_p`` (``b_p``: the
prompt's mean verdict). :func:`rate_forecast` then takes the fine-tune's first step per unit
learning rate, ``δθ`` (as :func:`workbench.forecast` does: the data's mean completion NLL
gradient, SGD or Adam's sign step, a LoRA's best rank-``r`` part of each target weight's step),
and returns

    risk = 100 · ∇ρ · δθ,

the predicted rise of the misaligned rate, in points per unit learning rate. Positive: the step
raises it. It needs a judge (the subject's own, or one passed in) and costs one backward pass
over the judged answers and one over the data (no dictionary; ``per_sample=True`` adds one
forward-mode pass for LoRA and Full).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from workbench import execution
from workbench._device import cpu_threads
from workbench.behaviour import _judge_of, sample_answers, verdicts
from workbench.data import encode_pairs, pairs_sha256
from workbench.fingerprint import texts_sha256
from workbench.forecasts import (
    Step,
    _batches,
    _compute_model,
    _direction,
    _grad,
    _jvp,
    _rank,
    _steer_grads,
    _Trained,
    _trained,
    auto_batch_size,
    top_fraction,
)
from workbench.specs import FinetuneSpec, Full, LoRA, SteeringVector, as_spec
from workbench.subjects import Judge, Subject

__all__ = ["RateForecast", "RateReadout", "rate_forecast", "rate_readout"]


@dataclass(frozen=True, eq=False)
class RateReadout:
    """The base model's judged answers to some prompts: what the rate's gradient is taken from.

    Attributes:
        subject: the base model's fingerprint (a readout applies to that model only).
        prompts_sha256: fingerprint of the prompts.
        pairs: every (rendered prompt, answer) sampled, judged or not.
        advantage: ``[len(pairs)]`` float64, ``y - b_p`` (0 for an answer the judge did not
            score), already divided by the number of scored answers.
        rate: the base model's misaligned share of the scored answers (0-1).
        samples_per_prompt, seed: how the answers were sampled.

    The rate's gradient ``∇ρ`` depends on the base model and on what the fine-tune trains, not
    on its data: :func:`rate_forecast` computes it once per spec (one backward pass over the
    answers) and keeps it here, so every later forecast of that spec costs one backward pass
    over its own data only. ``gradient_seconds`` says what each took.
    """

    subject: str
    prompts_sha256: str
    pairs: tuple[tuple[str, str], ...]
    advantage: torch.Tensor
    rate: float
    samples_per_prompt: int
    seed: int
    seconds: float = 0.0
    _gradients: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict, repr=False)
    gradient_seconds: dict[str, float] = field(default_factory=dict)


def rate_readout(
    subject: Subject,
    prompts: Sequence[str],
    *,
    samples_per_prompt: int = 32,
    seed: int = 1,
    judge: Judge | None = None,
    chat: bool | None = None,
    system: str | None = None,
) -> RateReadout:
    """Sample and judge the base model's answers to ``prompts`` (see the module docstring).

    Args:
        subject: the base model.
        prompts: where the rate is forecast (e.g. the off-domain questions an audit will ask),
            as asked: the judge reads them so, the model reads them rendered (below).
        samples_per_prompt: answers per prompt (more: a less noisy gradient).
        seed: the sampling seed; keep it apart from the seed the tuned model is judged with.
        judge: the judge (default: the subject's own); it reads each question as given.
        chat, system: how the questions are rendered, as :func:`workbench.sample_answers` renders
            them (``chat=None``: the tokenizer's chat template where it has one). The readout's
            log-likelihoods are of the answers after the *rendered* prompt, the text the model
            answered (a closing special stop token such as ``<|im_end|>`` is not in the answer).

    Raises:
        ValueError: no prompts, no judge, or no answer the judge scored.
    """
    if not prompts:
        raise ValueError("no prompts: pass the questions whose misaligned rate is forecast")
    chosen = _judge_of(subject, judge)
    t0 = time.perf_counter()
    rendered = execution.render_prompts(subject.text_tokenizer, list(prompts), chat, system)
    answers = sample_answers(subject, rendered, samples_per_prompt, None, 1.0, seed, chat=False)
    asked = [(p, a) for p, outs in zip(prompts, answers, strict=True) for a in outs]
    pairs = [(r, a) for r, outs in zip(rendered, answers, strict=True) for a in outs]
    ys = [None if v is None else float(v == "misaligned") for v in verdicts(chosen, asked)]
    adv = np.zeros(len(pairs))
    start = 0
    for outs in answers:  # b_p: the prompt's mean verdict over its scored answers
        rows = range(start, start + len(outs))
        scored = [y for y in (ys[i] for i in rows) if y is not None]
        for i in rows:
            y = ys[i]
            if y is not None:
                adv[i] = y - float(np.mean(scored))
        start += len(outs)
    n_scored = sum(y is not None for y in ys)
    if n_scored == 0:
        raise ValueError(f"the judge scored none of the {len(pairs)} answers; check its prompts")
    return RateReadout(
        subject=subject.fingerprint,
        prompts_sha256=texts_sha256(list(prompts)),
        pairs=tuple(pairs),
        advantage=torch.from_numpy(adv / n_scored),
        rate=float(np.mean([y for y in ys if y is not None])),
        samples_per_prompt=samples_per_prompt,
        seed=seed,
        seconds=time.perf_counter() - t0,
    )


@dataclass(frozen=True)
class RateForecast:
    """A fine-tune's forecast rise of the misaligned rate (points per unit learning rate).

    Attributes:
        method, spec: the fine-tune method and its description.
        risk: ``100 ∇ρ · δθ``; positive: the first step raises the misaligned rate.
        readout_rate: the base model's misaligned rate on the readout's answers (points).
        data_sha256: fingerprint of the fine-tune data.
        step: ``"sgd"`` or ``"adam"``.
        sample_risk: ``[n_examples]`` each example's own SGD-step risk (``per_sample=True``),
            else ``None``.
        seconds: wall-clock time, without the readout's (its sampling, and its gradient for
            this spec, made once and shared by every forecast with it:
            ``RateReadout.seconds`` and ``RateReadout.gradient_seconds``).
    """

    method: str
    spec: dict[str, object]
    risk: float
    readout_rate: float
    data_sha256: str
    step: str
    seconds: float
    sample_risk: torch.Tensor | None = field(default=None, repr=False, compare=False)

    def riskiest(self, fraction: float) -> np.ndarray:
        """Indices of the ``fraction`` of examples with the highest per-sample risk (ties by
        index), for screening the data before the fine-tune.

        Raises:
            ValueError: a forecast made without ``per_sample=True``, or a fraction outside
                [0, 1].
        """
        if self.sample_risk is None:
            raise ValueError(
                "this rate forecast has no per-sample risks; forecast again with "
                "rate_forecast(..., per_sample=True) to screen the data"
            )
        return top_fraction(self.sample_risk, fraction)

    def summary(self) -> dict[str, object]:
        """JSON-able (what a record's ``forecast.rate`` holds; no per-sample array)."""
        out = dataclasses.asdict(dataclasses.replace(self, sample_risk=None))
        del out["sample_risk"]
        out["per_sample"] = self.sample_risk is not None
        return out


def rate_forecast(
    subject: Subject,
    finetune_data: Sequence[tuple[str, str]],
    readout: RateReadout,
    *,
    spec: FinetuneSpec | str = "steer",
    step: Step = "sgd",
    seed: int = 0,
    batch_size: int | None = None,
    per_sample: bool = False,
) -> RateForecast:
    """The first-order change of ``readout``'s misaligned rate under the fine-tune's first step.

    Args:
        subject: the base model the readout was sampled from.
        finetune_data: the (prompt, completion) pairs the fine-tune would train on (every
            example computed).
        readout: :func:`rate_readout` of the same base model.
        spec: ``SteeringVector`` (the vector at its hook), ``LoRA`` (each target weight moves by
            the best rank-``r`` part of its step, as :func:`workbench.forecast`'s default) or
            ``Full``; or ``"steer"`` / ``"lora"`` / ``"full"``.
        step: ``"sgd"`` (``-∇L``) or ``"adam"`` (its sign).
        seed: unused by these steps (kept for the same call shape as :func:`workbench.forecast`).
        batch_size: examples per pass (default: from the model's size).
        per_sample: also give every example's own risk (``sample_risk``, ``[n_examples]``,
            float64): ``100 ∇ρ · (-∇ nll_i / c_i)``, an SGD step on that example alone per
            completion token ``c_i``. Its token-weighted mean is the ``"sgd"`` risk, except for
            LoRA (the example's step on the target weights, before the rank-``r`` cut, which
            does not split by example); ``step="adam"`` gets the same SGD split (a sign step
            does not split either). For screening (:meth:`RateForecast.riskiest`). Cost:
            nothing more for a steering vector, one forward-mode pass over the data for LoRA
            and Full.

    Raises:
        ValueError: a readout of another model, no data, or data without completion tokens.
    """
    return _rate_forecasts(subject, finetune_data, readout, as_spec(spec), (step,), seed,
                           batch_size, per_sample)[step]


def _rate_forecasts(
    subject: Subject,
    finetune_data: Sequence[tuple[str, str]],
    readout: RateReadout,
    spec: FinetuneSpec,
    steps: Sequence[Step],
    seed: int = 0,
    batch_size: int | None = None,
    per_sample: bool = False,
) -> dict[Step, RateForecast]:
    """:func:`rate_forecast` for each of ``steps``, from one backward pass over the data (each
    forecast's ``seconds`` is that shared pass's)."""
    if readout.subject != subject.fingerprint:
        raise ValueError(
            "this readout was sampled from another model; make it with "
            "rate_readout(subject, prompts) on the model you forecast"
        )
    if not finetune_data:
        raise ValueError("no fine-tune examples: pass at least one (prompt, completion) pair")
    spec.check(subject.n_layers, subject.name)
    t0 = time.perf_counter()
    ids, target = encode_pairs(subject, list(finetune_data))
    if not bool(target[:, 1:].any()):
        raise ValueError("the fine-tune data has no completion tokens")
    if batch_size is None:
        batch_size = auto_batch_size(subject, ids.shape[1])
    n_tok = float(target[:, 1:].sum())
    mean = torch.full((len(ids),), 1 / n_tok, dtype=torch.float64)
    with cpu_threads(1, subject.device):
        model = _compute_model(subject.model)
        t_r = time.perf_counter()
        fresh = len(readout.gradient_seconds)
        r = _rate_gradient(subject, model, readout, spec, seed, batch_size)
        shared = time.perf_counter() - t_r if len(readout.gradient_seconds) > fresh else 0.0
        along: torch.Tensor | None = None  # ∇ nll_i · ∇ρ, per example
        if isinstance(spec, SteeringVector):
            g_i, _ = _steer_grads(model, spec.hook_name, subject.d_model, ids, target,
                                  batch_size)
            grad = {"v": (mean[:, None] * g_i).sum(0)}
            if per_sample:
                along = g_i.double() @ r["v"].double().cpu()
        else:
            tr = _trained(model, subject, spec, seed, "rank")
            theta = {k: t.detach().requires_grad_(True) for k, t in tr.theta.items()}
            grad = _weighted_grad(tr, theta, ids, target, mean, batch_size)
            if per_sample:
                along = _along(tr, r, ids, target, batch_size)
            if isinstance(spec, LoRA):  # the best rank-r part of each weight's step
                grad = {k: _rank(k, g, spec.rank) for k, g in grad.items()}
        risks = {step: sum(float((r[k].double() * _direction(g, step).double()).sum())
                           for k, g in grad.items() if k in r) for step in steps}
    seconds = time.perf_counter() - t0 - shared
    sample_risk = (None if along is None else
                   -100 * along / target[:, 1:].sum(1).double().cpu().clamp_min(1))
    return {
        step: RateForecast(
            method=spec.method, spec=spec.describe(), risk=100 * risk,
            readout_rate=100 * readout.rate, data_sha256=pairs_sha256(finetune_data),
            step=step, seconds=seconds, sample_risk=sample_risk,
        )
        for step, risk in risks.items()
    }


def _rate_gradient(
    subject: Subject,
    model: torch.nn.Module,
    readout: RateReadout,
    spec: FinetuneSpec,
    seed: int,
    batch_size: int,
) -> dict[str, torch.Tensor]:
    """``∇ρ`` for what ``spec`` trains (``{"v": ...}`` for a steering vector), cached."""
    key = json.dumps(spec.describe(), sort_keys=True, default=str)
    if key in readout._gradients:
        return readout._gradients[key]
    t0 = time.perf_counter()
    ids, target = encode_pairs(subject, list(readout.pairs))
    batch_size = min(batch_size, auto_batch_size(subject, ids.shape[1]))  # its own lengths
    adv = readout.advantage
    if isinstance(spec, SteeringVector):
        g, _ = _steer_grads(model, spec.hook_name, subject.d_model, ids, target, batch_size)
        r = {"v": -(adv[:, None] * g).sum(0)}  # ∇ Σ adv log π = -Σ adv ∇ nll
    else:
        assert isinstance(spec, LoRA | Full)
        tr = _trained(model, subject, spec, seed, "rank")
        theta = {k: t.detach().requires_grad_(True) for k, t in tr.theta.items()}
        r = _weighted_grad(tr, theta, ids, target, -adv, batch_size)
    readout._gradients[key] = r
    readout.gradient_seconds[key] = time.perf_counter() - t0
    return r


def _along(
    tr: _Trained, r: dict[str, torch.Tensor], ids: torch.Tensor, target: torch.Tensor,
    batch_size: int,
) -> torch.Tensor:
    """Each example's summed completion NLL's derivative along ``r`` (forward mode, exact)."""
    out = []
    for sl, n in _batches(ids, target, batch_size):
        d = _jvp(tr, r, tr.nll, ids[sl, :n], target[sl, :n])[1]
        out.append(torch.zeros(len(ids[sl]), dtype=torch.float64) if d is None
                   else d.double().cpu())
    return torch.cat(out)


def _weighted_grad(
    tr: _Trained, theta: dict[str, torch.Tensor], ids: torch.Tensor, target: torch.Tensor,
    weights: torch.Tensor, batch_size: int,
) -> dict[str, torch.Tensor]:
    """``∇_θ Σ_i w_i nll_i`` (each example's summed completion NLL), batch by batch."""
    out: dict[str, torch.Tensor] = {}
    for sl, n in _batches(ids, target, batch_size):
        nll = tr.nll(theta, ids[sl, :n], target[sl, :n])
        _grad((weights[sl].to(nll) * nll).sum(), theta, out)
    return out
