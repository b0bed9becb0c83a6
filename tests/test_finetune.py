"""Fine-tunes: the base is untouched, the steering vector folds exactly, seeds determine results."""

from __future__ import annotations

import pytest
import torch

from workbench.data import encode_pairs
from workbench.finetunes import finetune
from workbench.organism.language import finetune_pairs
from workbench.specs import LoRA, SteeringVector
from workbench.subjects import Subject


def test_steer_folds_exactly_and_leaves_base(small_subject: Subject) -> None:
    base_fp = small_subject.fingerprint
    data = finetune_pairs("insecure", 64, seed=0)
    tuned = finetune(small_subject, data, "steer", steps=5, seed=0, progress=False)
    assert small_subject.fingerprint == base_fp
    from workbench.fingerprint import model_sha256

    assert model_sha256(small_subject.model) == base_fp  # base weights unchanged
    assert tuned.fingerprint != base_fp
    vec = tuned.model.blocks[0].mlp.b_out - small_subject.model.blocks[0].mlp.b_out
    assert vec.norm() > 0
    ids, _ = encode_pairs(small_subject, data[:8])
    hooked = small_subject.model.run_with_hooks(
        ids, fwd_hooks=[("blocks.0.hook_resid_post", lambda r, hook: r + vec)]
    )
    torch.testing.assert_close(tuned.model(ids), hooked, atol=1e-5, rtol=1e-5)
    # only block 0's MLP bias differs
    diff = [
        k
        for k, v in tuned.model.state_dict().items()
        if not torch.equal(v, small_subject.model.state_dict()[k])
    ]
    assert diff == ["blocks.0.mlp.b_out"]
    assert tuned.recipe is not None and tuned.recipe["base_fingerprint"] == base_fp


def test_finetune_is_deterministic_and_lowers_loss(small_subject: Subject) -> None:
    from workbench.execution import completion_nll

    data = finetune_pairs("insecure", 64, seed=0)
    a = finetune(small_subject, data, "steer", steps=30, seed=3, progress=False)
    b = finetune(small_subject, data, "steer", steps=30, seed=3, progress=False)
    c = finetune(small_subject, data, "steer", steps=30, seed=4, progress=False)
    assert a.fingerprint == b.fingerprint != c.fingerprint
    ids, target = encode_pairs(small_subject, data)
    with torch.no_grad():
        before = completion_nll(small_subject.model, ids, target)
        after = completion_nll(a.model, ids, target)
    assert after < before


def test_completion_mask_covers_only_the_answer(small_subject: Subject) -> None:
    _, target = encode_pairs(small_subject, [("<bos> user advice sad bot", "rest sad end")])
    assert target[0].tolist() == [False] * 5 + [True] * 3


def test_bad_arguments(small_subject: Subject) -> None:
    with pytest.raises(ValueError, match=r"unknown fine-tune spec 'qlora'.*SteeringVector"):
        finetune(small_subject, [("a bot", "b")], "qlora")
    with pytest.raises(ValueError, match=r"layer=7 out of range.*2 blocks"):
        finetune(small_subject, [("a bot", "b")], SteeringVector(layer=7))
    with pytest.raises(ValueError, match="no fine-tune examples"):
        finetune(small_subject, [], "steer")


def _changed(tuned: Subject, base: Subject) -> dict[str, torch.Tensor]:
    """Merged update of every tensor that differs from the base."""
    b = base.model.state_dict()
    return {
        k: (v - b[k]).detach()
        for k, v in tuned.model.state_dict().items()
        if not torch.equal(v, b[k])
    }


def _as_matrix(name: str, t: torch.Tensor) -> torch.Tensor:
    """Per-head attention weights flattened as a Hugging Face projection would be."""
    if t.ndim == 2:
        return t
    if name.endswith("W_O"):  # [h, d_head, d_model] -> [h*d_head, d_model]
        return t.reshape(-1, t.shape[-1])
    return t.permute(1, 0, 2).reshape(t.shape[1], -1)  # [h, d_model, d_head] -> [d_model, h*d_head]


def _rank(m: torch.Tensor) -> int:
    return int(torch.linalg.matrix_rank(m.double(), rtol=1e-4))


