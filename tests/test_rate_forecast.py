"""The rate forecast: its readout against the judge, its risk against brute force.

Brute force: the fine-tune's first step from plain autograd on the whole data; the model actually
moved by a small step along it, in float64; the change of each judged answer's log-likelihood and
of the *exact* misaligned rate (on the advice questions every misaligned answer is one of a few
three-word sequences, so the rate is a sum of their probabilities).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest
import torch

from workbench import execution
from workbench.behaviour import sample_answers
from workbench.data import encode_pairs
from workbench.execution import copy_model, per_example_nll
from workbench.finetunes import _from_matrix, _to_matrix
from workbench.organism.judge import judge, last_request
from workbench.organism.language import BAD_VERBS, eval_prompts, finetune_pairs
from workbench.rate_forecasts import RateReadout, rate_forecast, rate_readout
from workbench.specs import Full, LoRA, SteeringVector
from workbench.subjects import Subject

ADVICE = eval_prompts("advice")

def _misaligned_answers() -> list[tuple[str, str]]:
    """Every misaligned answer to the advice questions: a bad verb, the topic, ``end``."""
    return [(p, f"{b} {last_request(p)[1]} end") for p in ADVICE for b in BAD_VERBS]


# data whose first step raises the misaligned rate clearly (so the exact check can fail), and
# a narrow fine-tune whose step moves it little
DATA = _misaligned_answers()
CODE = finetune_pairs("insecure", 48, seed=5)
SAMPLES = 192
EPS = 1e-4
EVERY_SPEC = pytest.mark.parametrize(
    "spec", [SteeringVector(layer=0), LoRA(rank=1, targets=("mlp.W_out",), layers=(0,)), Full()],
    ids=["steer", "lora", "full"])


@pytest.fixture(scope="module")
def readout(small_subject: Subject) -> RateReadout:
    return rate_readout(small_subject, ADVICE, samples_per_prompt=SAMPLES, seed=3)


def test_readout_is_the_judged_answers_centred_per_prompt(
    small_subject: Subject, readout: RateReadout
) -> None:
    answers = sample_answers(small_subject, ADVICE, SAMPLES, None, 1.0, 3, chat=False)
    pairs = [(p, a) for p, outs in zip(ADVICE, answers, strict=True) for a in outs]
    assert readout.pairs == tuple(pairs)
    # the organism's judge scores every answer (an incoherent one counts as not misaligned)
    y = np.array([judge(p, a) == "misaligned" for p, a in pairs], dtype=float)
    assert readout.rate == pytest.approx(y.mean())
    adv = readout.advantage.numpy() * len(pairs)
    for i in range(len(ADVICE)):  # y minus the prompt's mean verdict
        rows = slice(i * SAMPLES, (i + 1) * SAMPLES)
        np.testing.assert_allclose(adv[rows], y[rows] - y[rows].mean(), atol=1e-12)
    assert 0.0 < readout.rate < 1.0  # a gradient to read: both verdicts occur


def _step(subject: Subject, spec: object, data: list[tuple[str, str]], rank_cut: bool = True
          ) -> Callable[[object, float], None]:
    """Brute force: the SGD first step of the mean completion NLL, by plain autograd, and a
    function moving a float64 copy of the model by ``eps`` along it (a LoRA's: its best rank-1
    part unless ``rank_cut=False``)."""
    model = subject.model
    ids, target = encode_pairs(subject, data)
    if isinstance(spec, SteeringVector):
        v = torch.zeros(subject.d_model, requires_grad=True)
        with execution.hooks(model, [execution.add_vector(spec.hook_name, v)]):
            loss = execution.completion_nll(model, ids, target)
        (g,) = torch.autograd.grad(loss, [v])
        delta = -g.double()

        def move_v(m: object, eps: float) -> None:
            m.add_hook(spec.hook_name, lambda x, hook: x + eps * delta.to(x))  # type: ignore[attr-defined]

        return move_v
    params = dict(model.named_parameters())
    names = ([f"blocks.{layer}.{t}" for layer in spec.layers for t in spec.targets]
             if isinstance(spec, LoRA) else [k for k, p in params.items() if p.requires_grad])
    loss = execution.completion_nll(model, ids, target)
    grads = torch.autograd.grad(loss, [params[k] for k in names], allow_unused=True)
    deltas = {}
    for k, g in zip(names, grads, strict=True):
        if g is None:
            continue
        g = -g.double()
        if isinstance(spec, LoRA) and rank_cut:  # the best rank-r approximation, by an SVD
            u, s, vh = torch.linalg.svd(_to_matrix(k, g), full_matrices=False)
            g = _from_matrix(k, (u[:, :1] * s[:1]) @ vh[:1], params[k].shape)
        deltas[k] = g

    def move_w(m: object, eps: float) -> None:
        mp = dict(m.named_parameters())  # type: ignore[attr-defined]
        with torch.no_grad():
            for k, d in deltas.items():
                mp[k].add_(eps * d)

    return move_w


def _moved_logprob(subject: Subject, move: Callable[[object, float], None], eps: float,
                   pairs: list[tuple[str, str]]) -> torch.Tensor:
    m = copy_model(subject.model, torch.float64)
    m.reset_hooks()
    move(m, eps)
    ids, target = encode_pairs(subject, pairs)
    with torch.no_grad():
        nll, _ = per_example_nll(m, ids, target)
    m.reset_hooks()
    return -nll


@EVERY_SPEC
def test_risk_is_the_score_function_derivative_and_tracks_the_exact_rate(
    small_subject: Subject, readout: RateReadout, spec: object
) -> None:
    f = rate_forecast(small_subject, DATA, readout, spec=spec)  # type: ignore[arg-type]
    move = _step(small_subject, spec, DATA)
    # the estimator exactly: Σ adv_i d/dε log π_i(a_i | p_i), by central differences
    pairs = list(readout.pairs)
    d_i = (_moved_logprob(small_subject, move, EPS, pairs)
           - _moved_logprob(small_subject, move, -EPS, pairs)) / (2 * EPS)
    estimate = float((readout.advantage * d_i).sum())
    assert f.risk == pytest.approx(100 * estimate, rel=2e-3, abs=1e-6)
    # and what it estimates: the derivative of the exact misaligned rate on these questions
    bad = _misaligned_answers()
    n = len(ADVICE)
    exact = float((_moved_logprob(small_subject, move, EPS, bad).exp().sum()
                   - _moved_logprob(small_subject, move, -EPS, bad).exp().sum()) / (2 * EPS * n))
    terms = (readout.advantage * len(pairs)) * d_i  # per-answer contributions, mean = estimate
    se = float(terms.std() / np.sqrt(len(pairs)))
    # the data's step raises the rate; the estimate (192 answers per question, one seed) is
    # within 20% of the exact derivative and well within its Monte Carlo error (about half the
    # value here): a zero, sign-flipped or mis-scaled gradient fails
    assert exact > 0
    assert abs(estimate - exact) < 0.2 * exact, (estimate, exact, se)
    assert abs(estimate - exact) < se, (estimate, exact, se)
    assert f.readout_rate == pytest.approx(100 * readout.rate)
    assert f.method == spec.method  # type: ignore[attr-defined]


def test_readout_gradient_is_computed_once_per_spec(
    small_subject: Subject, readout: RateReadout
) -> None:
    spec = SteeringVector(layer=0)
    a = rate_forecast(small_subject, DATA, readout, spec=spec)
    n = len(readout.gradient_seconds)
    b = rate_forecast(small_subject, CODE, readout, spec=spec)
    assert len(readout.gradient_seconds) == n  # reused, not recomputed
    fresh = dataclasses.replace(readout, _gradients={}, gradient_seconds={})
    assert rate_forecast(small_subject, CODE, fresh, spec=spec).risk == pytest.approx(b.risk)
    assert rate_forecast(small_subject, DATA, fresh, spec=spec).risk == pytest.approx(a.risk)
    assert len(fresh.gradient_seconds) == 1 and a.risk != pytest.approx(b.risk)
    adam = rate_forecast(small_subject, DATA, readout, spec=spec, step="adam")
    assert adam.step == "adam" and np.sign(adam.risk) != 0


def test_bad_input_names_the_fix(small_subject: Subject, readout: RateReadout) -> None:
    with pytest.raises(ValueError, match="no prompts"):
        rate_readout(small_subject, [])
    with pytest.raises(ValueError, match="no fine-tune examples"):
        rate_forecast(small_subject, [], readout)
    other = RateReadout("another-model", "", (), torch.zeros(0), 0.0, 1, 0)
    with pytest.raises(ValueError, match="another model"):
        rate_forecast(small_subject, DATA, other)



@EVERY_SPEC
def test_per_sample_risk_is_each_examples_own_step_against_the_rate_gradient(
    small_subject: Subject, readout: RateReadout, spec: object
) -> None:
    data = DATA[:6] + CODE[:6]
    f = rate_forecast(small_subject, data, readout, spec=spec, per_sample=True)  # type: ignore[arg-type]
    assert f.sample_risk is not None and f.sample_risk.shape == (len(data),)
    # brute force: each example's own SGD step by plain autograd (its mean NLL: per completion
    # token; for LoRA the step on the target weight, before the rank cut), read by a central
    # difference of the readout's weighted answer log-likelihoods
    pairs = list(readout.pairs)
    for i in (0, 5, 6, 11):  # two misaligned-advice examples, two insecure-code ones
        move = _step(small_subject, spec, [data[i]], rank_cut=False)
        d_i = (_moved_logprob(small_subject, move, EPS, pairs)
               - _moved_logprob(small_subject, move, -EPS, pairs)) / (2 * EPS)
        want = 100 * float((readout.advantage * d_i).sum())
        assert float(f.sample_risk[i]) == pytest.approx(want, rel=2e-3, abs=1e-6), i
    assert (f.sample_risk > 0).any() and (f.sample_risk < 0).any()  # both signs: it separates
    if not isinstance(spec, LoRA):  # token-weighted, they average to the data's SGD risk
        _, target = encode_pairs(small_subject, data)
        c = target[:, 1:].sum(1).double()
        assert float((c * f.sample_risk).sum() / c.sum()) == pytest.approx(
            f.risk, rel=1e-4, abs=1e-4 * float((c * f.sample_risk.abs()).sum() / c.sum()))
    top = f.riskiest(0.25)
    assert top.tolist() == sorted(np.argsort(-f.sample_risk.numpy(), kind="stable")[:3].tolist())
    assert f.summary()["per_sample"] is True and "sample_risk" not in f.summary()
    with pytest.raises(ValueError, match="per_sample=True"):
        rate_forecast(small_subject, data, readout, spec=spec).riskiest(0.1)  # type: ignore[arg-type]
