"""Dictionaries: SAE Lens round trips, deterministic training, refusals, offline failure, stats."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import torch
from sae_lens import SAE, StandardSAE, StandardSAEConfig
from sae_lens.saes.sae import SAEMetadata
from transformer_lens import HookedTransformer, HookedTransformerConfig

from workbench.dictionaries import (
    Dictionary,
    check_compatible,
    evaluate_dictionary,
    load_dictionary,
    train_dictionary,
)
from workbench.fingerprint import state_dict_sha256
from workbench.subjects import Subject, make_subject

HOOK = "blocks.0.hook_resid_post"
D_MODEL = 32
D_SAE = 96
K = 8
# 72 sequences of 16 tokens: 65 train + 7 held out (10%); 16k training activations, 64 steps
TRAIN: dict[str, Any] = {
    "d_sae": D_SAE,
    "k": K,
    "training_tokens": 16_384,
    "batch_size": 256,
    "lr": 3e-3,
}


@pytest.fixture(scope="module")
def subject() -> Subject:
    cfg = HookedTransformerConfig(
        n_layers=2,
        d_model=D_MODEL,
        n_ctx=32,
        d_head=8,
        n_heads=4,
        d_vocab=50,
        act_fn="gelu",
        normalization_type="LN",
        seed=0,
    )
    return make_subject(HookedTransformer(cfg), tokenizer=None, name="tiny", source="test")


def _tokens(n_seq: int, ctx: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, 50, (n_seq, ctx), generator=g)
    tokens[:, 0] = 0  # a <bos> at position 0, as in real data
    return tokens


@pytest.fixture(scope="module")
def tokens() -> torch.Tensor:
    return _tokens(72, 16, seed=0)


@pytest.fixture(scope="module")
def trained(
    subject: Subject, tokens: torch.Tensor, tmp_path_factory: pytest.TempPathFactory
) -> Dictionary:
    out = tmp_path_factory.mktemp("trained") / "sae"
    return train_dictionary(subject, HOOK, tokens, seed=0, out_dir=out, progress=False, **TRAIN)


def _random_sae(d_in: int, d_sae: int, hook_name: str | None, seed: int) -> StandardSAE:
    metadata = SAEMetadata(hook_name=hook_name) if hook_name else SAEMetadata()
    sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=d_sae, metadata=metadata))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return sae


def _assert_same_weights(a: SAE[Any], b: SAE[Any]) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sorted(sa) == sorted(sb)
    for name in sa:
        assert torch.equal(sa[name].cpu(), sb[name].cpu()), name


# ---------------------------------------------------------------- (i) trained -> plain SAE Lens


def test_trained_dictionary_opens_with_plain_sae_lens(trained: Dictionary) -> None:
    assert trained.path is not None
    assert (trained.path / "cfg.json").is_file()
    assert (trained.path / "sae_weights.safetensors").is_file()
    assert not any(p.name.startswith(".sae.partial-") for p in trained.path.parent.iterdir())

    plain = SAE.load_from_disk(trained.path)
    _assert_same_weights(plain, trained.sae)
    assert plain.cfg.metadata.hook_name == HOOK == trained.hook_name
    assert plain.cfg.architecture() == "topk"
    assert state_dict_sha256(plain.state_dict()) == trained.fingerprint
    assert (trained.d_in, trained.d_sae) == (D_MODEL, D_SAE)
    assert trained.W_dec.shape == (D_SAE, D_MODEL)
    assert trained.W_enc.shape == (D_MODEL, D_SAE)
    assert not trained.sae.training

    feats = trained.encode(torch.randn(5, D_MODEL))
    assert feats.shape == (5, D_SAE)
    assert ((feats != 0).sum(-1) <= K).all()


def test_trained_dictionary_reloads_through_workbench(
    subject: Subject, trained: Dictionary
) -> None:
    assert trained.path is not None
    again = load_dictionary(trained.path, subject=subject, device="cpu")
    assert again.fingerprint == trained.fingerprint
    assert again.hook_name == HOOK
    assert again.path == trained.path
    _assert_same_weights(again.sae, trained.sae)


def test_out_dir_in_use_is_refused(
    subject: Subject, tokens: torch.Tensor, trained: Dictionary
) -> None:
    with pytest.raises(ValueError, match="overwrite=True"):
        train_dictionary(subject, HOOK, tokens, out_dir=trained.path, progress=False, **TRAIN)


# ---------------------------------------------------------------- (ii) SAE Lens -> workbench


def test_sae_saved_by_sae_lens_loads(subject: Subject, tmp_path: Path) -> None:
    sae = _random_sae(D_MODEL, 64, HOOK, seed=3)
    sae.save_model(tmp_path / "theirs")

    d = load_dictionary(tmp_path / "theirs", subject=subject, device="cpu")
    assert isinstance(d.sae, StandardSAE)
    _assert_same_weights(d.sae, sae)
    assert d.hook_name == HOOK
    assert (d.d_in, d.d_sae) == (D_MODEL, 64)
    assert d.fingerprint == state_dict_sha256(sae.state_dict())
    assert torch.equal(d.W_dec, sae.W_dec)
    x = torch.randn(3, D_MODEL)
    assert torch.equal(d.encode(x), sae.encode(x))


def test_sae_without_hook_name_needs_one(subject: Subject, tmp_path: Path) -> None:
    _random_sae(D_MODEL, 64, None, seed=4).save_model(tmp_path / "nohook")
    with pytest.raises(ValueError, match="hook_name"):
        load_dictionary(tmp_path / "nohook", device="cpu")
    d = load_dictionary(tmp_path / "nohook", subject=subject, device="cpu", hook_name=HOOK)
    assert d.hook_name == HOOK == d.sae.cfg.metadata.hook_name


def test_folder_that_is_not_an_sae_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"cfg\.json"):
        load_dictionary(tmp_path, device="cpu")
    with pytest.raises(ValueError, match="no SAE folder"):
        load_dictionary(tmp_path / "missing", device="cpu")


# ---------------------------------------------------------------- (iii) determinism


def test_same_seed_same_fingerprint_other_seed_differs(
    subject: Subject, tokens: torch.Tensor, tmp_path: Path
) -> None:
    small = {**TRAIN, "training_tokens": 4096}  # 16 steps: enough to test reproducibility
    first = train_dictionary(subject, HOOK, tokens, seed=0, out_dir=tmp_path / "a", **small)
    before = torch.random.get_rng_state()
    same = train_dictionary(subject, HOOK, tokens, seed=0, progress=False, **small)
    assert torch.equal(torch.random.get_rng_state(), before)  # caller's RNG untouched
    assert same.fingerprint == first.fingerprint
    assert same.path is None
    _assert_same_weights(same.sae, first.sae)

    other = train_dictionary(subject, HOOK, tokens, seed=1, progress=False, **small)
    assert other.fingerprint != first.fingerprint


# ---------------------------------------------------------------- (iv) refusals


def test_width_mismatch_is_refused_naming_both_widths(subject: Subject, tmp_path: Path) -> None:
    _random_sae(16, 64, HOOK, seed=5).save_model(tmp_path / "narrow")
    with pytest.raises(ValueError, match=r"d_in=16.*32 wide") as err:
        load_dictionary(tmp_path / "narrow", subject=subject, device="cpu")
    assert "pick a dictionary trained on this hook" in str(err.value)

    narrow = load_dictionary(tmp_path / "narrow", device="cpu")  # no subject: no check
    with pytest.raises(ValueError, match=r"d_in=16.*32 wide"):
        check_compatible(subject, narrow)


def test_unknown_hook_is_refused(subject: Subject, tmp_path: Path, tokens: torch.Tensor) -> None:
    _random_sae(D_MODEL, 64, "blocks.7.hook_resid_post", seed=6).save_model(tmp_path / "deep")
    with pytest.raises(ValueError, match=r"no hook 'blocks\.7\.hook_resid_post'"):
        load_dictionary(tmp_path / "deep", subject=subject, device="cpu")
    with pytest.raises(ValueError, match="no hook"):
        train_dictionary(subject, "blocks.7.hook_resid_post", tokens, progress=False)


def test_bad_tokens_are_refused(subject: Subject) -> None:
    with pytest.raises(ValueError, match="LongTensor"):
        train_dictionary(subject, HOOK, torch.rand(4, 8), progress=False)
    with pytest.raises(ValueError, match="vocabulary"):
        train_dictionary(subject, HOOK, torch.full((4, 8), 50), progress=False)
    with pytest.raises(ValueError, match="at most 32"):
        train_dictionary(subject, HOOK, torch.zeros((4, 33), dtype=torch.long), progress=False)


# ---------------------------------------------------------------- (v) offline pretrained


@pytest.mark.parametrize(
    "spec",
    ["gpt2-small-res-jb/blocks.8.hook_resid_pre", ("gpt2-small-res-jb", "blocks.8.hook_resid_pre")],
)
def test_pretrained_release_offline_fails_fast(spec: str | tuple[str, str]) -> None:
    start = time.monotonic()
    with pytest.raises(ValueError) as err:
        load_dictionary(spec, device="cpu")
    assert time.monotonic() - start < 10
    message = str(err.value)
    assert "HF_HUB_OFFLINE" in message
    assert "HF_HOME" in message
    assert "jbloom/GPT2-Small-SAEs-Reformatted" in message


def test_unknown_release_and_sae_id_are_refused() -> None:
    with pytest.raises(ValueError, match="no sae_id 'nope'"):
        load_dictionary("gpt2-small-res-jb/nope", device="cpu")
    with pytest.raises(ValueError, match="unknown SAE Lens release"):
        load_dictionary("no-such-release/x", device="cpu")


# ---------------------------------------------------------------- (vi) evaluation


def _brute_force(
    subject: Subject, d: Dictionary, tokens: torch.Tensor, skip_first: bool
) -> dict[str, float]:
    with torch.no_grad():
        _, cache = subject.model.run_with_cache(tokens)  # the whole model, no stop_at_layer
        acts = cache[HOOK][:, 1:] if skip_first else cache[HOOK]
        x = acts.reshape(-1, D_MODEL).double()
        feats = d.sae.encode(x.float())
        x_hat = d.sae.decode(feats).double()
    resid = ((x - x_hat) ** 2).sum()
    var = ((x - x.mean(0)) ** 2).sum()
    return {
        "explained_variance": float(1 - resid / var),
        "l0": float((feats != 0).sum(-1).double().mean()),
        "mse": float(((x - x_hat) ** 2).sum(-1).mean()),
        "dead_fraction": float(((feats != 0).sum(0) == 0).double().mean()),
        "n_tokens": x.shape[0],
    }


@pytest.mark.parametrize("skip_first", [True, False])
def test_evaluate_matches_brute_force(
    subject: Subject, trained: Dictionary, skip_first: bool
) -> None:
    held_out = _tokens(5, 12, seed=99)
    stats = evaluate_dictionary(
        subject, trained, held_out, batch_size=2, skip_first_position=skip_first
    )
    expected = _brute_force(subject, trained, held_out, skip_first)
    assert stats.n_tokens == expected["n_tokens"] == (5 * 11 if skip_first else 5 * 12)
    assert stats.explained_variance == pytest.approx(expected["explained_variance"], abs=1e-5)
    assert stats.mse == pytest.approx(expected["mse"], rel=1e-5)
    assert stats.l0 == pytest.approx(expected["l0"], rel=1e-9)
    assert stats.dead_fraction == pytest.approx(expected["dead_fraction"], abs=1e-12)


def test_training_reduces_mse_against_untrained(
    subject: Subject, trained: Dictionary, tmp_path: Path
) -> None:
    held_out = _tokens(16, 16, seed=7)
    untrained_sae = SAE.from_dict(trained.sae.cfg.to_dict())  # same architecture, fresh init
    untrained_sae.save_model(tmp_path / "untrained")
    untrained = load_dictionary(tmp_path / "untrained", subject=subject, device="cpu")
    assert untrained.fingerprint != trained.fingerprint

    after = evaluate_dictionary(subject, trained, held_out)
    before = evaluate_dictionary(subject, untrained, held_out)
    assert after.mse < 0.5 * before.mse
    assert after.explained_variance > 0.5 > before.explained_variance
    assert 0 < after.l0 <= K

    assert trained.stats is not None  # measured on the 7 held-out training sequences
    assert trained.stats.n_tokens == 7 * 15
    assert trained.stats.explained_variance > 0.5
