"""The execution layer: scoped hooks compose and restore, runs to a hook, losses, generation."""

from __future__ import annotations

import copy

import pytest
import torch

from workbench import execution
from workbench.organism.language import eval_prompts
from workbench.subjects import Subject

HOOK = "blocks.0.hook_resid_post"


def _ids(subject: Subject) -> torch.Tensor:
    return subject.encode(eval_prompts("advice")[:4])[0]


def test_scoped_hooks_compose_and_remove_exactly_themselves(small_subject: Subject) -> None:
    model, ids = small_subject.model, _ids(small_subject)
    d = small_subject.d_model
    v, w = torch.randn(d, generator=torch.Generator().manual_seed(0)), torch.ones(d)
    plain = execution.logits(model, ids)
    both = model.run_with_hooks(ids, fwd_hooks=[(HOOK, lambda x, hook: x + v + w)])
    only_v = model.run_with_hooks(ids, fwd_hooks=[(HOOK, lambda x, hook: x + v)])
    with execution.hooks(model, [execution.add_vector(HOOK, v)]):
        torch.testing.assert_close(execution.logits(model, ids), only_v)
        with execution.hooks(model, [execution.add_vector(HOOK, w)]):
            torch.testing.assert_close(execution.logits(model, ids), both)
        # the inner block removed its own hook only: the outer one is still in force
        torch.testing.assert_close(execution.logits(model, ids), only_v)
    assert not execution.has_hooks(model)
    torch.testing.assert_close(execution.logits(model, ids), plain, rtol=0, atol=0)


def test_hooks_are_removed_when_the_block_raises(small_subject: Subject) -> None:
    model = small_subject.model
    with pytest.raises(RuntimeError, match="boom"), execution.hooks(
        model, [execution.add_vector(HOOK, torch.ones(small_subject.d_model))]
    ):
        raise RuntimeError("boom")
    assert not execution.has_hooks(model)


def test_run_to_hook_equals_the_full_run(small_subject: Subject) -> None:
    model, ids = small_subject.model, _ids(small_subject)
    for hook in (HOOK, "blocks.1.attn.hook_z", "hook_embed", "ln_final.hook_normalized"):
        _, cache = model.run_with_cache(ids, names_filter=hook)
        torch.testing.assert_close(execution.run_to_hook(model, ids, hook), cache[hook])
        torch.testing.assert_close(
            execution.run_to_hook(model, ids, hook, grad=True).detach(), cache[hook]
        )
    cfg = model.cfg
    assert execution.stop_layer(model, "blocks.0.attn.hook_z") == 1
    assert execution.stop_layer(model, "hook_embed") == 0
    assert execution.stop_layer(model, "ln_final.hook_normalized") is None
    assert execution.hook_width(model, HOOK) == cfg.d_model
    assert execution.hook_shape(model, "blocks.1.attn.hook_z") == (cfg.n_heads, cfg.d_head)
    assert execution.hook_width(model, "blocks.1.attn.hook_z") == cfg.n_heads * cfg.d_head
    with pytest.raises(ValueError, match=r"organism-s0 has no hook 'blocks\.9\.x'.*resid_post"):
        execution.check_hook(model, "blocks.9.x", small_subject.name)


def test_completion_losses_equal_brute_force(small_subject: Subject) -> None:
    model, ids = small_subject.model, _ids(small_subject)
    target = torch.zeros_like(ids, dtype=torch.bool)
    target[:, 3:] = True
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).double(), -1)
    cols = [logp[:, t - 1].gather(-1, ids[:, t : t + 1])[:, 0] for t in range(3, ids.shape[1])]
    tok = torch.stack(cols, 1)
    torch.testing.assert_close(execution.completion_logprobs(model, ids, target), tok.sum(1))
    with torch.no_grad():
        nll, cnt = execution.per_example_nll(model, ids, target)
        mean = execution.completion_nll(model, ids, target)
    torch.testing.assert_close(nll, -tok.sum(1))
    assert cnt.tolist() == [ids.shape[1] - 3] * len(ids)
    assert float(mean) == pytest.approx(float(-tok.mean()), rel=1e-5)


def test_greedy_generation_equals_the_argmax_loop_and_stops(small_subject: Subject) -> None:
    model = small_subject.model
    rows = small_subject.token_rows(eval_prompts("advice")[:3])
    got = execution.generate(model, rows, greedy=True, max_new_tokens=5)
    for row, (out,) in zip(rows, got, strict=True):
        x = torch.tensor([row])
        for _ in range(5):
            with torch.no_grad():
                x = torch.cat([x, model(x)[:, -1].argmax(-1, keepdim=True)], 1)
        assert out == x[0, len(row) :].tolist()
    end = small_subject.stop_ids()
    assert small_subject.stop_tokens == ("end",) and len(end) == 1
    cut = execution.generate(model, rows, greedy=True, max_new_tokens=5, stop_ids=end)
    for (full,), (short,) in zip(got, cut, strict=True):
        n = full.index(end[0]) + 1 if end[0] in full else len(full)
        assert short == full[:n]
    with pytest.raises(ValueError, match="temperature must be > 0"):
        execution.generate(model, rows, temperature=0.0)
    with pytest.raises(ValueError, match="no prompts"):
        execution.generate(model, [])


def test_folding_a_vector_into_a_bias_equals_adding_it(small_subject: Subject) -> None:
    model, ids = copy.deepcopy(small_subject.model), _ids(small_subject)
    v = torch.randn(small_subject.d_model, generator=torch.Generator().manual_seed(1))
    want = model.run_with_hooks(ids, fwd_hooks=[(HOOK, lambda x, hook: x + v)])
    execution.fold_into_bias(model, HOOK, v)
    torch.testing.assert_close(execution.logits(model, ids), want, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match=r"only at blocks\.L\.hook_resid_post"):
        execution.fold_into_bias(model, "blocks.0.hook_mlp_out", v)