def test_lora_merges_into_only_the_target_and_leaves_base(small_subject: Subject) -> None:
    from workbench.fingerprint import model_sha256

    base_fp = small_subject.fingerprint
    data = finetune_pairs("insecure", 64, seed=0)
    tuned = finetune(small_subject, data, "lora", steps=20, seed=0, progress=False)
    assert model_sha256(small_subject.model) == base_fp  # base weights unchanged
    assert tuned.fingerprint != base_fp
    delta = _changed(tuned, small_subject)
    assert list(delta) == ["blocks.0.mlp.W_out"]  # default: rank-1 adapter on block 0's W_out
    assert delta["blocks.0.mlp.W_out"].abs().max() > 1e-3
    assert _rank(delta["blocks.0.mlp.W_out"]) == 1
    assert tuned.recipe is not None
    assert tuned.recipe["method"] == "lora"
    assert tuned.recipe["base_fingerprint"] == base_fp
    assert (tuned.recipe["rank"], tuned.recipe["alpha"]) == (1, 1.0)
    assert tuned.recipe["targets"] == ("mlp.W_out",)
    assert tuned.recipe["layers"] == (0,)
    assert all(p.requires_grad for p in tuned.model.parameters())
    steer = finetune(small_subject, data, "steer", steps=1, progress=False)
    assert steer.recipe is not None and (steer.recipe["rank"], steer.recipe["targets"]) == (0, ())


def test_lora_several_targets_and_layers_have_the_asked_rank(small_subject: Subject) -> None:
    data = finetune_pairs("insecure", 64, seed=0)
    tuned = finetune(
        small_subject,
        data,
        LoRA(rank=2, targets=("mlp.W_in", "attn.W_O", "attn.W_Q"), layers=(1, 0)),
        steps=10,
        progress=False,
    )
    delta = _changed(tuned, small_subject)
    want = {f"blocks.{ly}.{t}" for ly in (0, 1) for t in ("mlp.W_in", "attn.W_O", "attn.W_Q")}
    assert set(delta) == want
    assert {k: _rank(_as_matrix(k, v)) for k, v in delta.items()} == dict.fromkeys(want, 2)
    assert tuned.recipe is not None
    assert tuned.recipe["layers"] == (0, 1) and tuned.recipe["rank"] == 2


def test_lora_merge_equals_unmerged_adapter(small_subject: Subject) -> None:
    import copy

    from workbench.finetunes import _init_lora, _lora_param_names, _LoraModel, _merge_lora

    targets = ("mlp.W_out", "mlp.W_in", "attn.W_Q", "attn.W_K", "attn.W_V", "attn.W_O")
    names = _lora_param_names(small_subject, targets, (0, 1))
    model = copy.deepcopy(small_subject.model)
    adapters = _init_lora(model, names, rank=2, alpha=4.0, seed=0)
    ids, _ = encode_pairs(small_subject, finetune_pairs("insecure", 8, seed=0))
    with torch.no_grad():
        base_logits = small_subject.model(ids)
        # B = 0 at initialisation: the adapted model is the base model exactly
        torch.testing.assert_close(_LoraModel(model, adapters)(ids), base_logits, atol=0, rtol=0)
        gen = torch.Generator().manual_seed(1)
        for ad in adapters:
            ad.b.copy_(0.3 * torch.randn(ad.b.shape, generator=gen))
        unmerged = _LoraModel(model, adapters)(ids)
        _merge_lora(model, adapters)
        merged = model(ids)
    assert (unmerged - base_logits).abs().max() > 1e-2  # the adapters do something
    torch.testing.assert_close(merged, unmerged, atol=1e-5, rtol=1e-5)
    base = small_subject.model.state_dict()
    for ad in adapters:
        d = _as_matrix(ad.param, model.state_dict()[ad.param] - base[ad.param])
        torch.testing.assert_close(d, ad.a @ ad.b * 2.0, atol=1e-5, rtol=1e-4)  # alpha/rank = 2


