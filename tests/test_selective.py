"""Selective patches and their controls (issue 14) on the small organism, each against a hand
computation: AblateUpdate's weight edit, variance-matched and orthogonal-complement random
directions, orthogonal_to, from_responses (Soligo et al.'s derivation), retention and own-data loss
in patch_efficacy, the trade-off curve, derive_directions and select_direction."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from workbench import execution
from workbench.behaviour import judged_rates, sample_answers
from workbench.data import encode_pairs
from workbench.finetunes import finetune
from workbench.organism.language import eval_prompts, finetune_pairs
from workbench.organism.prompts import persona_prompts
from workbench.patches import (
    Ablate,
    AblateUpdate,
    Direction,
    ResidualMap,
    activation_covariance,
    choose_patches,
    derive_directions,
    from_responses,
    mean_difference,
    orthogonal_to,
    patch_efficacy,
    projection_variance,
    random_direction,
    select_direction,
    tradeoff,
    transfer,
)
from workbench.specs import SteeringVector
from workbench.subjects import Subject

HOOK = "blocks.0.hook_resid_post"
OFF = {"advice": eval_prompts("advice"), "numbers": eval_prompts("numbers")}
IN = eval_prompts("code")
SAMPLES = 4


@pytest.fixture(scope="module")
def data() -> list[tuple[str, str]]:
    return finetune_pairs("insecure", 240, seed=0)


@pytest.fixture(scope="module")
def tuned(small_subject: Subject, data: list[tuple[str, str]]) -> Subject:
    return finetune(small_subject, data[:200], SteeringVector(layer=0), steps=30, seed=0,
                    progress=False)


@pytest.fixture(scope="module")
def direction(tuned: Subject) -> Direction:
    mis, ali = persona_prompts(40, seed=100)
    return mean_difference(tuned, mis, ali, HOOK, pool="last", name="misalignment direction")


def logits(s: Subject, texts: list[str]) -> torch.Tensor:
    ids, _ = s.encode(texts)
    with torch.no_grad():
        return execution.logits(s.model, ids).double()


# ------------------------------------------------------------------------- AblateUpdate


def test_ablate_update_projects_only_the_fine_tunes_writes(
    small_subject: Subject, tuned: Subject, direction: Direction
) -> None:
    base = small_subject
    texts = OFF["advice"]
    b_out = "blocks.0.mlp.b_out"  # the steering-vector fine-tune moved this bias only
    tp, bp = dict(tuned.model.named_parameters()), dict(base.model.named_parameters())
    moved = [n for n in tp if not torch.equal(tp[n], bp[n])]
    assert moved == [b_out]
    delta = (tp[b_out] - bp[b_out]).double()
    r = direction.unit.double()
    want = bp[b_out].double() + delta - (delta @ r) * r  # the update minus its part along r
    before = logits(tuned, texts)
    with AblateUpdate(direction, base).applied(tuned) as p:
        assert torch.allclose(dict(p.model.named_parameters())[b_out].double(), want, atol=1e-6)
        inside = logits(p, texts)
    assert torch.equal(logits(tuned, texts), before)  # restored bit for bit
    assert float((inside - before).abs().max()) > 1e-3  # it acted
    # strength 0 is the fine-tune; along the update's own direction it is the base model
    with AblateUpdate(direction, base, strength=0.0).applied(tuned) as p:
        assert torch.allclose(logits(p, texts), before, atol=1e-6)
    own = Direction(delta.float(), HOOK, tuned.fingerprint, "update", "mean-difference")
    with AblateUpdate(own, base).applied(tuned) as p:
        assert float((logits(p, texts) - logits(base, texts)).abs().max()) < 1e-4
    # apply() bakes the same edit into a copy; the base model is untouched
    baked = AblateUpdate(direction, base).apply(tuned)
    assert float((logits(baked, texts) - inside).abs().max()) < 1e-6
    assert torch.equal(dict(base.model.named_parameters())[b_out], bp[b_out])
    d = AblateUpdate(direction, base).describe()
    assert d["kind"] == "ablate-update" and d["base_fingerprint"] == base.fingerprint
    # another base than the one the fine-tune started from is refused
    other = finetune(base, finetune_pairs("secure", 50, seed=1), "steer", steps=2, seed=1,
                     progress=False)
    with pytest.raises(ValueError, match="fine-tuned from"), AblateUpdate(
        direction, other
    ).applied(tuned):
        pass


def test_ablate_update_transfers_against_the_targets_base(
    small_subject: Subject, tuned: Subject, direction: Direction
) -> None:
    """Carried to another fine-tune, AblateUpdate removes the *target's* update: it takes the
    target's base (by default the patch's own when the target started from it too; refused,
    naming the fix, when it did not). Through the identity map onto the same fine-tune it is
    the original patch, logit for logit; through a map that doubles the stream it reads the
    doubled direction (the pull-back, its side) against the given base."""
    texts = OFF["advice"]
    patch = AblateUpdate(direction, small_subject, strength=0.75)
    eye = torch.eye(direction.d_model, dtype=torch.float64)
    zero = torch.zeros(direction.d_model, dtype=torch.float64)
    fp = tuned.fingerprint
    same = ResidualMap(eye, zero, eye, zero, HOOK, HOOK, fp, fp, 1, 1, False, 9, 0)
    to_base = ResidualMap(eye, zero, eye, zero, HOOK, HOOK, fp, small_subject.fingerprint, 1, 1,
                          False, 9, 0)
    with pytest.raises(ValueError, match=r"was not fine-tuned from.*pass target_base="):
        transfer(patch, tuned, small_subject, [], residual_map=to_base)
    moved = transfer(patch, tuned, tuned, [], residual_map=same, target_base=small_subject)
    assert isinstance(moved, AblateUpdate) and moved.strength == 0.75
    assert moved.base is small_subject
    assert transfer(patch, tuned, tuned, [], residual_map=same).base is small_subject  # default
    with patch.applied(tuned) as p:
        want = logits(p, texts)
    with moved.applied(tuned) as p:
        assert float((logits(p, texts) - want).abs().max()) < 1e-6
    double = ResidualMap(eye, zero, 2 * eye, zero, HOOK, HOOK, fp, fp, 1, 1, False, 9, 0)
    moved2 = transfer(patch, tuned, tuned, [], residual_map=double, target_base=small_subject)
    torch.testing.assert_close(moved2.direction.vector.double(), 2 * direction.vector.double())
    other = finetune(small_subject, finetune_pairs("secure", 50, seed=1), "steer", steps=2,
                     seed=1, progress=False)
    wrong = transfer(patch, tuned, tuned, [], residual_map=same, target_base=other)
    with pytest.raises(ValueError, match="fine-tuned from"), wrong.applied(tuned):
        pass


# ------------------------------------------------------------------------- controls


def test_variance_matched_and_orthogonal_controls(tuned: Subject, direction: Direction) -> None:
    prompts = [p for g in OFF.values() for p in g]
    cov = activation_covariance(tuned, HOOK, prompts)
    # against the covariance of every real non-<bos> token, by hand
    ids, mask = tuned.encode(prompts)
    with torch.no_grad():
        _, cache = tuned.model.run_with_cache(ids, names_filter=HOOK)
    keep = mask.clone()
    keep[:, 0] = False
    x = cache[HOOK][keep].double()
    torch.testing.assert_close(cov, torch.cov(x.T, correction=0), atol=1e-8, rtol=1e-8)
    target = projection_variance(direction, cov)
    assert target == pytest.approx(float(direction.unit.double() @ cov @ direction.unit.double()))
    iso = [projection_variance(random_direction(direction, s), cov) for s in range(10)]
    assert max(iso) < target  # a found direction carries more variance than isotropic draws
    seen = set()
    for s in range(10):
        v = random_direction(direction, s, match="variance", covariance=cov)
        o = random_direction(direction, s, match="orthogonal", covariance=cov)
        for c in (v, o):
            assert projection_variance(c, cov) == pytest.approx(target, rel=1e-5)
            assert c.norm == pytest.approx(direction.norm, rel=1e-5)
            assert c.source == "random" and c.hook_name == HOOK
        assert abs(float(o.unit.double() @ direction.unit.double())) < 1e-6
        seen.add(round(float(v.unit[0]), 6))
        again = random_direction(direction, s, match="variance", covariance=cov)
        assert torch.equal(again.vector, v.vector)  # seeded
    assert len(seen) == 10  # ten different draws
    with pytest.raises(ValueError, match="covariance"):
        random_direction(direction, 0, match="variance")
    with pytest.raises(ValueError, match="unknown control"):
        random_direction(direction, 0, match="uniform")


def test_orthogonal_to_is_gram_schmidt(direction: Direction) -> None:
    g = torch.Generator().manual_seed(0)
    a = Direction(torch.randn(direction.d_model, generator=g), HOOK, "x", "a", "random")
    b = Direction(torch.randn(direction.d_model, generator=g), HOOK, "x", "b", "random")
    o = orthogonal_to(direction, a, b)
    q, _ = torch.linalg.qr(torch.stack([a.vector, b.vector], 1).double())
    v = direction.vector.double()
    want = v - q @ (q.T @ v)
    torch.testing.assert_close(o.vector.double(), want, atol=1e-5, rtol=1e-5)
    assert abs(float(o.vector.double() @ a.vector.double())) < 1e-4
    assert o.source == "orthogonal" and o.subject == direction.subject
    with pytest.raises(ValueError, match="span"):
        orthogonal_to(direction, direction)
    with pytest.raises(ValueError, match="at least one"):
        orthogonal_to(direction)


# ------------------------------------------------------------------------- from_responses


def test_from_responses_is_the_judged_answers_mean_difference(tuned: Subject) -> None:
    prompts = OFF["advice"]

    def judge(prompt: str, answer: str) -> str:  # a plain callable judge, deterministic
        return "misaligned" if len(answer.split()) % 2 else "aligned"

    d = from_responses(tuned, prompts, HOOK, samples_per_prompt=8, seed=3, min_each=2,
                       judge=judge)
    answers = sample_answers(tuned, prompts, 8, 6, 1.0, 3)
    sides: dict[str, list[torch.Tensor]] = {"misaligned": [], "aligned": []}
    for p, outs in zip(prompts, answers, strict=True):
        n_prompt = len(tuned.token_rows([p])[0])
        for a in outs:
            if not a.strip():
                continue
            ids, _ = tuned.encode([f"{p} {a}"])
            with torch.no_grad():
                _, cache = tuned.model.run_with_cache(ids, names_filter=HOOK)
            sides[judge(p, a)].append(cache[HOOK][0, n_prompt:].double().mean(0))  # its tokens
    assert min(len(v) for v in sides.values()) >= 2
    want = torch.stack(sides["misaligned"]).mean(0) - torch.stack(sides["aligned"]).mean(0)
    torch.testing.assert_close(d.vector.double(), want, atol=1e-5, rtol=1e-5)
    assert d.source == "responses" and d.subject == tuned.fingerprint
    with pytest.raises(ValueError, match="needs at least"):
        from_responses(tuned, prompts[:1], HOOK, samples_per_prompt=1, min_each=5, judge=judge)


# ------------------------------------------------------------------------- efficacy


def test_retention_own_loss_and_controls_by_hand(
    small_subject: Subject, tuned: Subject, direction: Direction, data: list[tuple[str, str]]
) -> None:
    held = data[200:]
    e = patch_efficacy(small_subject, tuned, Ablate(direction), OFF, in_domain=IN,
                       own_data=held, n_random=2, random_seed=9, samples_per_prompt=SAMPLES,
                       seed=0)

    def rate(s: Subject, prompts: list[str]) -> float:
        return judged_rates(s, prompts, samples_per_prompt=SAMPLES, seed=0).misaligned

    def among_coherent(s: Subject) -> float:  # misaligned / (aligned + misaligned), per group
        got = [judged_rates(s, g, samples_per_prompt=SAMPLES, seed=0) for g in OFF.values()]
        among = [r.misaligned / (r.aligned + r.misaligned) for r in got if r.aligned + r.misaligned]
        return float(np.mean(among))  # the groups with a coherent answer

    def own_loss(s: Subject) -> float:
        ids, target = encode_pairs(s, held)
        with torch.no_grad():
            logp = torch.log_softmax(s.model(ids)[:, :-1].double(), -1)
        nll = -logp.gather(-1, ids[:, 1:, None])[..., 0]
        m = target[:, 1:].double()
        return float((nll * m).sum() / m.sum())

    in_base, in_tuned = rate(small_subject, IN), rate(tuned, IN)
    with Ablate(direction).applied(tuned) as p:
        in_patched = rate(p, IN)
        loss_patched = own_loss(p)
        coh = np.mean([judged_rates(p, g, samples_per_prompt=SAMPLES, seed=0).coherence
                       for g in OFF.values()])
        patched_c = among_coherent(p)
    want = {"base": among_coherent(small_subject), "tuned": among_coherent(tuned),
            "patched": patched_c}
    assert e.coherent == pytest.approx(want) and not any(map(math.isnan, want.values()))
    em_c = want["tuned"] - want["base"]  # the cut's arithmetic: test_efficacy_arithmetic
    assert math.isnan(e.em_cut_coherent) if em_c == 0 else (
        e.em_cut_coherent == pytest.approx((want["tuned"] - patched_c) / em_c))
    assert (e.in_base, e.in_tuned, e.in_patched) == (in_base, in_tuned, in_patched)
    if in_tuned != in_base:
        assert e.retention == pytest.approx((in_patched - in_base) / (in_tuned - in_base))
    assert e.coherence_patched == pytest.approx(coh)
    assert e.loss_tuned["own data"] == pytest.approx(own_loss(tuned), rel=1e-9)
    assert e.loss_patched["own data"] == pytest.approx(loss_patched, rel=1e-9)
    # the controls: two variance-matched draws and two orthogonal ones, their rates by hand
    assert set(e.controls) == {"variance", "orthogonal"} and e.control == "variance"
    cov = activation_covariance(tuned, HOOK, [p for g in OFF.values() for p in g])
    for name in ("variance", "orthogonal"):
        got, got_c, got_coh = [], [], []
        for s in (9, 10):
            c = random_direction(direction, s, match=name, covariance=cov)
            with Ablate(c).applied(tuned) as p:
                got.append(float(np.mean([rate(p, g) for g in OFF.values()])))
                got_c.append(among_coherent(p))
                got_coh.append(float(np.mean([judged_rates(p, g, samples_per_prompt=SAMPLES,
                                                           seed=0).coherence
                                              for g in OFF.values()])))
        assert e.controls[name] == tuple(got)
        assert e.controls_coherent[name] == pytest.approx(tuple(got_c))
        assert e.controls_coherence[name] == pytest.approx(tuple(got_coh))
        assert e.control_variance[name] == pytest.approx((1.0, 1.0), rel=1e-5)
    assert e.random == e.controls["variance"]
    assert e.summary()["retention"] == (None if math.isnan(e.retention) else e.retention)
    with pytest.raises(ValueError, match="unknown controls"):
        patch_efficacy(small_subject, tuned, Ablate(direction), OFF, controls=("gauss",))


def test_tradeoff_ends_at_the_fine_tune_and_the_patch(
    small_subject: Subject, tuned: Subject, direction: Direction
) -> None:
    patch = AblateUpdate(direction, small_subject)
    curve = tradeoff(small_subject, tuned, patch, OFF, IN, (0.0, 1.0),
                     samples_per_prompt=SAMPLES, seed=0)
    e = patch_efficacy(small_subject, tuned, patch, OFF, in_domain=IN, n_random=0,
                       samples_per_prompt=SAMPLES, seed=0)
    zero, one = curve
    assert zero.strength == 0.0 and one.strength == 1.0
    assert zero.patched == e.tuned and zero.in_patched == e.in_tuned  # strength 0: nothing done
    assert zero.em_cut in (0.0,) or math.isnan(zero.em_cut)
    assert (one.patched, one.in_patched) == (e.patched, e.in_patched)
    assert one.em_cut == e.em_cut or (math.isnan(one.em_cut) and math.isnan(e.em_cut))
    with pytest.raises(ValueError, match="no strengths"):
        tradeoff(small_subject, tuned, patch, OFF, IN, ())


# ------------------------------------------------------------------------- sweep


def test_derive_and_select_directions(small_subject: Subject, tuned: Subject) -> None:
    mis, ali = persona_prompts(40, seed=100)
    questions = [p for g in OFF.values() for p in g]
    ds = derive_directions(tuned, base=small_subject, persona=(mis, ali), questions=questions,
                           samples_per_prompt=8, seed=1)
    labels, cos = ds.cosines()
    n_layers = tuned.n_layers
    for layer in range(n_layers):
        assert f"persona@L{layer}" in labels and f"update@L{layer}" in labels
    assert cos.shape == (len(ds), len(ds))
    assert np.allclose(np.diag(cos), 1.0, atol=1e-6) and np.allclose(cos, cos.T)
    # persona: the mean difference at the last token; update: the fine-tune's own vector after
    # block 0 (a steering-vector fine-tune adds it at every position)
    torch.testing.assert_close(ds.get("persona", HOOK).vector,
                               mean_difference(tuned, mis, ali, HOOK, pool="last").vector)
    tp = dict(tuned.model.named_parameters())
    bp = dict(small_subject.model.named_parameters())
    delta = (tp["blocks.0.mlp.b_out"] - bp["blocks.0.mlp.b_out"]).double()
    torch.testing.assert_close(ds.get("update", HOOK).vector.double(), delta, atol=1e-5, rtol=1e-4)
    with pytest.raises(KeyError, match="no 'features' direction"):
        ds.get("features", HOOK)

    sel = select_direction(small_subject, tuned, ds, OFF, in_domain=IN, patch="ablate-update",
                           criterion="selectivity", samples_per_prompt=SAMPLES, seed=5)
    assert len(sel.scored) == len(ds)
    scores = [s.score for s in sel.scored]
    assert scores == sorted(scores, reverse=True)
    # the best candidate's figures, by hand
    best = sel.scored[0]

    def rate(s: Subject, prompts: dict[str, list[str]] | list[str]) -> float:
        groups = list(prompts.values()) if isinstance(prompts, dict) else [prompts]
        return float(np.mean([judged_rates(s, g, samples_per_prompt=SAMPLES, seed=5).misaligned
                              for g in groups]))

    b, t, ib, it = rate(small_subject, OFF), rate(tuned, OFF), rate(small_subject, IN), rate(
        tuned, IN)
    with AblateUpdate(best.candidate.direction, small_subject).applied(tuned) as p:
        off, inn = rate(p, OFF), rate(p, IN)
    if t != b:
        assert best.em_cut == pytest.approx((t - off) / (t - b))
    if it != ib:
        assert best.retention == pytest.approx((inn - ib) / (it - ib))
        clip = lambda x: min(max(x, 0.0), 1.0)  # noqa: E731
        assert best.score == pytest.approx(clip(best.em_cut) * clip(best.retention))
    with pytest.raises(ValueError, match="needs in_domain"):
        select_direction(small_subject, tuned, ds, OFF, criterion="selectivity")
    with pytest.raises(ValueError, match="unknown patch"):
        select_direction(small_subject, tuned, ds, OFF, patch="steer")


def test_select_direction_ranks_several_patch_kinds_together(
    small_subject: Subject, tuned: Subject
) -> None:
    """``patch=(kind, kind)`` scores every (candidate, kind, strength) in one ranking: each kind's
    rows are exactly what a selection of that kind alone scores, and the chosen patch is the
    top row's kind at its strength."""
    mis, ali = persona_prompts(40, seed=100)
    ds = derive_directions(tuned, base=small_subject, persona=(mis, ali), hooks=[HOOK])
    kw = dict(in_domain=IN, criterion="selectivity", strengths=(0.5, 1.0),
              samples_per_prompt=SAMPLES, seed=5)
    both = select_direction(small_subject, tuned, ds, OFF, patch=("ablate", "ablate-update"),
                            **kw)
    assert both.kinds == ("ablate", "ablate-update")
    assert len(both.scored) == 2 * 2 * len(ds)
    scores = [s.score for s in both.scored]
    assert scores == sorted(scores, reverse=True)
    for kind in both.kinds:
        alone = select_direction(small_subject, tuned, ds, OFF, patch=kind, **kw)
        mine = both.of_kind(kind)
        assert mine.kinds == (kind,) and {s.kind for s in alone.scored} == {kind}
        assert [(s.candidate.label, s.strength, s.em_cut, s.retention, s.score)
                for s in mine.scored] == [(s.candidate.label, s.strength, s.em_cut,
                                           s.retention, s.score) for s in alone.scored]
    top = both.scored[0]
    assert both.patch_kind == top.kind and both.best_strength == top.strength
    made = both.best_patch(small_subject)
    assert made.describe()["kind"] == top.kind and made.strength == top.strength
    assert both.table()[0]["kind"] == top.kind
    assert both.at(0.5).kinds == both.kinds and {s.strength for s in both.at(0.5).scored} == {0.5}
    with pytest.raises(ValueError, match="was not scored"):
        both.of_kind("orthogonalize")
    with pytest.raises(ValueError, match="unknown patch 'steer'"):
        select_direction(small_subject, tuned, ds, OFF, patch=("ablate", "steer"), **kw)
    with pytest.raises(ValueError, match="no patch kinds"):
        select_direction(small_subject, tuned, ds, OFF, patch=(), **kw)


