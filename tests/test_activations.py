"""Activations: streaming statistics equal a brute-force full forward; stopping early; refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _saes import small_dictionary

from workbench._device import cpu_threads
from workbench.activations import Pool, collect, feature_activations, hook_activations, stop_layer
from workbench.dictionaries import Dictionary
from workbench.organism.language import sample_corpus
from workbench.subjects import Subject

HOOK = "blocks.0.hook_resid_post"
D_SAE = 48


@pytest.fixture(scope="module")
def dictionary(small_subject: Subject, tmp_path_factory: pytest.TempPathFactory) -> Dictionary:
    d_model = small_subject.model.cfg.d_model
    return small_dictionary(tmp_path_factory.mktemp("sae") / "rand", d_model, hook=HOOK,
                            d_sae=D_SAE)


@pytest.fixture(scope="module")
def prompts() -> list[str]:
    docs = [d.text() for d in sample_corpus(23, seed=3)]
    return [*docs, "<bos> user code login bot", "user numbers 10 11 bot"]  # short ones: padding


def brute_force_hook(subject: Subject, hook: str, prompts: list[str]) -> list[torch.Tensor]:
    """Per prompt, the activations ``[n_tokens - 1, ...]`` of its real non-<bos> tokens."""
    out = []
    with torch.no_grad(), cpu_threads(1, subject.device):
        for text in prompts:
            ids, mask = subject.encode([text])
            _, cache = subject.model.run_with_cache(ids)  # the whole model, no stop_at_layer
            out.append(cache[hook][0, 1 : int(mask.sum())])
    return out


def brute_force_features(
    subject: Subject, dictionary: Dictionary, prompts: list[str]
) -> list[torch.Tensor]:
    with torch.no_grad():
        return [dictionary.encode(a) for a in brute_force_hook(subject, HOOK, prompts)]


@pytest.mark.parametrize("batch_size", [1, 4, 64])
def test_collect_equals_brute_force(
    small_subject: Subject, dictionary: Dictionary, prompts: list[str], batch_size: int
) -> None:
    stats = collect(
        small_subject,
        dictionary,
        prompts,
        batch_size=batch_size,
        top_k_contexts=5,
        keep_dense=True,
        progress=False,
    )
    per_prompt = brute_force_features(small_subject, dictionary, prompts)
    feats = torch.cat(per_prompt)
    n_words = sum(len([w for w in t.split() if w != "<bos>"]) for t in prompts)
    assert stats.n_tokens == feats.shape[0] == n_words
    assert stats.n_prompts == len(prompts)
    torch.testing.assert_close(stats.mean, feats.double().mean(0).float(), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(stats.frequency, (feats > 0).double().mean(0).float())
    torch.testing.assert_close(stats.max, feats.amax(0).clamp_min(0), atol=1e-6, rtol=1e-5)
    assert 0 < float(stats.frequency.mean()) < 1  # the check means something

    # dense rows and their (prompt, position) map
    assert stats.dense is not None and stats.token_index is not None
    torch.testing.assert_close(stats.dense, feats, atol=1e-6, rtol=1e-5)
    expected_index = [
        (p, pos) for p, f in enumerate(per_prompt) for pos in range(1, f.shape[0] + 1)
    ]
    assert [tuple(r) for r in stats.token_index.tolist()] == expected_index

    # running top-k equals the brute-force top-k, and every context points at its value
    k_true = feats.topk(5, dim=0).values.T  # [d_sae, 5]
    expected_top = torch.where(k_true > 0, k_true, torch.zeros_like(k_true))
    torch.testing.assert_close(stats.top_values, expected_top, atol=1e-6, rtol=1e-5)
    for f in range(D_SAE):
        contexts = stats.top_contexts(f)
        assert len(contexts) == int((feats[:, f] > 0).sum().clamp_max(5))
        for c in contexts:
            assert c.value == pytest.approx(float(per_prompt[c.prompt][c.position - 1, f]), 1e-5)
            words = prompts[c.prompt].split()
            words = words if words[0] == "<bos>" else ["<bos>", *words]
            assert c.token == words[c.position]
            assert c.text.split() == words[c.start : c.position + 3]


def test_collect_selected_dense_columns(
    small_subject: Subject, dictionary: Dictionary, prompts: list[str]
) -> None:
    full = collect(small_subject, dictionary, prompts, keep_dense=True, progress=False)
    part = collect(small_subject, dictionary, prompts, keep_dense=[7, 3], progress=False)
    assert part.dense is not None and full.dense is not None
    assert part.dense_features == (7, 3)
    torch.testing.assert_close(part.dense, full.dense[:, [7, 3]])
    torch.testing.assert_close(part.dense_column(3), full.dense[:, 3])
    with pytest.raises(ValueError, match="keep_dense"):
        part.dense_column(5)
    plain = collect(small_subject, dictionary, prompts, progress=False)
    assert plain.dense is None and plain.token_index is None
    with pytest.raises(ValueError, match="keep_dense=True"):
        plain.dense_column(3)


def test_stopping_early_skips_later_blocks(
    small_subject: Subject, dictionary: Dictionary, prompts: list[str]
) -> None:
    model = small_subject.model
    assert stop_layer(small_subject, HOOK) == 1
    assert stop_layer(small_subject, "blocks.1.hook_resid_post") == 2  # skips ln_final + unembed
    assert stop_layer(small_subject, "hook_embed") == 0
    assert stop_layer(small_subject, "ln_final.hook_normalized") is None
    calls: list[str] = []
    for hook in ("blocks.1.hook_resid_pre", "ln_final.hook_normalized"):
        model.hook_dict[hook].add_hook(lambda act, hook: calls.append(hook.name))
    try:
        collect(small_subject, dictionary, prompts[:3], progress=False)
        hook_activations(small_subject, HOOK, prompts[:3])
        feature_activations(small_subject, dictionary, prompts[:3])
    finally:
        model.reset_hooks()
    assert calls == []


@pytest.mark.parametrize("hook", [HOOK, "blocks.1.hook_resid_post", "blocks.1.attn.hook_z"])
@pytest.mark.parametrize("pool", ["mean", "last"])
def test_pooled_hook_activations_equal_a_full_forward(
    small_subject: Subject, prompts: list[str], hook: str, pool: Pool
) -> None:
    got = hook_activations(small_subject, hook, prompts, pool=pool, batch_size=4)
    per_prompt = [a.flatten(1) for a in brute_force_hook(small_subject, hook, prompts)]
    if pool == "mean":
        expected = torch.stack([a.double().mean(0).float() for a in per_prompt])
    else:
        expected = torch.stack([a[-1] for a in per_prompt])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pool", ["mean", "last"])
def test_pooled_feature_activations(
    small_subject: Subject, dictionary: Dictionary, prompts: list[str], pool: Pool
) -> None:
    got = feature_activations(small_subject, dictionary, prompts, pool=pool, batch_size=5)
    per_prompt = brute_force_features(small_subject, dictionary, prompts)
    if pool == "mean":
        expected = torch.stack([f.double().mean(0).float() for f in per_prompt])
    else:
        expected = torch.stack([f[-1] for f in per_prompt])
    assert got.shape == (len(prompts), D_SAE)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_bos_is_kept_when_asked(small_subject: Subject, dictionary: Dictionary) -> None:
    texts = ["<bos> user code login bot"]
    stats = collect(small_subject, dictionary, texts, skip_bos=False, progress=False)
    assert stats.n_tokens == 5 and not stats.skip_bos
    with pytest.raises(ValueError, match="only <bos>"):
        collect(small_subject, dictionary, ["<bos>"], progress=False)
    with pytest.raises(ValueError, match="prompt 1 has no tokens"):
        hook_activations(small_subject, HOOK, ["user code", ""])


def test_empty_prompt_set_is_refused(small_subject: Subject, dictionary: Dictionary) -> None:
    with pytest.raises(ValueError, match="empty"):
        collect(small_subject, dictionary, [], progress=False)
    with pytest.raises(ValueError, match="empty"):
        hook_activations(small_subject, HOOK, [])
    with pytest.raises(ValueError, match="empty"):
        feature_activations(small_subject, dictionary, [])
    with pytest.raises(ValueError, match="not one string"):
        collect(small_subject, dictionary, "<bos> user code login bot", progress=False)


def test_mismatched_dictionary_is_refused(
    small_subject: Subject, prompts: list[str], tmp_path: Path
) -> None:
    d_model = small_subject.model.cfg.d_model
    narrow = small_dictionary(tmp_path / "narrow", d_model // 2, hook=HOOK)
    with pytest.raises(ValueError, match=rf"d_in={d_model // 2}.*{d_model} wide"):
        collect(small_subject, narrow, prompts, progress=False)
    deep = small_dictionary(tmp_path / "deep", d_model, hook="blocks.7.hook_resid_post")
    with pytest.raises(ValueError, match=r"no hook 'blocks\.7\.hook_resid_post'"):
        collect(small_subject, deep, prompts, progress=False)
    with pytest.raises(ValueError, match="no hook"):
        feature_activations(small_subject, deep, prompts)
    with pytest.raises(ValueError, match="no hook"):
        hook_activations(small_subject, "blocks.7.hook_resid_post", prompts)


def test_bad_arguments_are_refused(
    small_subject: Subject, dictionary: Dictionary, prompts: list[str]
) -> None:
    too_long = " ".join(["user code login bot"] * 40)
    with pytest.raises(ValueError, match="at most 64"):
        collect(small_subject, dictionary, [too_long], progress=False)
    with pytest.raises(ValueError, match="'mean' or 'last'"):
        hook_activations(small_subject, HOOK, prompts, pool="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="outside"):
        collect(small_subject, dictionary, prompts, keep_dense=[D_SAE], progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        collect(small_subject, dictionary, prompts, batch_size=0, progress=False)