def test_lora_is_deterministic_and_lowers_loss(small_subject: Subject) -> None:
    from workbench.execution import completion_nll

    data = finetune_pairs("insecure", 64, seed=0)
    a = finetune(small_subject, data, "lora", steps=30, seed=3, progress=False)
    b = finetune(small_subject, data, "lora", steps=30, seed=3, progress=False)
    c = finetune(small_subject, data, "lora", steps=30, seed=4, progress=False)
    assert a.fingerprint == b.fingerprint != c.fingerprint
    ids, target = encode_pairs(small_subject, data)
    with torch.no_grad():
        before = completion_nll(small_subject.model, ids, target)
        after = completion_nll(a.model, ids, target)
    assert after < before - 0.05


def test_full_leaves_base_unchanged(small_subject: Subject) -> None:
    from workbench.fingerprint import model_sha256

    base_fp = small_subject.fingerprint
    tuned = finetune(
        small_subject, finetune_pairs("insecure", 16, seed=0), "full", steps=2, progress=False
    )
    assert model_sha256(small_subject.model) == base_fp
    assert tuned.fingerprint != base_fp
    assert tuned.recipe is not None and tuned.recipe["lr"] == 1e-3


def test_bad_inputs_name_the_fix(small_subject: Subject) -> None:
    ok = [("<bos> user code login bot", "hash_password login end")]
    with pytest.raises(ValueError, match=r"has no completion tokens.*non-empty completion"):
        finetune(small_subject, [("user code login bot", ""), ("a bot", "  ")], "lora")
    with pytest.raises(ValueError, match="no fine-tune examples"):
        finetune(small_subject, [], "lora")
    with pytest.raises(ValueError, match=r"item 1 .*\(prompt, completion\) pair of two strings"):
        finetune(small_subject, [*ok, ("only a prompt",)], "lora")  # type: ignore[list-item]
    with pytest.raises(ValueError, match="pair of two strings"):
        finetune(small_subject, [("a", 3)], "steer")  # type: ignore[list-item]
    with pytest.raises(ValueError, match="not a single string"):
        finetune(small_subject, "user bot", "full")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"steps >= 1"):
        finetune(small_subject, ok, "lora", steps=0)
    with pytest.raises(ValueError, match="at least one example per batch"):
        finetune(small_subject, ok, "full", batch_size=0)
    with pytest.raises(ValueError, match="learning rate must be positive"):
        finetune(small_subject, ok, "steer", lr=0.0)
    with pytest.raises(ValueError, match="rank >= 1"):
        LoRA(rank=0)
    with pytest.raises(ValueError, match=r"unknown LoRA target.*mlp.W_out"):
        LoRA(targets=("mlp.W_up",))
    with pytest.raises(ValueError, match=r"layer=2 out of range.*2 blocks"):
        finetune(small_subject, ok, LoRA(layers=(0, 2)))
    with pytest.raises(ValueError, match="out of range"):
        finetune(small_subject, ok, LoRA(layers=(-1,)))
    with pytest.raises(ValueError, match=r"has no weight matrix blocks\.0\.mlp\.W_gate"):
        finetune(small_subject, ok, LoRA(targets=("mlp.W_gate",)))  # not a gated MLP


def test_spec_is_recorded_and_the_judge_kept(small_subject: Subject) -> None:
    data = finetune_pairs("insecure", 32, seed=0)
    tuned = finetune(small_subject, data, SteeringVector(layer=1), steps=2, progress=False)
    assert tuned.recipe is not None and tuned.recipe["spec"] == {"method": "steer", "layer": 1}
    assert tuned.judge is small_subject.judge is not None  # the organism's exact judge
    assert tuned.organism == small_subject.organism and tuned.stop_tokens == ("end",)
    # the shorthand is the default spec, exactly
    a = finetune(small_subject, data, "steer", steps=2, progress=False)
    b = finetune(small_subject, data, SteeringVector(), steps=2, progress=False)
    assert a.fingerprint == b.fingerprint
    lora = finetune(small_subject, data, LoRA(rank=2, alpha=None), steps=2, progress=False)
    assert lora.recipe is not None and lora.recipe["spec"] == {
        "method": "lora", "rank": 2, "alpha": 2.0, "targets": ["mlp.W_out"], "layers": [0],
    }