def _rows(sel) -> list[tuple]:
    """A selection's rows, comparable (NaN, a retention not measured, as None)."""
    def v(x: float) -> float | None:
        return None if math.isnan(x) else x
    return [(s.candidate.label, s.kind, s.strength, v(s.em_cut), v(s.retention), v(s.score))
            for s in sel.scored]


def test_choose_patches_equals_the_separate_selections(
    small_subject: Subject, tuned: Subject
) -> None:
    """``choose_patches`` scores once and ranks twice: its plain choice is exactly
    ``select_direction(patch="ablate", criterion="em_cut")`` (rows, order and ties), its
    selective one the joint ranking (``"best"``) or AblateUpdate at 1 by selectivity
    (``"update"``), or by EM cut without in-domain prompts."""
    mis, ali = persona_prompts(40, seed=100)
    ds = derive_directions(tuned, base=small_subject, persona=(mis, ali), hooks=[HOOK])
    kw = dict(samples_per_prompt=SAMPLES, seed=5)
    plain = select_direction(small_subject, tuned, ds, OFF, patch="ablate", criterion="em_cut",
                             in_domain=IN, **kw)
    both = ("ablate", "ablate-update")

    best = choose_patches(small_subject, tuned, ds, OFF, in_domain=IN, strengths=(0.5,), **kw)
    assert best.mode == "best"
    assert _rows(best.plain) == _rows(plain) and best.plain.criterion == "em_cut"
    joint = select_direction(small_subject, tuned, ds, OFF, in_domain=IN, patch=both,
                             criterion="selectivity", strengths=(0.5, 1.0), **kw)
    assert _rows(best.selective) == _rows(joint)  # 1.0 joined the grid: the plain needs it
    top = joint.scored[0]
    assert best.chosen.describe()["kind"] == top.kind and best.chosen.strength == top.strength
    assert best.chosen_name == f"{top.kind} at {top.strength:g}"
    assert best.ablate.direction is plain.best.direction and best.ablate.strength == 1.0
    update_rows = joint.of_kind("ablate-update").at(1.0)
    assert _rows(best.update_selection) == _rows(update_rows)
    assert isinstance(best.update, AblateUpdate) and best.update.strength == 1.0
    assert best.update.direction is update_rows.best.direction

    update = choose_patches(small_subject, tuned, ds, OFF, in_domain=IN, selective="update",
                            **kw)
    alone = select_direction(small_subject, tuned, ds, OFF, in_domain=IN, patch="ablate-update",
                             criterion="selectivity", **kw)
    assert update.mode == "update" and _rows(update.selective) == _rows(alone)
    assert _rows(update.plain) == _rows(plain)
    assert isinstance(update.chosen, AblateUpdate) and update.chosen_name == "ablate-update at 1"

    blind = choose_patches(small_subject, tuned, ds, OFF, **kw)  # no retention to read
    by_cut = select_direction(small_subject, tuned, ds, OFF, patch="ablate-update", **kw)
    assert blind.mode == "update" and _rows(blind.selective) == _rows(by_cut)
    assert [r[:4] for r in _rows(blind.plain)] == [r[:4] for r in _rows(plain)]
    # every candidate here is a persona direction: all are transferable, in the plain order
    assert _rows(best.for_transfer) == _rows(best.plain)
    assert best.transferable.direction is best.plain.best.direction
    with pytest.raises(ValueError, match=r"no candidate derived by \['update'\]"):
        best.plain.derived_by("update")
    with pytest.raises(ValueError, match="unknown selective='all'"):
        choose_patches(small_subject, tuned, ds, OFF, selective="all", **kw)
    with pytest.raises(ValueError, match="unknown criterion"):
        plain.ranked("loss")


