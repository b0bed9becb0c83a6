"""Forecast: the first-order predictions equal brute force, per-sample risks add up, bad input.

Brute force here means: take the gradient with plain autograd on the whole (not deduplicated)
data, actually move the model by a small step, and measure the dictionary's pre-activations.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from _saes import small_dictionary

from workbench import execution
from workbench.data import encode_pairs
from workbench.dictionaries import Dictionary
from workbench.execution import completion_nll, copy_model, per_example_nll
from workbench.features import FeatureSet, contrast
from workbench.finetunes import _init_lora, _LoraAdapter, _LoraModel, _merge_lora, finetune
from workbench.forecasts import Forecast, forecast
from workbench.organism.language import finetune_pairs, sample_corpus
from workbench.organism.prompts import persona_prompts
from workbench.specs import Full, LoRA
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
    with pytest.raises(ValueError, match=r"unknown step 'momentum'.*'sgd', 'adam'"):
        forecast(small_subject, d, data, watch=watch, eval_prompts=evals, step="momentum")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size=0"):
        forecast(small_subject, d, data, watch=watch, eval_prompts=evals, batch_size=0)
    with pytest.raises(ValueError, match=r"no weight matrix blocks\.0\.mlp\.W_gate"):
        forecast(small_subject, d, data, watch=watch, eval_prompts=evals,
                 spec=LoRA(targets=("mlp.W_gate",)))
    with pytest.raises(ValueError, match="layer=5 out of range"):
        forecast(small_subject, d, data, watch=watch, eval_prompts=evals, spec=LoRA(layers=(5,)))


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
    from workbench.specs import SteeringVector

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


# ------------------------------------------------------------------ LoRA, Adam, every example


def _readout(d: Dictionary, f: Forecast) -> torch.Tensor:
    """d R / d x at one token: the watched features' encoder columns weighted by their effect."""
    return d.W_enc.detach().double()[:, list(f.watched)] @ torch.tensor(f.weights).double()


def _hook_x(
    forward: execution.Forward, model: torch.nn.Module, ids: torch.Tensor, keep: torch.Tensor
) -> torch.Tensor:
    """The hook's activations on ``keep`` tokens, in the autograd graph, when ``forward`` runs."""
    box: list[torch.Tensor] = []
    with execution.hooks(model, [(HOOK, lambda x, hook: box.append(x))]):
        forward(ids)
    return box[0][keep]


def _moved_readout(
    d: Dictionary, f: Forecast, before: torch.nn.Module, after: torch.nn.Module,
    e_ids: torch.Tensor, keep: torch.Tensor,
) -> float:
    """How much the watched read-out R moved from ``before`` to ``after`` (float64 models)."""
    r = _readout(d, f)
    with torch.no_grad():
        return float((_eval_hook(after, e_ids, keep) @ r).mean()
                     - (_eval_hook(before, e_ids, keep) @ r).mean())


def _lora64(
    subject: Subject, spec: LoRA, seed: int
) -> tuple[torch.nn.Module, list[_LoraAdapter]]:
    """A float64 copy of the model and the fine-tune's own adapters on it (``B`` trainable)."""
    model = copy_model(subject.model, torch.float64)
    names = [f"blocks.{layer}.{t}" for layer in spec.layers for t in spec.targets]
    adapters = _init_lora(model, names, spec.rank, spec.scale_alpha, seed)
    for ad in adapters:
        ad.a = ad.a.detach().double()
        ad.b = ad.b.detach().double().requires_grad_(True)
    return model, adapters


