"""Forecast: the first-order predictions equal brute force, per-sample risks add up, bad input.

Brute force here means: take the gradient with plain autograd on the whole (not deduplicated)
data, actually move the model by a small step, and measure the dictionary's pre-activations.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from _saes import small_dictionary

from workbench.data import encode_pairs
from workbench.dictionaries import Dictionary
from workbench.execution import completion_nll
from workbench.features import FeatureSet, contrast
from workbench.forecasts import forecast
from workbench.organism.language import finetune_pairs, sample_corpus
from workbench.organism.prompts import persona_prompts
from workbench.subjects import Subject

HOOK = "blocks.0.hook_resid_post"


@pytest.fixture(scope="module")
def setup(
    small_subject: Subject, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Dictionary, FeatureSet, list[str]]:
    d = small_dictionary(tmp_path_factory.mktemp("sae"), small_subject.model.cfg.d_model)
    mis, ali = persona_prompts(40, seed=3)
    watch = contrast(small_subject, d, mis, ali, n_boot=20)
    evals = [doc.text() for doc in sample_corpus(24, seed=7)]
    return d, watch, evals


def _eval_hook(model: torch.nn.Module, ids: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    box: list[torch.Tensor] = []
    model.run_with_hooks(ids, fwd_hooks=[(HOOK, lambda x, hook: box.append(x))])  # type: ignore[operator]
    return box[0][keep].double()


def _keep(subject: Subject, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    ids, mask = subject.encode(prompts)
    keep = mask.clone()
    keep[:, 0] = False
    return ids, keep


def test_steer_forecast_equals_brute_force(
    small_subject: Subject, setup: tuple[Dictionary, FeatureSet, list[str]]
) -> None:
    d, watch, evals = setup
    data = finetune_pairs("insecure", 300, seed=1) + finetune_pairs("secure", 100, seed=2)
    f = forecast(small_subject, d, data, watch=watch, eval_prompts=evals, n_watch=6)
    assert f.n_examples == 400 and f.n_unique == 16  # 8 tasks x 2 kinds, computed once each
    # brute force: gradient of the mean completion NLL over all 400 examples w.r.t. a hook vector
    ids, target = encode_pairs(small_subject, data)
    v = torch.zeros(small_subject.model.cfg.d_model, requires_grad=True)
    model = small_subject.model
    model.add_hook(HOOK, lambda x, hook: x + v)
    try:
        loss = completion_nll(model, ids, target)
        (g,) = torch.autograd.grad(loss, v)
    finally:
        model.reset_hooks()
    assert f.grad_norm == pytest.approx(float(g.norm()), rel=1e-4)
    # move the hook by eta * (-g) and read the pre-activations on the evaluation tokens
    eta = 1e-2
    e_ids, keep = _keep(small_subject, evals)
    W = d.W_enc.detach().double()
    with torch.no_grad():
        x0 = _eval_hook(model, e_ids, keep)
        model.add_hook(HOOK, lambda x, hook: x - eta * g)
        try:
            x1 = _eval_hook(model, e_ids, keep)
        finally:
            model.reset_hooks()
    brute = ((x1 - x0) @ W).mean(0) / eta
    torch.testing.assert_close(f.predicted_shift.double(), brute, rtol=1e-3, atol=1e-5)
    idx = torch.tensor(f.watched)
    assert f.risk == pytest.approx(float(brute[idx] @ torch.tensor(f.weights).double()), rel=1e-3)
    assert f.watched == watch.indices[:6]


def test_sample_risk_is_each_examples_own_step(
    small_subject: Subject, setup: tuple[Dictionary, FeatureSet, list[str]]
) -> None:
    d, watch, evals = setup
    data = finetune_pairs("insecure", 40, seed=5) + finetune_pairs("educational", 40, seed=6)
    f = forecast(small_subject, d, data, watch=watch, eval_prompts=evals, n_watch=6)
    r = d.W_enc.detach().double()[:, list(f.watched)] @ torch.tensor(f.weights).double()
    model = small_subject.model
    for i in (0, 1, 45, 79):
        ids, target = encode_pairs(small_subject, [data[i]])
        v = torch.zeros(model.cfg.d_model, requires_grad=True)
        model.add_hook(HOOK, lambda x, hook, v=v: x + v)
        try:
            (g,) = torch.autograd.grad(completion_nll(model, ids, target), v)
        finally:
            model.reset_hooks()
        assert float(f.sample_risk[i]) == pytest.approx(float(-(g.double() @ r)), rel=1e-4)
    # the token-weighted mean of the per-sample risks is the whole data's risk
    _, target = encode_pairs(small_subject, data)
    n_tok = target[:, 1:].sum(1).double()
    weighted = float((f.sample_risk.double() * n_tok).sum() / n_tok.sum())
    assert weighted == pytest.approx(f.risk, rel=1e-4)
    # riskiest: deterministic, the highest scores, ties broken by index
    top = f.riskiest(0.25)
    assert len(top) == 20
    cut = np.sort(f.sample_risk.numpy())[::-1][19]
    assert (f.sample_risk.numpy()[top] >= cut).all()
    assert np.array_equal(top, f.riskiest(0.25))


def test_full_forecast_equals_a_small_real_step(
    small_subject: Subject, setup: tuple[Dictionary, FeatureSet, list[str]]
) -> None:
    d, watch, evals = setup
    data = finetune_pairs("insecure", 64, seed=1)
    f = forecast(small_subject, d, data, watch=watch, eval_prompts=evals, spec="full", n_watch=6)
    model = copy.deepcopy(small_subject.model)
    model.to(torch.float64, print_details=False)
    ids, target = encode_pairs(small_subject, data)
    params = [p for p in model.parameters()]
    grads = torch.autograd.grad(completion_nll(model, ids, target), params, allow_unused=True)
    e_ids, keep = _keep(small_subject, evals)
    W = d.W_enc.detach().double()
    eta = 1e-6
    xs = []
    with torch.no_grad():
        for sign in (-1.0, 2.0):  # theta - eta g, then theta + eta g (a step of +2 eta g back)
            for p, g in zip(params, grads, strict=True):
                if g is not None:
                    p.add_(sign * eta * g)
            xs.append(_eval_hook(model, e_ids, keep))
    brute = ((xs[0] - xs[1]) @ W).mean(0) / (2 * eta)  # central difference along -g
    torch.testing.assert_close(f.predicted_shift.double(), brute, rtol=2e-3, atol=2e-4)
    assert small_subject.fingerprint == f.subject


def test_base_is_untouched(
    small_subject: Subject, setup: tuple[Dictionary, FeatureSet, list[str]]
) -> None:
    from workbench.fingerprint import model_sha256

    d, watch, evals = setup
    for method in ("steer", "lora", "full"):
        forecast(small_subject, d, finetune_pairs("insecure", 16, seed=0), watch=watch,
                 eval_prompts=evals, spec=method)
        assert model_sha256(small_subject.model) == small_subject.fingerprint
        assert not small_subject.model.hook_dict[HOOK].fwd_hooks


def test_bad_input(
    small_subject: Subject, setup: tuple[Dictionary, FeatureSet, list[str]],
    tmp_path: Path,
) -> None:
    d, watch, evals = setup
    data = finetune_pairs("insecure", 8, seed=0)
    with pytest.raises(ValueError, match="no fine-tune examples"):
        forecast(small_subject, d, [], watch=watch, eval_prompts=evals)
    with pytest.raises(ValueError, match="no completion tokens"):
        forecast(small_subject, d, [(p, "") for p, _ in data], watch=watch, eval_prompts=evals)
    with pytest.raises(ValueError, match="pair of strings"):
        forecast(small_subject, d, ["just text"], watch=watch, eval_prompts=evals)  # type: ignore[list-item]
    other = small_dictionary(tmp_path, small_subject.model.cfg.d_model, seed=1)
    with pytest.raises(ValueError, match=r"another dictionary.*contrast"):
        forecast(small_subject, other, data, watch=watch, eval_prompts=evals)
    with pytest.raises(ValueError, match=r"unknown fine-tune spec .magic."):
        forecast(small_subject, d, data, watch=watch, eval_prompts=evals, spec="magic")
    with pytest.raises(ValueError, match="no evaluation prompts"):
        forecast(small_subject, d, data, watch=watch, eval_prompts=[])


def test_forecast_inside_a_patch_leaves_the_patch_in_force(
    small_subject: Subject, setup: tuple[Dictionary, FeatureSet, list[str]]
) -> None:
    """The forecast adds its own hook and removes exactly it: the caller's patch stays."""
    from workbench.patches import Ablate, mean_difference

    d, watch, evals = setup
    mis, ali = persona_prompts(20, seed=5)
    direction = mean_difference(small_subject, mis, ali, HOOK, pool="last")
    ids, _ = small_subject.encode(evals[:8])
    with torch.no_grad():
        plain = small_subject.model(ids)
    data = finetune_pairs("insecure", 16, seed=0)
    with Ablate(direction).applied(small_subject) as patched, torch.no_grad():
        before = patched.model(ids)
        assert (before - plain).abs().max() > 1e-3  # the patch does something
        for spec in ("steer", "lora", "full"):
            with torch.enable_grad():
                forecast(patched, d, data, watch=watch, eval_prompts=evals, spec=spec)
            torch.testing.assert_close(patched.model(ids), before, rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(small_subject.model(ids), plain, rtol=0, atol=0)


def test_forecast_states_its_spec_and_refuses_what_it_cannot_predict(
    small_subject: Subject, setup: tuple[Dictionary, FeatureSet, list[str]]
) -> None:
    from workbench.specs import Full, LoRA, SteeringVector

    d, watch, evals = setup
    data = finetune_pairs("insecure", 16, seed=0)
    f = forecast(small_subject, d, data, watch=watch, eval_prompts=evals, spec=SteeringVector(0))
    assert f.spec == {"method": "steer", "layer": 0} and f.summary()["spec"] == f.spec
    assert forecast(small_subject, d, data, watch=watch, eval_prompts=evals,
                    spec=Full()).spec == {"method": "full"}
    with pytest.raises(ValueError, match=r"at the dictionary's hook.*blocks\.1\.hook_resid_post"):
        forecast(small_subject, d, data, watch=watch, eval_prompts=evals, spec=SteeringVector(1))
    f = forecast(small_subject, d, data, watch=watch, eval_prompts=evals, spec="lora", seed=4)
    assert f.method == "lora" and f.spec == LoRA().describe() == LoRA(rank=1, alpha=1.0).describe()
    assert f.extra["seed"] == 4 and f.summary()["seed"] == 4 and f.summary()["step"] == "sgd"