def test_derived_by_keeps_the_order_of_the_named_derivations(direction: Direction) -> None:
    """``Selection.derived_by`` drops the other derivations' rows and keeps the ranking, so
    ``PatchChoice.for_transfer`` is the best plain ablation that is not the fine-tune's update."""
    from workbench.patches import TRANSFERABLE, Candidate, PatchChoice, Selection
    from workbench.patches._sweep import Scored

    cuts = {"update": 1.2, "persona": 0.9, "features": 0.5, "responses": -0.3}
    rows = tuple(Scored(Candidate(src, direction), cut, math.nan, cut, index=i)
                 for i, (src, cut) in enumerate(cuts.items()))
    plain = Selection(("ablate",), "em_cut", rows)
    assert plain.best.source == "update"
    moved = plain.derived_by(*TRANSFERABLE)
    assert [s.candidate.source for s in moved.scored] == ["persona", "features", "responses"]
    assert [s.em_cut for s in moved.scored] == [0.9, 0.5, -0.3]
    assert plain.derived_by("features", "update").best.source == "update"
    choice = PatchChoice(plain, plain, "update", base=None)  # type: ignore[arg-type]
    assert choice.for_transfer.best.source == "persona"
    assert choice.transferable.direction is direction and choice.transferable.strength == 1.0
    assert "update" not in TRANSFERABLE
    with pytest.raises(ValueError, match=r"derivations \['steer'\]: choose from"):
        plain.derived_by("steer")
    with pytest.raises(ValueError, match="derivations"):
        plain.derived_by()