def test_lora_forecast_equals_a_small_real_lora_step(
    small_subject: Subject, setup: tuple[Dictionary, FeatureSet, list[str]]
) -> None:
    """The shift equals a central difference of merging a tiny step on the adapters' B."""
    d, watch, evals = setup
    spec = LoRA(rank=2, alpha=3.0, targets=("mlp.W_out", "attn.W_Q", "attn.W_O"))
    data = finetune_pairs("insecure", 48, seed=1) + finetune_pairs("secure", 16, seed=2)
    f = forecast(small_subject, d, data, watch=watch, eval_prompts=evals, spec=spec, seed=5,
                 n_watch=6, lora="first")
    assert f.method == "lora" and f.extra["seed"] == 5
    # brute force, in float64: the fine-tune's own adapters (A from _init_lora, seed 5; B = 0)
    model, adapters = _lora64(small_subject, spec, seed=5)
    ids, target = encode_pairs(small_subject, data)
    nll, cnt = per_example_nll(_LoraModel(model, adapters), ids, target)
    g_b = torch.autograd.grad(nll.sum() / cnt.sum(), [ad.b for ad in adapters])
    assert f.grad_norm == pytest.approx(float(torch.cat([g.flatten() for g in g_b]).norm()),
                                        rel=1e-4)
    # the step moves W_out ([d_mlp, d_model] = [d_in, d_out]) by s A δB = -s² A Aᵀ ∇_W L
    w_out = dict(model.named_parameters())["blocks.0.mlp.W_out"]
    nll_w, _ = per_example_nll(model, ids, target)
    (g_w,) = torch.autograd.grad(nll_w.sum() / cnt.sum(), w_out)
    a, s = adapters[0].a, spec.scale_alpha / spec.rank
    torch.testing.assert_close(s * a @ -g_b[0], -(s**2) * a @ a.T @ g_w, rtol=1e-6, atol=1e-12)
    # merge B = ±eps * (-∇_B L) into the weights, as the fine-tune merges, and read the hook
    e_ids, keep = _keep(small_subject, evals)
    W = d.W_enc.detach().double()
    eps = 1e-5
    xs = []
    for sign in (1.0, -1.0):
        tuned = copy.deepcopy(model)
        for ad, g in zip(adapters, g_b, strict=True):
            ad.b = -sign * eps * g
        _merge_lora(tuned, adapters)
        with torch.no_grad():
            xs.append(_eval_hook(tuned, e_ids, keep))
    brute = ((xs[0] - xs[1]) @ W).mean(0) / (2 * eps)
    assert brute.abs().max() > 1e-3  # the step moves the features
    torch.testing.assert_close(f.predicted_shift.double(), brute, rtol=1e-3,
                               atol=1e-4 * float(brute.abs().max()))
    idx = torch.tensor(f.watched)
    assert f.risk == pytest.approx(float(brute[idx] @ torch.tensor(f.weights).double()), rel=1e-3)


def test_lora_rank_forecast_is_the_best_rank_r_step_of_its_weights(
    small_subject: Subject, setup: tuple[Dictionary, FeatureSet, list[str]]
) -> None:
    """lora="rank" (the default): each target weight moves by the truncated SVD of -∇_W L,
    the step a LoRA of that rank can take once it has found its directions; brute force with
    numpy's SVD and a central difference of the moved weights."""
    d, watch, evals = setup
    spec = LoRA(rank=1, targets=("mlp.W_out", "attn.W_Q"))
    data = finetune_pairs("insecure", 48, seed=1) + finetune_pairs("secure", 16, seed=2)
    f = forecast(small_subject, d, data, watch=watch, eval_prompts=evals, spec=spec, n_watch=6)
    model = copy_model(small_subject.model, torch.float64)
    params = dict(model.named_parameters())
    names = ["blocks.0.mlp.W_out", "blocks.0.attn.W_Q"]
    ids, target = encode_pairs(small_subject, data)
    nll, cnt = per_example_nll(model, ids, target)
    grads = torch.autograd.grad(nll.sum() / cnt.sum(), [params[k] for k in names])
    steps = {}
    for k, g in zip(names, grads, strict=True):
        # W_Q [n_heads, d_model, d_head] acts as [d_model, n_heads * d_head]
        mat = g.numpy() if g.dim() == 2 else g.permute(1, 0, 2).reshape(g.shape[1], -1).numpy()
        u, sv, vh = np.linalg.svd(mat, full_matrices=False)
        low = -sv[0] * np.outer(u[:, 0], vh[0])
        assert np.linalg.matrix_rank(low) == 1
        t = torch.from_numpy(low)
        steps[k] = t if g.dim() == 2 else t.reshape(g.shape[1], g.shape[0], g.shape[2]).permute(
            1, 0, 2)
    e_ids, keep = _keep(small_subject, evals)
    W = d.W_enc.detach().double()
    eps = 1e-5
    xs = []
    for sign in (1.0, -1.0):
        moved = copy.deepcopy(model)
        with torch.no_grad():
            for k, p in moved.named_parameters():
                if k in steps:
                    p.add_(sign * eps * steps[k])
            xs.append(_eval_hook(moved, e_ids, keep))
    brute = ((xs[0] - xs[1]) @ W).mean(0) / (2 * eps)
    assert brute.abs().max() > 1e-3
    torch.testing.assert_close(f.predicted_shift.double(), brute, rtol=1e-3,
                               atol=1e-4 * float(brute.abs().max()))
    # and it is not the first step of a fresh adapter (a random rank-1 slice of the gradient)
    first = forecast(small_subject, d, data, watch=watch, eval_prompts=evals, spec=spec,
                     n_watch=6, lora="first")
    assert abs(first.risk) < 0.1 * abs(f.risk)


