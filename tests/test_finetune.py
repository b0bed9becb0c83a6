"""Fine-tunes: the base is untouched, the steering vector folds exactly, seeds determine results."""

from __future__ import annotations

import pytest
import torch

from workbench.finetunes import encode_pairs, finetune
from workbench.organism.language import finetune_pairs
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
        k for k, v in tuned.model.state_dict().items()
        if not torch.equal(v, small_subject.model.state_dict()[k])
    ]
    assert diff == ["blocks.0.mlp.b_out"]
    assert tuned.recipe is not None and tuned.recipe["base_fingerprint"] == base_fp


def test_finetune_is_deterministic_and_lowers_loss(small_subject: Subject) -> None:
    from workbench.finetunes import completion_nll

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
    with pytest.raises(ValueError, match="choose from"):
        finetune(small_subject, [("a bot", "b")], "qlora")
    with pytest.raises(ValueError, match="out of range"):
        finetune(small_subject, [("a bot", "b")], "steer", layer=7)
    with pytest.raises(ValueError, match="no fine-tune examples"):
        finetune(small_subject, [], "steer")