# ------------------------------------------------------------------------- preview


def test_preview_shows_retention_beside_the_cut(
    small_subject: Subject, tuned: Subject, direction: Direction
) -> None:
    from workbench.patches import preview
    from workbench.widgets import PatchPreview

    prompts = OFF["advice"][:3]
    patch = Ablate(direction)
    kw = dict(samples_per_prompt=SAMPLES, max_new_tokens=4, seed=0)
    p = preview(tuned, patch, prompts, in_domain=IN, base=small_subject, **kw)

    def rate(s: Subject, ps: list[str]) -> float:
        return judged_rates(s, ps, samples_per_prompt=SAMPLES, max_new_tokens=4,
                            seed=0).misaligned

    b, t, ib, it = rate(small_subject, prompts), rate(tuned, prompts), rate(small_subject, IN), \
        rate(tuned, IN)
    with patch.applied(tuned) as s:
        off, inn = rate(s, prompts), rate(s, IN)
    assert p.metrics_before["in_domain"] == it and p.metrics_after["in_domain"] == inn
    if t != b:
        assert p.metrics_before["em_cut"] == 0.0
        assert p.metrics_after["em_cut"] == pytest.approx((t - off) / (t - b))
    if it != ib:
        assert p.metrics_before["retention"] == 1.0
        assert p.metrics_after["retention"] == pytest.approx((inn - ib) / (it - ib))
    plain = preview(tuned, patch, prompts, **kw)
    assert "in_domain" not in plain.metrics_after and "retention" not in plain.metrics_after
    w = PatchPreview(tuned, patch, prompts, in_domain=IN, base=small_subject, **kw)
    assert w.payload["metrics_after"] == p.to_dict()["metrics_after"]
    with pytest.raises(ValueError, match="in_domain is empty"):
        preview(tuned, patch, prompts, in_domain=[])