@pytest.mark.parametrize(
    "spec", [LoRA(rank=2, targets=("mlp.W_out", "attn.W_V")), Full()], ids=["lora", "full"]
)
def test_sample_risk_of_a_weight_fine_tune_is_each_examples_own_step(
    small_subject: Subject, setup: tuple[Dictionary, FeatureSet, list[str]], spec: LoRA | Full
) -> None:
    """Per-sample risk = -∇L_i · r, r = ∇θ R, by per-example autograd in float64."""
    d, watch, evals = setup
    data = finetune_pairs("insecure", 30, seed=5) + finetune_pairs("educational", 30, seed=6)
    f = forecast(small_subject, d, data, watch=watch, eval_prompts=evals, spec=spec, seed=2,
                 n_watch=6, lora="first")
    if isinstance(spec, LoRA):
        model, adapters = _lora64(small_subject, spec, seed=2)
        theta = [ad.b for ad in adapters]
        forward: execution.Forward = _LoraModel(model, adapters)
    else:
        model = copy_model(small_subject.model, torch.float64)
        theta = list(model.parameters())
        forward = model
    e_ids, keep = _keep(small_subject, evals)
    R = (_hook_x(forward, model, e_ids, keep) @ _readout(d, f)).mean()
    r = torch.autograd.grad(R, theta, allow_unused=True)
    brute = []
    for i in (0, 1, 17, 31, 44, 59):
        ids, target = encode_pairs(small_subject, [data[i]])
        nll, cnt = per_example_nll(forward, ids, target)
        g = torch.autograd.grad(nll.sum() / cnt.sum(), theta, allow_unused=True)
        brute.append(-sum(float((a * b).sum()) for a, b in zip(g, r, strict=True)
                          if a is not None and b is not None))
    scale = max(abs(b) for b in brute)
    assert scale > 1e-4
    got = [float(f.sample_risk[i]) for i in (0, 1, 17, 31, 44, 59)]
    assert got == pytest.approx(brute, rel=1e-3, abs=1e-5 * scale)
    # the SGD step is the token-weighted mean of the examples' steps, and so is its risk
    _, target = encode_pairs(small_subject, data)
    n_tok = target[:, 1:].sum(1).double()
    weighted = float((f.sample_risk.double() * n_tok).sum() / n_tok.sum())
    assert weighted == pytest.approx(f.risk, rel=1e-4)


@pytest.mark.parametrize("spec", [LoRA(rank=2, targets=("mlp.W_out", "attn.W_V")), Full()],
                         ids=["lora", "full"])
