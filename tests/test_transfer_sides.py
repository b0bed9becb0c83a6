"""Transfer sides: how a patch crosses a map between two models (workbench.patches._transfer).

``Steer`` adds ``δ`` in source space, which is ``δ @ W`` in target space (the push-forward).
``Ablate`` removes ``(x . r̂) r̂``; under ``y = x @ A`` its exact image is the oblique projection
that reads along the pull-back ``A⁻¹ r̂`` (the reverse regression ``V @ r̂``) and removes along the
push-forward ``r̂ @ A`` (``side="oblique"``). Pushing forward alone (the default, and the first
wave's only transfer) or pulling back alone are exact only for orthogonal ``A``, which is all the
rotation test in ``test_patches.py`` checks, so here every map is deliberately not orthogonal:

* an exact affine map on random data, where the pull-back must be ``A⁻¹ r`` and read ``x . r``;
* toy models without LayerNorm, one the exact linear image ``x @ A`` of the other (``A``
  square, or 32 -> 48 wide), where a steered copy must match the steered original, the oblique
  ablation must give the ablated original's logits (and either single side must not), and an
  ablation along the pull-back must have removed the source's reading at every layer;
* two trained small organisms (seeds 0 and 1), where the reverse map must equal a hand fit and
  predict the source's reading on unseen prompts better than the push-forward direction.

Which side works best through a *fitted* map between organisms is measured in
``benchmarks/alignment.py``, not here.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import ClassVar

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from workbench.organism import SMALL_CONFIG, Organism, load_organism
from workbench.organism.language import sample_corpus
from workbench.organism.prompts import persona_prompts
from workbench.organism.tokenizer import build_tokenizer
from workbench.patches import (
    Ablate,
    Direction,
    Orthogonalize,
    Patch,
    ResidualMap,
    Steer,
    _fit_affine,
    fit_map,
    map_direction,
    mean_difference,
    patch_side,
    transfer,
)
from workbench.subjects import Subject, make_subject, organism_subject

HOOK = "blocks.0.hook_resid_post"
RESID = [f"blocks.{layer}.hook_resid_{k}" for layer in (0, 1) for k in ("pre", "mid", "post")]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def non_orthogonal(d_src: int, d_tgt: int, seed: int) -> torch.Tensor:
    """``Q1 diag(s) Q2[:d_src]``, singular values log-spaced in [0.5, 2] (condition number 4)."""
    g = torch.Generator().manual_seed(seed)
    q1, _ = torch.linalg.qr(torch.randn(d_src, d_src, generator=g, dtype=torch.float64))
    q2, _ = torch.linalg.qr(torch.randn(d_tgt, d_tgt, generator=g, dtype=torch.float64))
    s = torch.logspace(-0.30103, 0.30103, d_src, dtype=torch.float64)
    return q1 @ torch.diag(s) @ q2[:d_src]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


# ---------------------------------------------------------------- an exact affine map


def test_pull_back_is_the_inverse_and_reads_what_the_source_read() -> None:
    g = torch.Generator().manual_seed(0)
    n, d = 2000, 8
    x = torch.randn(n, d, generator=g, dtype=torch.float64) * torch.linspace(0.5, 3, d) + 2.0
    a = non_orthogonal(d, d, seed=1)
    c = torch.randn(d, generator=g, dtype=torch.float64)
    y = x @ a + c
    assert float((a @ a.T - torch.eye(d, dtype=torch.float64)).abs().max()) > 0.5
    w, b, r2 = _fit_affine(x, y, ridge=0.0)
    v, v_bias, reverse_r2 = _fit_affine(y, x, ridge=0.0)  # the reverse regression
    m = ResidualMap(w, b, v, v_bias, HOOK, HOOK, "src", "tgt", r2, reverse_r2, False, n, 0.0)
    torch.testing.assert_close(m.reverse_weight, torch.linalg.inv(a), atol=1e-9, rtol=0)
    torch.testing.assert_close(m.reverse(y), x, atol=1e-9, rtol=0)

    r = torch.randn(d, generator=g, dtype=torch.float64)
    direction = Direction(r, HOOK, "src", "r", "random")
    r = direction.vector.double()  # as stored (float32)
    pull = map_direction(direction, m, side="read")
    push = map_direction(direction, m)  # the default: the write side, what transfer did before
    assert map_direction(direction, m, side="write").vector.equal(push.vector)
    torch.testing.assert_close(pull.vector.double(), torch.linalg.solve(a, r), atol=1e-6, rtol=0)
    torch.testing.assert_close(push.vector.double(), r @ a, atol=1e-6, rtol=0)
    assert pull.name == "r (transferred, read side)" and push.name == "r (transferred, write side)"
    assert (pull.subject, pull.hook_name, pull.source) == ("tgt", HOOK, "transfer")

    # the read side reads, in target space, exactly what r read in source space; the
    # push-forward reads x A Aᵀ r instead (measured: 3e-8 against 0.65 of the reading's norm)
    truth = x @ r
    assert rel((y - c) @ pull.vector.double(), truth) < 1e-6
    assert rel((y - c) @ push.vector.double(), truth) > 0.3
    # for an orthogonal map the two sides agree, which is why the rotation test did not see it
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    wq, bq, _ = _fit_affine(x, x @ q + c, ridge=0.0)
    vq, cq, _ = _fit_affine(x @ q + c, x, ridge=0.0)
    mq = ResidualMap(wq, bq, vq, cq, HOOK, HOOK, "src", "tgt", 1.0, 1.0, False, n, 0.0)
    torch.testing.assert_close(
        map_direction(direction, mq, side="read").vector, map_direction(direction, mq).vector
    )


# ---------------------------------------------------------------- exact linear copies of a model


@pytest.fixture(scope="module")
def toy() -> Subject:
    """A random two-layer model with no LayerNorm (so its residual stream can be mapped by any
    invertible linear map), on the organism's tokenizer, in float64."""
    tok = build_tokenizer()
    return make_subject(_toy_model(32, tok, seed=0), tok, "toy", "test")