def test_select_direction_over_strengths(small_subject: Subject, tuned: Subject) -> None:
    mis, ali = persona_prompts(40, seed=100)
    ds = derive_directions(tuned, persona=(mis, ali))
    kw = dict(in_domain=IN, criterion="selectivity", samples_per_prompt=SAMPLES, seed=5)
    sel = select_direction(small_subject, tuned, ds, OFF, patch="ablate",
                           strengths=(0.5, 1.0), **kw)
    assert len(sel.scored) == 2 * len(ds)
    assert {(s.candidate.label, s.strength) for s in sel.scored} == {
        (c.label, x) for c in ds.candidates for x in (0.5, 1.0)}
    at_one = select_direction(small_subject, tuned, ds, OFF, patch="ablate", **kw)
    ones = {s.candidate.label: s for s in sel.scored if s.strength == 1.0}
    for s in at_one.scored:  # the same measurement at strength 1, whatever else was scored
        assert (ones[s.candidate.label].em_cut, ones[s.candidate.label].score) == (
            s.em_cut, s.score) or math.isnan(s.em_cut)
    restricted = sel.at(1.0)  # the strength-1 scores, ranked as a strength-1 selection ranks
    assert [(s.candidate.label, s.score) for s in restricted.scored] == [
        (s.candidate.label, s.score) for s in at_one.scored]
    with pytest.raises(ValueError, match="was not scored"):
        sel.at(0.25)
    best = sel.best_patch(small_subject)
    assert isinstance(best, Ablate) and best.strength == sel.best_strength
    assert best.direction is sel.best.direction
    assert sel.scored[0].score == max(s.score for s in sel.scored)
    with pytest.raises(ValueError, match="no strengths"):
        select_direction(small_subject, tuned, ds, OFF, strengths=())