def test_per_sample_risk_at_the_hook_equals_the_whole_models_derivative(
    small_subject: Subject, setup: tuple[Dictionary, FeatureSet, list[str]], spec: LoRA | Full,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At a residual-stream hook the per-sample risk is read at the hook (the backward's gradient
    there dotted with the hook's derivative along r); through the whole model (the path every
    other hook takes) it is the same number."""
    import workbench.forecasts as forecasts

    d, watch, evals = setup
    data = finetune_pairs("insecure", 20, seed=5) + finetune_pairs("educational", 20, seed=6)
    kw = dict(watch=watch, eval_prompts=evals, spec=spec, seed=2, n_watch=6, n_targets=0)
    at_hook = forecast(small_subject, d, data, **kw)
    monkeypatch.setattr(forecasts, "_BOTTLENECK", re.compile("(?!)"))  # never a bottleneck
    whole = forecast(small_subject, d, data, **kw)
    assert at_hook.extra["cost"]["to_hook"] > whole.extra["cost"]["to_hook"]
    scale = float(whole.sample_risk.abs().max())
    assert scale > 0
    torch.testing.assert_close(at_hook.sample_risk, whole.sample_risk, rtol=1e-4,
                               atol=1e-5 * scale)
    assert torch.equal(at_hook.predicted_shift, whole.predicted_shift)


@pytest.mark.parametrize("spec", ["steer", "lora", "full"])
def test_every_example_computed_gives_the_same_forecast(
    small_subject: Subject, setup: tuple[Dictionary, FeatureSet, list[str]], spec: str
) -> None:
    d, watch, evals = setup
    data = finetune_pairs("insecure", 40, seed=3) + finetune_pairs("secure", 20, seed=4)
    once = forecast(small_subject, d, data, watch=watch, eval_prompts=evals, spec=spec)
    every = forecast(small_subject, d, data, watch=watch, eval_prompts=evals, spec=spec,
                     dedupe=False, batch_size=7)
    assert once.n_unique == 16 and every.n_unique == every.n_examples == 60
    top = float(once.predicted_shift.abs().max())
    torch.testing.assert_close(every.predicted_shift, once.predicted_shift, rtol=1e-4,
                               atol=1e-5 * top)
    torch.testing.assert_close(every.sample_risk, once.sample_risk, rtol=1e-4,
                               atol=1e-5 * float(once.sample_risk.abs().max()))
    assert every.risk == pytest.approx(once.risk, rel=1e-4)
    assert every.grad_norm == pytest.approx(once.grad_norm, rel=1e-4)
    assert [(p.watched, p.target) for p in every.paths] == [(p.watched, p.target)
                                                            for p in once.paths]
    # what was computed: 60 examples (16 distinct); the evaluation prompts for lora and full
    n, m = 60, len(evals)
    if spec == "steer":
        want = {"examples": n, "eval_prompts": 0, "forward": n, "backward": n, "jvp": 0,
                "to_hook": 0, "batch_size": 7}
    else:  # data: ∇L, jvp along r (to the hook: a residual-stream hook is a bottleneck), jvp
        # to the hook; evals: ∇R to the hook, jvp to the hook
        want = {"examples": n, "eval_prompts": m, "forward": 3 * n + 2 * m, "backward": n + m,
                "jvp": 2 * n + m, "to_hook": 2 * n + 2 * m, "batch_size": 7}
    assert every.extra["cost"] == want
    assert once.extra["cost"]["examples"] == 16 and every.summary()["cost"] == want


@pytest.mark.parametrize("spec", ["lora", "full"])
def test_the_data_level_forecast_alone_costs_one_pass_and_gives_the_same_risk(
    small_subject: Subject, setup: tuple[Dictionary, FeatureSet, list[str]], spec: str
) -> None:
    """per_sample=False and n_targets=0 skip the per-example and path passes, nothing else."""
    d, watch, evals = setup
    data = finetune_pairs("insecure", 40, seed=3) + finetune_pairs("secure", 20, seed=4)
    full = forecast(small_subject, d, data, watch=watch, eval_prompts=evals, spec=spec,
                    dedupe=False, batch_size=7)
    lean = forecast(small_subject, d, data, watch=watch, eval_prompts=evals, spec=spec,
                    dedupe=False, batch_size=7, per_sample=False, n_targets=0)
    torch.testing.assert_close(lean.predicted_shift, full.predicted_shift, rtol=1e-5, atol=1e-7)
    assert lean.risk == pytest.approx(full.risk, rel=1e-5)
    assert lean.grad_norm == pytest.approx(full.grad_norm, rel=1e-6)
    assert bool(torch.isnan(lean.sample_risk).all()) and lean.paths == ()
    n, m = 60, len(evals)  # data: ∇L only; evals: the jvp to the hook only
    assert lean.extra["cost"] == {"examples": n, "eval_prompts": m, "forward": n + m,
                                  "backward": n, "jvp": m, "to_hook": m, "batch_size": 7}
    assert lean.extra["per_sample"] is False
    with pytest.raises(ValueError, match="per_sample=True"):
        lean.riskiest(0.1)


def test_the_published_predictors_ride_along(
    small_subject: Subject, setup: tuple[Dictionary, FeatureSet, list[str]]
) -> None:
    """forecast(predictors=...) scores the data as workbench.predictors.predict does."""
    from workbench.predictors import predict

    d, watch, evals = setup
    data = finetune_pairs("insecure", 20, seed=3) + finetune_pairs("secure", 10, seed=4)
    f = forecast(small_subject, d, data, watch=watch, eval_prompts=evals, n_watch=6,
                 predictors=("nll", "projection", "constant"))
    direct = predict(small_subject, d, data, watch=watch.top(6),
                     names=("nll", "projection", "constant"))
    assert list(f.predictions) == ["nll", "projection", "constant"]
    for k, p in direct.items():
        np.testing.assert_allclose(f.predictions[k].sample_scores, p.sample_scores, rtol=1e-6)
    assert f.summary()["predictors"]["nll"]["score"] == pytest.approx(direct["nll"].score)
    assert "predictors" not in forecast(small_subject, d, data, watch=watch,
                                        eval_prompts=evals).summary()


def test_adam_step_for_steer_equals_a_real_adam_step(
    small_subject: Subject, setup: tuple[Dictionary, FeatureSet, list[str]]
) -> None:
    d, watch, evals = setup
    data = finetune_pairs("insecure", 40, seed=1) + finetune_pairs("secure", 20, seed=2)
    adam = forecast(small_subject, d, data, watch=watch, eval_prompts=evals, n_watch=6,
                    step="adam")
    sgd = forecast(small_subject, d, data, watch=watch, eval_prompts=evals, n_watch=6)
    assert adam.extra["step"] == "adam" and adam.summary()["step"] == "adam"
    # brute force: one torch.optim.Adam step on a steering vector, on all 60 examples
    model = small_subject.model
    ids, target = encode_pairs(small_subject, data)
    v = torch.zeros(small_subject.d_model, requires_grad=True)
    lr = 0.1
    opt = torch.optim.Adam([v], lr=lr)
    with execution.hooks(model, [execution.add_vector(HOOK, v)]):
        completion_nll(model, ids, target).backward()
    opt.step()
    e_ids, keep = _keep(small_subject, evals)
    W = d.W_enc.detach().double()
    with torch.no_grad():
        x0 = _eval_hook(model, e_ids, keep)
        with execution.hooks(model, [execution.add_vector(HOOK, v.detach())]):
            x1 = _eval_hook(model, e_ids, keep)
    brute = ((x1 - x0) @ W).mean(0) / lr
    torch.testing.assert_close(adam.predicted_shift.double(), brute, rtol=1e-4,
                               atol=1e-5 * float(brute.abs().max()))
    idx = torch.tensor(adam.watched)
    assert adam.risk == pytest.approx(float(brute[idx] @ torch.tensor(adam.weights).double()),
                                      rel=1e-4)
    # Adam turns the step (every coordinate moves by lr): not the SGD step's direction
    cos = torch.nn.functional.cosine_similarity(adam.predicted_shift, sgd.predicted_shift, dim=0)
    assert float(cos) < 0.99
    # the per-sample risk is the SGD decomposition for both steps
    assert torch.equal(adam.sample_risk, sgd.sample_risk)


def test_full_forecast_predicts_a_real_sgd_step(
    small_subject: Subject, setup: tuple[Dictionary, FeatureSet, list[str]]
) -> None:
    """One real SGD step of a full fine-tune (lr tiny) moves the read-out by lr x risk."""
    d, watch, evals = setup
    data = finetune_pairs("insecure", 48, seed=1) + finetune_pairs("secure", 16, seed=2)
    f = forecast(small_subject, d, data, watch=watch, eval_prompts=evals, spec="full", n_watch=6)
    base = copy_model(small_subject.model, torch.float64)
    tuned = copy.deepcopy(base)
    lr = 1e-4
    opt = torch.optim.SGD(tuned.parameters(), lr=lr)
    ids, target = encode_pairs(small_subject, data)
    completion_nll(tuned, ids, target).backward()
    opt.step()
    e_ids, keep = _keep(small_subject, evals)
    assert _moved_readout(d, f, base, tuned, e_ids, keep) / lr == pytest.approx(f.risk, rel=1e-3)


@pytest.mark.parametrize(
    "spec", [Full(), LoRA(rank=2, targets=("mlp.W_out", "attn.W_Q"))], ids=["full", "lora"]
)
def test_adam_forecast_predicts_a_real_finetunes_first_step(
    small_subject: Subject, setup: tuple[Dictionary, FeatureSet, list[str]], spec: LoRA | Full
) -> None:
    """workbench.finetune's first Adam step (lr tiny, float64) moves the read-out by lr x risk.

    The forecast is given the fine-tune's first batch (its seeded draw, with replacement) and
    its seed (which draws the LoRA's A).
    """
    d, watch, evals = setup
    data = finetune_pairs("insecure", 40, seed=1) + finetune_pairs("secure", 20, seed=2)
    seed, batch_size = 3, 48
    first = np.random.default_rng(seed).integers(0, len(data), size=batch_size)
    f = forecast(small_subject, d, [data[i] for i in first], watch=watch, eval_prompts=evals,
                 spec=spec, step="adam", seed=seed, n_watch=6, lora="first")
    base = small_subject.derived(copy_model(small_subject.model, torch.float64), "f64", {})
    lr = 1e-7  # the step's second-order effect is ~1e-4 of the first at 1e-6 (LoRA)
    tuned = finetune(base, data, spec, steps=1, batch_size=batch_size, lr=lr, seed=seed,
                     progress=False)
    e_ids, keep = _keep(small_subject, evals)
    moved = _moved_readout(d, f, base.model, tuned.model, e_ids, keep) / lr
    assert moved == pytest.approx(f.risk, rel=1e-4)
    assert abs(f.risk) > 1e-2


def test_a_lora_after_the_hook_moves_nothing_there(
    small_subject: Subject, setup: tuple[Dictionary, FeatureSet, list[str]]
) -> None:
    d, watch, evals = setup
    data = finetune_pairs("insecure", 16, seed=0)
    f = forecast(small_subject, d, data, watch=watch, eval_prompts=evals,
                 spec=LoRA(layers=(1,)))  # the dictionary reads block 0's output
    assert f.grad_norm > 0
    assert not f.predicted_shift.any() and f.risk == 0 and not f.sample_risk.any()



# ------------------------------------------------------------------ how the dictionary reads x


def _sae_dictionary(
    folder: Path, d_in: int, hook: str, *, normalize: str = "none", reshape: str = "none",
    head: int | None = None, seed: int = 0,
) -> Dictionary:
    """A random ReLU SAE with SAE Lens's input normalisation ``normalize`` (and hook_z layout)."""
    return small_dictionary(folder, d_in, seed=seed, hook=hook, normalize=normalize,
                            reshape=reshape, head=head)


def _own_pre(d: Dictionary) -> torch.nn.Module:
    """The dictionary's SAE in float64; its pre-activations are read at ``hook_sae_acts_pre``."""
    return copy.deepcopy(d.sae).to(torch.float64)


def _pre64(sae64: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    _, cache = sae64.run_with_cache(x)  # type: ignore[operator]
    out: torch.Tensor = cache["hook_sae_acts_pre"]
    return out


@pytest.mark.parametrize("normalize", ["constant_norm_rescale", "layer_norm"])
def test_steer_forecast_reads_the_dictionarys_own_normalised_pre_activation(
    small_subject: Subject, tmp_path: Path, normalize: str
) -> None:
    """An SAE that rescales each input (x -> sqrt(d_in) x / |x|, or a layer norm): the forecast's
    shift is the actual change of the SAE's own pre-activation under a small steering step
    (central difference through the model); the raw W_enc would miss it by the per-token scale."""
    s = small_subject
    d = _sae_dictionary(tmp_path, s.d_model, HOOK, normalize=normalize)
    assert d.normalizes_per_input
    mis, ali = persona_prompts(40, seed=3)
    watch = contrast(s, d, mis, ali, n_boot=20)
    evals = [doc.text() for doc in sample_corpus(24, seed=7)]
    data = finetune_pairs("insecure", 60, seed=1) + finetune_pairs("secure", 20, seed=2)
    f = forecast(s, d, data, watch=watch, eval_prompts=evals, n_watch=6)
    # brute force: the data's gradient w.r.t. a vector at the hook, a step of ±eta along -g
    ids, target = encode_pairs(s, data)
    v = torch.zeros(s.d_model, requires_grad=True)
    with execution.hooks(s.model, [execution.add_vector(HOOK, v)]):
        (g,) = torch.autograd.grad(completion_nll(s.model, ids, target), v)
    e_ids, keep = _keep(s, evals)
    sae64, eta = _own_pre(d), 1e-2
    pre = []
    for sign in (1.0, -1.0):
        step = execution.add_vector(HOOK, -sign * eta * g)
        with torch.no_grad(), execution.hooks(s.model, [step]):
            pre.append(_pre64(sae64, _eval_hook(s.model, e_ids, keep)))
    brute = (pre[0] - pre[1]).mean(0) / (2 * eta)
    torch.testing.assert_close(f.predicted_shift.double(), brute, rtol=1e-3,
                               atol=1e-4 * float(brute.abs().max()))
    idx = torch.tensor(f.watched)
    assert f.risk == pytest.approx(float(brute[idx] @ torch.tensor(f.weights).double()), rel=1e-3)
    # the raw encoder would have been wrong: for the norm rescale by sqrt(d_in)/|x_t| (and the
    # projection along x_t), which the closed-form derivative puts back
    raw = -g.double() @ d.W_enc.detach().double()
    assert float((raw - brute).abs().max()) > 0.2 * float(brute.abs().max())
    if normalize == "constant_norm_rescale":
        with torch.no_grad():
            x = _eval_hook(s.model, e_ids, keep)
        u = x / x.norm(dim=1, keepdim=True)
        step = -g.double()[None] - u * (u @ -g.double())[:, None]  # (I - x̂ x̂ᵀ) δv per token
        closed = ((s.d_model**0.5 / x.norm(dim=1))[:, None] * step).mean(0) @ sae64.W_enc
        torch.testing.assert_close(closed, brute, rtol=1e-3, atol=1e-4 * float(brute.abs().max()))
    # the per-sample risks still add up to the risk (token-weighted mean, SGD)
    n_tok = target[:, 1:].sum(1).double()
    assert float((f.sample_risk.double() * n_tok).sum() / n_tok.sum()) == pytest.approx(
        f.risk, rel=1e-4)
    assert f.extra["cost"]["eval_prompts"] == len(evals)  # the hook read at the eval tokens


def test_full_forecast_reads_the_dictionarys_own_normalised_pre_activation(
    small_subject: Subject, tmp_path: Path
) -> None:
    """Full, with a norm-rescaling SAE: J(x_t) δx_t at every token equals a central difference
    of the SAE's own pre-activation after a tiny real step of every weight (float64)."""
    s = small_subject
    d = _sae_dictionary(tmp_path, s.d_model, HOOK, normalize="constant_norm_rescale", seed=2)
    mis, ali = persona_prompts(40, seed=3)
    watch = contrast(s, d, mis, ali, n_boot=20)
    evals = [doc.text() for doc in sample_corpus(24, seed=7)]
    data = finetune_pairs("insecure", 48, seed=1) + finetune_pairs("secure", 16, seed=2)
    f = forecast(s, d, data, watch=watch, eval_prompts=evals, spec="full", n_watch=6)
    model = copy_model(s.model, torch.float64)
    ids, target = encode_pairs(s, data)
    params = list(model.parameters())
    grads = torch.autograd.grad(completion_nll(model, ids, target), params, allow_unused=True)
    e_ids, keep = _keep(s, evals)
    sae64, eta = _own_pre(d), 1e-6
    pre = []
    with torch.no_grad():
        for sign in (-1.0, 2.0):  # theta - eta g, then theta + eta g
            for p, g in zip(params, grads, strict=True):
                if g is not None:
                    p.add_(sign * eta * g)
            pre.append(_pre64(sae64, _eval_hook(model, e_ids, keep)))
    brute = (pre[0] - pre[1]).mean(0) / (2 * eta)
    torch.testing.assert_close(f.predicted_shift.double(), brute, rtol=2e-3,
                               atol=2e-4 * float(brute.abs().max()))
    idx = torch.tensor(f.watched)
    assert f.risk == pytest.approx(float(brute[idx] @ torch.tensor(f.weights).double()), rel=2e-3)


@pytest.mark.parametrize("layout", ["flat", "sae-reshapes", "one-head"])
def test_full_forecast_at_hook_z_reads_the_heads_as_the_dictionary_does(
    small_subject: Subject, tmp_path: Path, layout: str
) -> None:
    """A dictionary at ``blocks.0.attn.hook_z`` ([pos, n_heads, d_head]): heads flattened by the
    workbench, flattened by SAE Lens (``reshape_activations="hook_z"``) or one head
    (``hook_head_index``); the Full forecast equals a central difference of a tiny real step."""
    s = small_subject
    hook = "blocks.0.attn.hook_z"
    n_heads, d_head = s.model.cfg.n_heads, s.model.cfg.d_head
    head = 1 if layout == "one-head" else None
    d = _sae_dictionary(tmp_path, d_head if head is not None else n_heads * d_head, hook,
                        reshape="hook_z" if layout == "sae-reshapes" else "none", head=head)
    mis, ali = persona_prompts(40, seed=3)
    watch = contrast(s, d, mis, ali, n_boot=20)
    evals = [doc.text() for doc in sample_corpus(24, seed=7)]
    data = finetune_pairs("insecure", 48, seed=1) + finetune_pairs("secure", 16, seed=2)
    f = forecast(s, d, data, watch=watch, eval_prompts=evals, spec="full", n_watch=6)
    model = copy_model(s.model, torch.float64)
    ids, target = encode_pairs(s, data)
    params = list(model.parameters())
    grads = torch.autograd.grad(completion_nll(model, ids, target), params, allow_unused=True)
    e_ids, keep = _keep(s, evals)

    def z(m: torch.nn.Module) -> torch.Tensor:  # [tokens, d_in] as the SAE reads hook_z
        box: list[torch.Tensor] = []
        m.run_with_hooks(e_ids, fwd_hooks=[(hook, lambda x, hook: box.append(x))])  # type: ignore[operator]
        acts = box[0][keep].double()  # [tokens, n_heads, d_head]
        return acts[:, head] if head is not None else acts.reshape(len(acts), n_heads * d_head)

    eta, xs = 1e-6, []
    with torch.no_grad():
        for sign in (-1.0, 2.0):
            for p, g in zip(params, grads, strict=True):
                if g is not None:
                    p.add_(sign * eta * g)
            xs.append(z(model))
    brute = ((xs[0] - xs[1]) @ d.W_enc.detach().double()).mean(0) / (2 * eta)
    assert brute.abs().max() > 1e-3
    torch.testing.assert_close(f.predicted_shift.double(), brute, rtol=2e-3,
                               atol=2e-4 * float(brute.abs().max()))
    # a steering vector is added to the residual stream, never at hook_z: refused, with the fix
    with pytest.raises(ValueError, match=r"hook_z.*not the residual stream.*LoRA\(...\) or Full"):
        forecast(s, d, data, watch=watch, eval_prompts=evals, spec="steer")