def _toy_model(d_model: int, tok: object, seed: int) -> HookedTransformer:
    cfg = HookedTransformerConfig(
        n_layers=2, d_model=d_model, n_heads=2, d_head=16, d_mlp=64,
        d_vocab=len(tok.get_vocab()),  # type: ignore[attr-defined]
        n_ctx=64, act_fn="gelu", normalization_type=None, positional_embedding_type="standard",
        default_prepend_bos=True, seed=seed, dtype=torch.float64,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "HookedTransformer is deprecated", DeprecationWarning)
        model = HookedTransformer(cfg)
    model.set_tokenizer(tok)
    return model


def linear_copy(s: Subject, a: torch.Tensor) -> Subject:
    """``s`` with its residual stream mapped by ``a`` ``[d, d_tgt]`` (full row rank): every
    writer right-multiplied by ``a``, every reader left-multiplied by ``pinv(a)``, so every
    residual activation of the copy is the original's ``@ a`` and the logits agree."""
    model = _toy_model(a.shape[1], s.tokenizer, seed=1)
    back = torch.linalg.pinv(a)
    sd = {}
    for k, v in s.model.state_dict().items():
        if k.endswith(("W_E", "W_pos", "W_O", "b_O", "W_out", "b_out")):
            v = v @ a
        elif k.endswith(("W_Q", "W_K", "W_V", "W_in", "W_U")):
            v = back @ v
        sd[k] = v
    model.load_state_dict(sd, strict=False)
    return make_subject(model, s.tokenizer, f"toy@A{a.shape[1]}", "test")


