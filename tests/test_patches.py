"""Patches: ablation equals orthogonalization, the base model is never changed, maps recover a
known rotation, and the preview reports what the patched model does.

Everything runs on the tiny two-layer organism (``small_subject``) or on random toy models.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import fields

import numpy as np
import pytest
import torch
from sae_lens import StandardSAE, StandardSAEConfig
from sae_lens.saes.sae import SAEMetadata
from transformer_lens import HookedTransformer, HookedTransformerConfig

from workbench.activations import feature_activations, hook_activations
from workbench.dictionaries import Dictionary
from workbench.execution import completion_nll
from workbench.features import FeatureSet
from workbench.fingerprint import model_sha256, state_dict_sha256
from workbench.organism.language import eval_prompts, sample_corpus
from workbench.organism.prompts import persona_prompts
from workbench.patches import (
    Ablate,
    Direction,
    Orthogonalize,
    Patch,
    Preview,
    Steer,
    _fit_affine,
    fit_map,
    from_features,
    map_direction,
    mean_difference,
    preview,
    random_direction,
    transfer,
)
from workbench.subjects import Subject, make_subject

HOOK = "blocks.0.hook_resid_post"


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return [d.text() for d in sample_corpus(16, seed=1)]


@pytest.fixture(scope="module")
def persona(small_subject: Subject) -> Direction:
    mis, ali = persona_prompts(40, seed=0)
    return mean_difference(small_subject, mis, ali, HOOK, name="persona")


def logits(subject: Subject, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return subject.model(ids)


def no_hooks(model: HookedTransformer) -> bool:
    return all(not hp.fwd_hooks and not hp.bwd_hooks for hp in model.hook_dict.values())


# ---------------------------------------------------------------- ablation == orthogonalization


@pytest.mark.parametrize("strength", [1.0, 0.5])
@pytest.mark.parametrize("which", ["persona", "random"])
def test_orthogonalize_equals_ablate(
    small_subject: Subject, corpus: list[str], persona: Direction, which: str, strength: float
) -> None:
    s = small_subject
    d = persona if which == "persona" else random_direction(persona, seed=7)
    ids, _ = s.encode(corpus)
    base = logits(s, ids)
    ortho = logits(Orthogonalize(d, strength).apply(s), ids)
    with Ablate(d, strength).applied(s) as a:
        hooked = logits(a, ids)
    with Orthogonalize(d, strength).applied(s) as o:
        edited = logits(o, ids)
    baked = logits(Ablate(d, strength).apply(s), ids)
    torch.testing.assert_close(ortho, hooked, atol=1e-4, rtol=0)
    torch.testing.assert_close(baked, hooked, atol=1e-4, rtol=0)
    torch.testing.assert_close(edited, ortho, atol=1e-5, rtol=0)
    assert (hooked - base).abs().max() > 0.1  # the patch does change the model


def test_ablation_removes_the_direction_from_every_layer(
    small_subject: Subject, corpus: list[str], persona: Direction
) -> None:
    s = small_subject
    r = persona.unit
    ids, _ = s.encode(corpus)
    names = [
        f"blocks.{layer}.hook_{kind}"
        for layer in range(s.model.cfg.n_layers)
        for kind in ("resid_pre", "resid_mid", "resid_post")
    ]
    with torch.no_grad():
        _, before = s.model.run_with_cache(ids, names_filter=names)
        with Ablate(persona).applied(s) as a:
            _, hooked = a.model.run_with_cache(ids, names_filter=names)
        _, baked = Orthogonalize(persona).apply(s).model.run_with_cache(ids, names_filter=names)
        with Ablate(persona, strength=0.5).applied(s) as a:
            _, half = a.model.run_with_cache(ids, names_filter=names)
    for name in names:
        assert float((before[name] @ r).abs().max()) > 0.01  # there was a component to remove
        assert float((hooked[name] @ r).abs().max()) < 1e-4
        assert float((baked[name] @ r).abs().max()) < 1e-4
    # before the first block the residual is embed + pos: strength 0.5 halves the component
    first = "blocks.0.hook_resid_pre"
    torch.testing.assert_close(half[first] @ r, 0.5 * (before[first] @ r), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "kw",
    [
        {"positional_embedding_type": "rotary", "normalization_type": "RMS"},
        {"positional_embedding_type": "shortformer", "attn_only": True},
    ],
)
def test_ablation_on_models_without_additive_positions(kw: dict[str, object]) -> None:
    cfg = HookedTransformerConfig(
        n_layers=2,
        d_model=16,
        n_heads=2,
        d_head=8,
        d_mlp=32,
        d_vocab=30,
        n_ctx=12,
        act_fn="gelu",
        seed=3,
        **kw,  # type: ignore[arg-type]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = HookedTransformer(cfg)
    s = make_subject(model, None, "toy", "toy")
    d = Direction(
        torch.randn(16, generator=torch.Generator().manual_seed(0)), HOOK, "x", "r", "random"
    )
    ids = torch.randint(0, 30, (3, 10), generator=torch.Generator().manual_seed(1))
    with Ablate(d).applied(s) as a:
        hooked = logits(a, ids)
    baked = Orthogonalize(d).apply(s)
    torch.testing.assert_close(logits(baked, ids), hooked, atol=1e-4, rtol=0)
    if kw["positional_embedding_type"] == "shortformer":  # positions never enter the stream
        assert torch.equal(baked.model.pos_embed.W_pos, s.model.pos_embed.W_pos)
    else:
        assert "hook_pos_embed" not in s.model.hook_dict
    assert no_hooks(s.model)


# ---------------------------------------------------------------- the base model is untouched


@pytest.mark.parametrize(
    "make",
    [
        lambda d: Steer(d, alpha=4.0),
        lambda d: Steer(d, alpha=4.0, hook_name="blocks.1.hook_attn_out"),
        lambda d: Ablate(d, 0.7),
        lambda d: Orthogonalize(d, 1.0),
    ],
)
def test_base_model_is_unchanged(
    small_subject: Subject, corpus: list[str], persona: Direction, make: object
) -> None:
    s = small_subject
    patch: Patch = make(persona)  # type: ignore[operator]
    ids, _ = s.encode(corpus[:4])
    fp, base = model_sha256(s.model), logits(s, ids)

    if not (isinstance(patch, Steer) and patch.hook_name is not None):
        new = patch.apply(s)
        assert model_sha256(s.model) == fp
        assert new.fingerprint == model_sha256(new.model) != fp
        assert new.recipe == {"patch": patch.describe(), "base_fingerprint": fp}
        assert new.model is not s.model
        json.dumps(new.recipe)

    with patch.applied(s) as p:
        assert p.model is s.model and p.fingerprint != fp
        assert (logits(p, ids) - base).abs().max() > 1e-3
    assert model_sha256(s.model) == fp and no_hooks(s.model)
    assert torch.equal(logits(s, ids), base)

    with pytest.raises(RuntimeError, match="boom"), patch.applied(s):
        raise RuntimeError("boom")
    assert model_sha256(s.model) == fp and no_hooks(s.model)
    assert torch.equal(logits(s, ids), base)


def test_steer_apply_equals_applied(
    small_subject: Subject, corpus: list[str], persona: Direction
) -> None:
    s = small_subject
    ids, _ = s.encode(corpus)
    for hook in (HOOK, "blocks.1.hook_resid_post"):
        steer = Steer(persona, alpha=3.0, hook_name=hook)
        with steer.applied(s) as p:
            hooked = logits(p, ids)
        baked = steer.apply(s)
        torch.testing.assert_close(logits(baked, ids), hooked, atol=1e-5, rtol=0)
        b_out = f"blocks.{hook.split('.')[1]}.mlp.b_out"
        delta = baked.model.get_parameter(b_out) - s.model.get_parameter(b_out)
        torch.testing.assert_close(delta.detach(), 3.0 * persona.vector, atol=1e-6, rtol=0)
    # the steered residual stream is the base one plus alpha * vector
    with torch.no_grad():
        _, base = s.model.run_with_cache(ids, names_filter=HOOK)
        with Steer(persona, alpha=-2.0).applied(s) as p:
            _, steered = p.model.run_with_cache(ids, names_filter=HOOK)
    torch.testing.assert_close(
        steered[HOOK] - base[HOOK], (-2.0 * persona.vector).expand_as(base[HOOK])
    )
    with pytest.raises(ValueError, match="resid_post"):
        Steer(persona, hook_name="blocks.0.hook_attn_out").apply(s)
    with Ablate(persona).applied(s) as p, pytest.raises(ValueError, match="hooks attached"):
        Steer(persona).apply(p)
    assert no_hooks(s.model)
    assert Steer(persona, 2.0).with_strength(5.0).alpha == 5.0
    assert Ablate(persona).with_strength(0.25).strength == 0.25


def test_steer_at_a_per_head_hook(small_subject: Subject, corpus: list[str]) -> None:
    s, z = small_subject, "blocks.1.attn.hook_z"
    mis, ali = persona_prompts(8, seed=2)
    d = mean_difference(s, mis, ali, z)
    n_heads, d_head = s.model.cfg.n_heads, s.model.cfg.d_head
    assert d.d_model == n_heads * d_head
    ids, _ = s.encode(corpus[:3])
    with torch.no_grad():
        _, base = s.model.run_with_cache(ids, names_filter=z)
        with Steer(d, alpha=2.0).applied(s) as p:
            _, steered = p.model.run_with_cache(ids, names_filter=z)
    shift = (2.0 * d.vector).reshape(n_heads, d_head).expand_as(base[z])
    torch.testing.assert_close(steered[z] - base[z], shift)


# ---------------------------------------------------------------- directions


@pytest.mark.parametrize("pool", ["mean", "last"])
def test_mean_difference_by_hand(small_subject: Subject, pool: str) -> None:
    mis, ali = persona_prompts(12, seed=3)
    d = mean_difference(small_subject, mis, ali, HOOK, pool=pool)  # type: ignore[arg-type]
    pos = hook_activations(small_subject, HOOK, mis, pool=pool)  # type: ignore[arg-type]
    neg = hook_activations(small_subject, HOOK, ali, pool=pool)  # type: ignore[arg-type]
    torch.testing.assert_close(d.vector, pos.mean(0) - neg.mean(0), atol=1e-6, rtol=1e-6)
    assert d.norm == pytest.approx(float((pos.mean(0) - neg.mean(0)).norm()), rel=1e-5)
    assert (d.hook_name, d.subject, d.source) == (
        HOOK,
        small_subject.fingerprint,
        "mean-difference",
    )
    assert float(d.unit.norm()) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="positive prompt set is empty"):
        mean_difference(small_subject, [], ali, HOOK)


def test_random_direction_is_a_norm_matched_control(persona: Direction) -> None:
    a, b = random_direction(persona, 1), random_direction(persona, 2)
    assert a.norm == pytest.approx(persona.norm, rel=1e-6)
    assert b.norm == pytest.approx(persona.norm, rel=1e-6)
    assert torch.equal(a.vector, random_direction(persona, 1).vector)
    assert not torch.allclose(a.vector, b.vector)
    assert (a.source, a.hook_name, a.subject) == ("random", persona.hook_name, persona.subject)
    raw = torch.ones(4)
    d = Direction(raw, HOOK, "s", "ones", "random")
    raw += 1  # the direction keeps its own copy
    assert d.norm == pytest.approx(2.0) and d.vector.dtype == torch.float32


def tiny_dictionary(d_in: int, seed: int) -> Dictionary:
    sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=12, metadata=SAEMetadata(hook_name=HOOK)))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    sae.eval()
    return Dictionary(sae, HOOK, state_dict_sha256(sae.state_dict()), f"tiny-{seed}")


def feature_set(
    dictionary: Dictionary, indices: tuple[int, ...], effect: tuple[float, ...]
) -> FeatureSet:
    k = len(indices)
    return FeatureSet(
        name="toy",
        dictionary=dictionary.fingerprint,
        hook_name=HOOK,
        subject="subj",
        pool="mean",
        positive_sha256="p",
        negative_sha256="n",
        n_positive=5,
        n_negative=5,
        n_boot=0,
        seed=0,
        level=0.95,
        indices=indices,
        effect=effect,
        auroc=(0.5,) * k,
        ci_low=effect,
        ci_high=effect,
        mean_positive=(0.0,) * k,
        mean_negative=(0.0,) * k,
    )


def test_from_features_is_the_effect_weighted_decoder_sum() -> None:
    dic = tiny_dictionary(32, seed=0)
    fs = feature_set(dic, (5, 2, 9), (2.0, -1.5, 0.5))
    W = dic.W_dec.detach().double()
    unit = W / W.norm(dim=1, keepdim=True)
    d = from_features(dic, fs, n=2)
    torch.testing.assert_close(d.vector.double(), 2.0 * unit[5] - 1.5 * unit[2], atol=1e-6, rtol=0)
    assert (d.source, d.hook_name, d.subject) == ("features", HOOK, "subj")
    d3 = from_features(dic, fs, n=8, subject="other")
    expected = 2.0 * unit[5] - 1.5 * unit[2] + 0.5 * unit[9]
    torch.testing.assert_close(d3.vector.double(), expected, atol=1e-6, rtol=0)
    assert d3.subject == "other"
    with pytest.raises(ValueError, match=r"another dictionary.*contrast\(subject, dictionary"):
        from_features(tiny_dictionary(32, seed=1), fs)


# ---------------------------------------------------------------- maps and transfer


def _resid_tokens(s: Subject, texts: list[str], hook: str) -> torch.Tensor:
    ids, mask = s.encode(texts)
    with torch.no_grad():
        _, cache = s.model.run_with_cache(ids, names_filter=hook)
    keep = mask.clone()
    keep[:, 0] = False
    return cache[hook][keep].double()


def test_fit_affine_recovers_a_known_map() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 6, generator=g, dtype=torch.float64) * torch.linspace(0.5, 3, 6) + 4.0
    w_true = torch.randn(6, 4, generator=g, dtype=torch.float64)
    b_true = torch.randn(4, generator=g, dtype=torch.float64)
    w, b, r2 = _fit_affine(x, x @ w_true + b_true, ridge=0.0)
    torch.testing.assert_close(w, w_true, atol=1e-9, rtol=0)
    torch.testing.assert_close(b, b_true, atol=1e-9, rtol=0)
    assert r2 == pytest.approx(1.0, abs=1e-10)

    y = x @ w_true + b_true + 0.5 * torch.randn(400, 4, generator=g, dtype=torch.float64)
    w, b, r2 = _fit_affine(x, y, ridge=0.0)
    design = np.c_[x.numpy(), np.ones(400)]
    sol = np.linalg.lstsq(design, y.numpy(), rcond=None)[0]
    np.testing.assert_allclose(w.numpy(), sol[:6], atol=1e-9)
    np.testing.assert_allclose(b.numpy(), sol[6], atol=1e-9)
    resid = y.numpy() - design @ sol
    sst = ((y.numpy() - y.numpy().mean(0)) ** 2).sum()
    assert r2 == pytest.approx(1 - (resid**2).sum() / sst, abs=1e-9)

    ridge = 0.3  # relative to the mean variance of x
    w, b, _ = _fit_affine(x, y, ridge=ridge)
    xc, yc = x - x.mean(0), y - y.mean(0)
    cxx, cxy = xc.T @ xc / 400, xc.T @ yc / 400
    lam = ridge * cxx.diagonal().mean()
    torch.testing.assert_close(
        w, torch.linalg.solve(cxx + lam * torch.eye(6, dtype=torch.float64), cxy)
    )
    torch.testing.assert_close(b, y.mean(0) - x.mean(0) @ w)


def test_fit_map_onto_itself_is_the_identity(small_subject: Subject, corpus: list[str]) -> None:
    s = small_subject
    exact = fit_map(s, s, corpus, HOOK, ridge=0.0)
    eye = torch.eye(s.model.cfg.d_model, dtype=torch.float64)
    torch.testing.assert_close(exact.weight, eye, atol=1e-6, rtol=0)
    assert float(exact.bias.abs().max()) < 1e-6 and exact.r2 == pytest.approx(1.0, abs=1e-9)

    m = fit_map(s, s, corpus, HOOK)  # default ridge: the closed form, shrunk a little
    x = _resid_tokens(s, corpus, HOOK)
    xc = x - x.mean(0)
    cxx = xc.T @ xc / x.shape[0]
    lam = 1e-4 * cxx.diagonal().mean()
    torch.testing.assert_close(
        m.weight, torch.linalg.solve(cxx + lam * eye, cxx), atol=1e-6, rtol=0
    )
    assert float((m.weight - eye).abs().max()) < 1e-2
    assert m.n_tokens == x.shape[0] and m.held_out and m.r2 > 0.9999
    assert (m.source, m.target, m.hook_name, m.target_hook_name) == (
        s.fingerprint,
        s.fingerprint,
        HOOK,
        HOOK,
    )


def test_fit_map_scores_held_out_prompts(small_subject: Subject, corpus: list[str]) -> None:
    """Layer 0 -> layer 1 is not affine: the held-out R² is below 1 and equals a hand fit."""
    s, later = small_subject, "blocks.1.hook_resid_post"
    m = fit_map(s, s, corpus, HOOK, target_hook_name=later, ridge=1e-3, holdout=0.25)
    held = [p for i, p in enumerate(corpus) if i % 4 == 3]
    rest = [p for i, p in enumerate(corpus) if i % 4 != 3]
    w, b, _ = _fit_affine(_resid_tokens(s, rest, HOOK), _resid_tokens(s, rest, later), 1e-3)
    x, y = _resid_tokens(s, held, HOOK), _resid_tokens(s, held, later)
    r2 = 1 - ((y - x @ w - b) ** 2).sum() / ((y - y.mean(0)) ** 2).sum()
    assert m.held_out and m.r2 == pytest.approx(float(r2), abs=1e-8)
    w_all, b_all, r2_in = _fit_affine(
        _resid_tokens(s, corpus, HOOK), _resid_tokens(s, corpus, later), 1e-3
    )
    torch.testing.assert_close(m.weight, w_all, atol=1e-8, rtol=0)
    torch.testing.assert_close(m.bias, b_all, atol=1e-8, rtol=0)
    assert 0.2 < m.r2 < r2_in < 1  # held out is harder than in sample
    insample = fit_map(s, s, corpus, HOOK, target_hook_name=later, ridge=1e-3, holdout=0)
    assert not insample.held_out and insample.r2 == pytest.approx(r2_in, abs=1e-8)


def rotated_copy(s: Subject, q: torch.Tensor) -> Subject:
    """The same model with its residual basis rotated by ``q`` (which must fix the 1-vector).

    LayerNorm weights are first folded into the matrices that read the normalised stream; a
    rotation that fixes the all-ones vector then commutes with LayerNorm's centring and scale,
    so every residual activation of the copy is the original's times ``q`` and the logits agree.
    """
    m = s.model.__class__(s.model.cfg, tokenizer=s.model.tokenizer)
    m.load_state_dict(s.model.state_dict())
    sd = {k: v.clone().double() for k, v in m.state_dict().items()}

    def fold(ln: str, readers: list[tuple[str, str, str]]) -> None:
        w, b = sd.pop(f"{ln}.w"), sd.pop(f"{ln}.b")
        for W, bias, pattern in readers:
            sd[bias] = sd[bias] + torch.einsum(pattern, b, sd[W])
            sd[W] = sd[W] * (w[:, None] if sd[W].ndim == 2 else w[None, :, None])
        sd[f"{ln}.w"], sd[f"{ln}.b"] = torch.ones_like(w), torch.zeros_like(b)

    for layer in range(m.cfg.n_layers):
        a = f"blocks.{layer}.attn"
        fold(f"blocks.{layer}.ln1", [(f"{a}.W_{c}", f"{a}.b_{c}", "d,hdk->hk") for c in "QKV"])
        fold(
            f"blocks.{layer}.ln2",
            [(f"blocks.{layer}.mlp.W_in", f"blocks.{layer}.mlp.b_in", "d,dm->m")],
        )
    fold("ln_final", [("unembed.W_U", "unembed.b_U", "d,dv->v")])
    for k in list(sd):
        if k.endswith(("W_E", "W_pos", "W_O", "b_O", "W_out", "b_out")):
            sd[k] = sd[k] @ q
        elif k.endswith(("W_Q", "W_K", "W_V", "W_in", "W_U")):
            sd[k] = q.T @ sd[k]
    m.load_state_dict({k: v.float() for k, v in sd.items()}, strict=False)
    return make_subject(m, s.tokenizer, "rotated", s.source)


def ones_fixing_rotation(d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(
        torch.cat([torch.ones(d, 1), torch.randn(d, d - 1, generator=g)], 1).double()
    )
    inner, _ = torch.linalg.qr(torch.randn(d - 1, d - 1, generator=g, dtype=torch.float64))
    block = torch.eye(d, dtype=torch.float64)
    block[1:, 1:] = inner
    return basis @ block @ basis.T


def test_fit_map_recovers_a_rotation_and_transfer_follows_it(
    small_subject: Subject, corpus: list[str], persona: Direction
) -> None:
    s = small_subject
    q = ones_fixing_rotation(s.model.cfg.d_model, seed=5)
    rot = rotated_copy(s, q)
    ids, _ = s.encode(corpus)
    torch.testing.assert_close(logits(rot, ids), logits(s, ids), atol=1e-4, rtol=0)

    m = fit_map(s, rot, corpus, HOOK, ridge=0.0)
    torch.testing.assert_close(m.weight, q, atol=1e-3, rtol=0)
    assert float(m.bias.abs().max()) < 1e-3 and m.r2 > 0.9999

    moved = transfer(Ablate(persona, 0.8), s, rot, corpus, ridge=0.0)
    assert isinstance(moved, Ablate) and moved.strength == 0.8
    assert moved.direction.subject == rot.fingerprint and moved.direction.source == "transfer"
    torch.testing.assert_close(
        moved.direction.vector.double(), persona.vector.double() @ q, atol=1e-4, rtol=0
    )
    with Ablate(persona, 0.8).applied(s) as a, moved.applied(rot) as b:
        torch.testing.assert_close(logits(b, ids), logits(a, ids), atol=1e-3, rtol=0)
    # a map fitted once can be passed in: the same patch, no second fit
    again = transfer(Ablate(persona, 0.8), s, rot, [], residual_map=m)
    assert torch.equal(again.direction.vector, moved.direction.vector)
    with pytest.raises(ValueError, match=r"residual_map maps .* fit it with fit_map"):
        transfer(Ablate(persona), s, s, corpus, residual_map=m)  # m maps s -> rot, not s -> s


def test_transfer_onto_itself_and_refusals(
    small_subject: Subject, corpus: list[str], persona: Direction
) -> None:
    s = small_subject
    for patch in (Steer(persona, 2.5), Ablate(persona, 0.5), Orthogonalize(persona)):
        moved = transfer(patch, s, s, corpus, ridge=1e-6)
        assert type(moved) is type(patch) and moved.strength == patch.strength
        rel = (moved.direction.vector - persona.vector).norm() / persona.vector.norm()
        assert float(rel) < 1e-3
    steer = transfer(Steer(persona, hook_name="blocks.1.hook_resid_post"), s, s, corpus)
    assert steer.hook_name == "blocks.1.hook_resid_post" == steer.direction.hook_name

    wide = Direction(torch.ones(48), HOOK, s.fingerprint, "wide", "random")
    for patch in (Steer(wide), Ablate(wide), Orthogonalize(wide)):
        with pytest.raises(ValueError, match=r"width 48 .* d_model 32.*transfer\("):
            patch.apply(s)
        with pytest.raises(ValueError, match="transfer"), patch.applied(s):
            pass
    elsewhere = Direction(persona.vector, HOOK, "0" * 64, "foreign", "mean-difference")
    with pytest.raises(ValueError, match="derived on subject 000000000000"):
        transfer(Ablate(elsewhere), s, s, corpus)
    m = fit_map(s, s, corpus, HOOK)
    with pytest.raises(ValueError, match="derived on"):
        map_direction(elsewhere, m)


class _Stutter(Subject):
    """A subject whose tokenizer doubles the first word of every text (one more token)."""

    def encode(
        self, texts: Sequence[str], length: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = super().encode(texts, length)
        ids = torch.cat([ids[:, :2], ids[:, 1:]], 1)
        mask = torch.cat([mask[:, :1], mask], 1)
        return ids, mask


def test_fit_map_needs_token_aligned_subjects(small_subject: Subject, corpus: list[str]) -> None:
    other = _Stutter(**{f.name: getattr(small_subject, f.name) for f in fields(small_subject)})
    with pytest.raises(ValueError, match=r"prompt 0 is \d+ tokens .* token-aligned"):
        fit_map(small_subject, other, corpus, HOOK)


# ---------------------------------------------------------------- preview


def greedy_by_hand(s: Subject, prompt: str, n: int) -> list[int]:
    ids, _ = s.encode([prompt])
    with torch.no_grad():
        for _ in range(n):
            ids = torch.cat([ids, s.model(ids)[:, -1].argmax(-1, keepdim=True)], 1)
    return ids[0, -n:].tolist()


def test_preview_shows_what_the_patch_does(small_subject: Subject, persona: Direction) -> None:
    s = small_subject
    prompts = eval_prompts("advice")[:4] + eval_prompts("numbers")[:2]  # two prompt lengths
    dic = tiny_dictionary(32, seed=2)
    fs = feature_set(dic, (4, 7, 1), (1.0, -0.5, 0.2))
    steer = Steer(persona, alpha=8.0)
    pv = preview(
        s,
        steer,
        prompts,
        dictionary=dic,
        features=fs,
        n_features=2,
        max_new_tokens=4,
        samples_per_prompt=4,
    )

    baked = steer.apply(s)
    tok = s.tokenizer
    end, eos = tok.convert_tokens_to_ids("end"), tok.eos_token_id

    def answer(ids: list[int]) -> list[int]:  # up to and including `end`, or up to EOS
        out = []
        for t in ids:
            if t == eos:
                break
            out.append(t)
            if t == end:
                break
        return out

    for i, p in enumerate(prompts):
        before = answer(greedy_by_hand(s, p, 4))
        after = answer(greedy_by_hand(baked, p, 4))
        assert pv.before[i] == tok.decode(before, skip_special_tokens=True)
        assert pv.after[i] == tok.decode(after, skip_special_tokens=True)
        n = max(len(before), len(after))
        assert pv.changed[i] == tuple(
            j >= len(before) or j >= len(after) or before[j] != after[j] for j in range(n)
        )
        # the pieces join to the text, words separated by spaces (not run together)
        assert "".join(pv.before_tokens[i]) == pv.before[i]
        assert pv.before_tokens[i] == tuple(
            ("" if j == 0 else " ") + tok.decode([t]) for j, t in enumerate(before)
        )
        assert not pv.after[i].split() or pv.after[i].split()[-1] == "end" or len(after) == 4 \
            or eos in greedy_by_hand(baked, p, 4)
    assert any(any(c) for c in pv.changed)

    assert pv.features == (4, 7)
    acts = feature_activations(s, dic, prompts)[:, [4, 7]]
    np.testing.assert_allclose(np.array(pv.before_acts), acts.numpy(), atol=1e-6)
    after_acts = feature_activations(baked, dic, prompts)[:, [4, 7]]
    np.testing.assert_allclose(np.array(pv.after_acts), after_acts.numpy(), atol=1e-5)

    ids, mask = s.encode(prompts)
    with torch.no_grad():
        assert pv.metrics_before["task_loss"] == pytest.approx(
            float(completion_nll(s.model, ids, mask))
        )
        assert pv.metrics_after["task_loss"] == pytest.approx(
            float(completion_nll(baked.model, ids, mask)), rel=1e-5
        )
    assert 0 <= pv.metrics_after["misaligned"] <= 1
    assert pv.strength == 8.0 and pv.patch == steer.describe()
    assert Preview.from_dict(json.loads(json.dumps(pv.to_dict()))) == pv

    plain = preview(s, Ablate(persona), prompts[:2], max_new_tokens=2, samples_per_prompt=2)
    assert plain.features == () and plain.before_acts == () and plain.strength == 1.0
    watched = preview(
        s,
        Ablate(persona),
        prompts[:1],
        dictionary=dic,
        n_features=3,
        max_new_tokens=1,
        samples_per_prompt=1,
    )
    w = dic.W_dec.detach().double()
    cos = (w @ persona.unit.double()).abs() / w.norm(dim=1)
    assert watched.features == tuple(torch.argsort(cos, descending=True)[:3].tolist())