def logits(s: Subject, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return s.model(ids)


def resid(s: Subject, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        _, cache = s.model.run_with_cache(ids, names_filter=RESID)
    return {n: cache[n] for n in RESID}


@pytest.mark.parametrize("d_tgt", [32, 48])
def test_transfer_through_an_exact_linear_copy(toy: Subject, d_tgt: int) -> None:
    """Steer is carried by ``δ @ A`` and then acts exactly as on the source; Ablate by
    ``pinv(A) @ r`` and then removes the source's reading at every layer."""
    a = non_orthogonal(32, d_tgt, seed=2)
    back = torch.linalg.pinv(a)
    tgt = linear_copy(toy, a)
    corpus = [doc.text() for doc in sample_corpus(16, seed=1)]
    ids, _ = toy.encode(corpus)
    base, copy = resid(toy, ids), resid(tgt, ids)
    for name in RESID:
        torch.testing.assert_close(copy[name], base[name] @ a, atol=1e-10, rtol=0)
    mis, ali = persona_prompts(40, seed=0)
    d = mean_difference(toy, mis, ali, HOOK, name="persona")

    m = fit_map(toy, tgt, corpus, HOOK, ridge=0.0)
    assert m.weight.shape == (32, d_tgt) and m.bias.shape == (d_tgt,)
    assert m.reverse_weight.shape == (d_tgt, 32) and m.reverse_bias.shape == (32,)
    torch.testing.assert_close(m.weight, a, atol=1e-8, rtol=0)
    torch.testing.assert_close(m.reverse_weight, back, atol=1e-8, rtol=0)  # min norm if wider
    assert m.r2 == pytest.approx(1, abs=1e-9) and m.reverse_r2 == pytest.approx(1, abs=1e-9)

    read, write = map_direction(d, m, side="read"), map_direction(d, m, side="write")
    assert read.d_model == write.d_model == d_tgt
    assert rel(read.vector, back @ d.vector.double()) < 1e-6
    assert rel(write.vector, d.vector.double() @ a) < 1e-6
    unit = Direction(d.unit, d.hook_name, d.subject, "persona", "mean-difference")
    read_unit = map_direction(unit, m, side="read")
    for reader in (Ablate(d, 0.9), Orthogonalize(d, 0.9)):
        # by default an ablation's direction (a displacement) is pushed forward; side="read"
        # pulls it back; side="oblique" removes along the push-forward what the pull-back reads
        moved = transfer(reader, toy, tgt, [], residual_map=m)
        assert type(moved) is type(reader) and moved.strength == 0.9 and moved.reading is None
        assert moved.direction.vector.equal(write.vector)
        pulled = transfer(reader, toy, tgt, [], residual_map=m, side="read")
        assert pulled.direction.vector.equal(read.vector) and pulled.reading is None
        assert pulled.direction.name == "persona (transferred, read side)"
        oblique = transfer(reader, toy, tgt, [], residual_map=m, side="oblique")
        assert oblique.direction.vector.equal(write.vector)
        assert oblique.reading is not None and oblique.reading.vector.equal(read_unit.vector)
        assert oblique.direction.name == "persona (transferred, write side)"
        assert oblique.reading.name == "persona (transferred, read side)"
    with pytest.raises(ValueError, match="is carried by one of"):
        transfer(Ablate(d), toy, tgt, [], residual_map=m, side="sideways")
    with pytest.raises(ValueError, match="carried by its 'write' side"):
        transfer(Steer(d), toy, tgt, [], residual_map=m, side="read")
    steer = transfer(Steer(d, 2.0), toy, tgt, [], residual_map=m)
    assert steer.direction.vector.equal(write.vector) and steer.alpha == 2.0
    assert steer.direction.name == "persona (transferred, write side)"
    # fitted by transfer itself with the default ridge: the same side, shrunk a little
    fitted = transfer(Ablate(d), toy, tgt, corpus, side="oblique")
    assert fitted.reading is not None
    assert rel(fitted.reading.vector, read_unit.vector) < 5e-3  # measured 1.3e-3, 8.6e-4 (48)
    assert rel(fitted.direction.vector, write.vector) < 5e-3

    # write side: adding δ @ A to the copy is adding δ to the original, to the logit (measured
    # 2e-9: the vectors are float32); the pulled-back vector steers elsewhere (0.13 off, where
    # the steer itself moves the logits by 0.047)
    with Steer(d, 2.0).applied(toy) as s:
        steered = logits(s, ids)
    shift = float((steered - logits(toy, ids)).abs().max())
    for writer, most in ((steer, 1e-6), (replace(steer, direction=read), None)):
        with writer.applied(tgt) as t:
            miss = float((logits(t, ids) - steered).abs().max())
        assert miss < most if most is not None else miss > 0.3 * shift
    # the transferred ablation is the source's ablation, exactly: the copy under it computes the
    # ablated source's logits; either orthogonal ablation alone (along the pull-back or along
    # the push-forward) does not
    with Ablate(d).applied(toy) as s:
        ablated = logits(s, ids)
    effect = float((ablated - logits(toy, ids)).abs().max())
    with transfer(Ablate(d), toy, tgt, [], residual_map=m, side="oblique").applied(tgt) as t:
        assert float((logits(t, ids) - ablated).abs().max()) < 1e-6 * max(effect, 1.0)
    for one_side in (read, write):
        with Ablate(one_side).applied(tgt) as t:
            assert float((logits(t, ids) - ablated).abs().max()) > 0.05 * effect
    # read side: the ablated copy has no component left that the source's r would read, at any
    # layer (measured 6e-8 of its norm); the push-forward direction leaves all of it (0.99-1.27)
    r = d.unit.double()
    for direction, most in ((read, 1e-6), (write, None)):
        with Ablate(direction).applied(tgt) as t:
            after = resid(t, ids)
        left = [float((after[n] @ back @ r).norm() / (base[n] @ r).norm()) for n in RESID]
        if most is not None:
            assert max(left) < most, left
        else:
            assert min(left) > 0.5, left


# ---------------------------------------------------------------- two trained organisms


@pytest.fixture(scope="module")
def other_seed() -> Subject:
    built = load_organism(seed=1, config=SMALL_CONFIG, device="cpu", progress=False)
    return organism_subject(built, Organism(seed=1, config=SMALL_CONFIG))


def tokens(s: Subject, texts: list[str], hook: str = HOOK) -> torch.Tensor:
    ids, mask = s.encode(texts)
    with torch.no_grad():
        _, cache = s.model.run_with_cache(ids, names_filter=hook)
    keep = mask.clone()
    keep[:, 0] = False
    return cache[hook][keep].double()


def test_reverse_map_between_two_organism_seeds(
    small_subject: Subject, other_seed: Subject
) -> None:
    """Between two independently trained organisms the reverse map is the hand fit of the source
    on the target, and its pull-back predicts the source's reading on unseen prompts better than
    the push-forward direction does (measured correlation 0.834 against 0.745)."""
    src, tgt = small_subject, other_seed
    corpus = [doc.text() for doc in sample_corpus(48, seed=1)]
    m = fit_map(src, tgt, corpus, HOOK)  # holdout 0.2: every 5th prompt scored
    x, y = tokens(src, corpus), tokens(tgt, corpus)
    v, c, _ = _fit_affine(y, x, 1e-4)
    torch.testing.assert_close(m.reverse_weight, v, atol=1e-8, rtol=0)
    torch.testing.assert_close(m.reverse_bias, c, atol=1e-8, rtol=0)
    held = [p for i, p in enumerate(corpus) if i % 5 == 4]
    rest = [p for i, p in enumerate(corpus) if i % 5 != 4]
    v_rest, c_rest, _ = _fit_affine(tokens(tgt, rest), tokens(src, rest), 1e-4)
    xh, yh = tokens(src, held), tokens(tgt, held)
    r2 = 1 - ((xh - yh @ v_rest - c_rest) ** 2).sum() / ((xh - xh.mean(0)) ** 2).sum()
    assert m.held_out and m.reverse_r2 == pytest.approx(float(r2), abs=1e-8)
    assert 0.6 < m.reverse_r2 < 0.95 and 0.6 < m.r2 < 0.95  # related, far from exact (0.80, 0.81)

    mis, ali = persona_prompts(40, seed=0)
    d = mean_difference(src, mis, ali, HOOK, name="persona")
    read, write = map_direction(d, m, side="read"), map_direction(d, m, side="write")
    moved = transfer(Ablate(d), src, tgt, [], residual_map=m, side="oblique")
    assert moved.direction.vector.equal(write.vector) and moved.reading is not None
    unit = Direction(d.unit, d.hook_name, d.subject, "persona", "mean-difference")
    assert moved.reading.vector.equal(map_direction(unit, m, side="read").vector)
    pulled = transfer(Ablate(d), src, tgt, [], residual_map=m, side="read")
    assert pulled.direction.vector.equal(read.vector)
    assert transfer(Steer(d), src, tgt, [], residual_map=m).direction.vector.equal(write.vector)
    unseen = [doc.text() for doc in sample_corpus(16, seed=2)]
    xu, yu = tokens(src, unseen), tokens(tgt, unseen)
    truth = xu @ d.vector.double()
    # the read side is the reverse map's prediction of the reading, bias aside
    torch.testing.assert_close(
        yu @ read.vector.double() + m.reverse_bias @ d.vector.double(),
        m.reverse(yu) @ d.vector.double(),
        atol=1e-5,
        rtol=0,
    )

    def corr(t: torch.Tensor) -> float:
        return float(torch.corrcoef(torch.stack([yu @ t.double(), truth]))[0, 1])

    assert corr(read.vector) > corr(write.vector) + 0.05, (corr(read.vector), corr(write.vector))


# ---------------------------------------------------------------- which side, and refusals


@dataclass(frozen=True)
class _Reads(Patch):
    direction: Direction
    strength: float = 1.0
    side: ClassVar[str] = "read"


@dataclass(frozen=True)
class _Writes(Ablate):  # a class attribute overrides the built-in choice
    side: ClassVar[str] = "write"


@dataclass(frozen=True)
class _Sideways(Patch):
    direction: Direction
    side: ClassVar[str] = "sideways"


@dataclass(frozen=True)
class _Unsided:  # patch-like, but says nothing about how it uses its direction
    direction: Direction


def test_patch_side_and_refusals(small_subject: Subject) -> None:
    s = small_subject
    d = Direction(torch.ones(32), HOOK, s.fingerprint, "ones", "random")
    assert patch_side(Steer(d)) == "write"
    assert patch_side(Ablate(d)) == patch_side(Orthogonalize(d)) == "read"
    assert patch_side(_Reads(d)) == "read" and patch_side(_Writes(d)) == "write"
    eye = torch.eye(32, dtype=torch.float64)
    zero = torch.zeros(32, dtype=torch.float64)
    fp = s.fingerprint
    m = ResidualMap(eye, zero, 2 * eye, zero, HOOK, HOOK, fp, fp, 1, 1, False, 9, 0)
    assert transfer(_Reads(d), s, s, [], residual_map=m).direction.vector.equal(2 * d.vector)
    assert transfer(_Writes(d), s, s, [], residual_map=m).direction.vector.equal(d.vector)
    with pytest.raises(ValueError, match=r"_Sideways.side is 'sideways'"):
        patch_side(_Sideways(d))
    unsided = r"_Unsided.*`side: ClassVar\[str\]`.*\"read\""
    with pytest.raises(ValueError, match=unsided):
        patch_side(_Unsided(d))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=unsided):  # before any fit
        transfer(_Unsided(d), s, s, [], residual_map=m)  # type: ignore[type-var]
    with pytest.raises(ValueError, match=r"side='sideways'.*\"write\".*\"read\""):
        map_direction(d, m, side="sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"reverse_weight .* \[\[32\], \[32, 32\], \[32\]\]"):
        ResidualMap(eye, zero, eye[:, :8], zero, HOOK, HOOK, "s", "t", 1, 1, False, 9, 0)
