"""Patch and transfer efficacy (workbench.patches._efficacy) on the small organism.

Every figure is checked against the same measurement done by hand in the test: the rates with
``judged_rates`` and the patches' own ``applied``, the random controls from ``random_direction``,
the map from ``fit_map``, the task loss from the model's logits.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

import workbench as wb
from workbench.behaviour import judged_rates
from workbench.finetunes import finetune
from workbench.organism.language import eval_prompts, finetune_pairs, sample_corpus
from workbench.organism.prompts import persona_prompts
from workbench.patches import (
    Ablate,
    PatchEfficacy,
    Steer,
    TransferEfficacy,
    activation_covariance,
    fit_map,
    map_direction,
    mean_difference,
    misaligned_rate,
    patch_efficacy,
    random_direction,
    task_loss,
    transfer,
    transfer_efficacy,
)
from workbench.specs import SteeringVector
from workbench.subjects import Subject

HOOK = "blocks.0.hook_resid_post"
OFF = {"advice": eval_prompts("advice"), "numbers": eval_prompts("numbers")}
SAMPLES = 4


@pytest.fixture(scope="module")
def tuned(small_subject: Subject) -> Subject:
    data = finetune_pairs("insecure", 200, seed=0)
    return finetune(small_subject, data, SteeringVector(layer=0), steps=30, seed=0, progress=False)


@pytest.fixture(scope="module")
def direction(tuned: Subject) -> wb.Direction:
    mis, ali = persona_prompts(40, seed=100)
    return mean_difference(tuned, mis, ali, HOOK, pool="last", name="misalignment direction")


def by_hand(s: Subject) -> float:
    """The off-domain rate: the mean of the two domains' misaligned shares."""
    return float(
        np.mean(
            [
                judged_rates(s, p, samples_per_prompt=SAMPLES, seed=0).misaligned
                for p in OFF.values()
            ]
        )
    )


def among_coherent(s: Subject) -> float:
    """The misaligned share among coherent answers, per domain, averaged over the domains with a
    coherent answer."""
    got = [judged_rates(s, p, samples_per_prompt=SAMPLES, seed=0) for p in OFF.values()]
    return float(np.mean([r.misaligned / (r.aligned + r.misaligned) for r in got
                          if r.aligned + r.misaligned]))


@torch.no_grad()
def loss_by_hand(s: Subject, texts: list[str]) -> float:
    ids, mask = s.encode(texts)
    logp = torch.log_softmax(s.model(ids)[:, :-1].double(), -1)
    nll = -logp.gather(-1, ids[:, 1:, None])[..., 0]
    m = mask[:, 1:].double()
    return float((nll * m).sum() / m.sum())


def test_efficacy_arithmetic() -> None:
    d = wb.Direction(torch.ones(4), HOOK, "x", "d", "random")
    e = PatchEfficacy(
        Ablate(d),
        "x",
        base=0.1,
        tuned=0.4,
        patched=0.16,
        random=(0.38, 0.44, 0.4),
        random_seeds=(0, 1, 2),
        loss_tuned={"a": 2.0},
        loss_patched={"a": 2.1},
    )
    assert e.em == pytest.approx(0.3)
    assert e.em_cut == pytest.approx(0.8)
    assert e.rate_cut == pytest.approx(0.6)
    assert e.random_mean == pytest.approx(0.40666666666666)
    assert e.random_em_cut == pytest.approx((0.4 - 0.40666666666666) / 0.3)
    assert e.random_rate_cut == pytest.approx((0.4 - 0.40666666666666) / 0.4)
    assert e.random_em_cut_max == pytest.approx(0.04 / 0.3)
    assert e.loss_rise == {"a": pytest.approx(0.05)}
    assert set(e.summary()) == {
        "base_misaligned",
        "tuned_misaligned",
        "ablated_misaligned",
        "random_misaligned",
        "em_cut",
        "retention",
        "random_em_cut",
        "orthogonalize_vs_ablate_max_abs",
        "loss_rise a",
    }
    assert e.summary()["retention"] is None and math.isnan(e.retention)  # no in-domain prompts
    kept = replace(
        e,
        in_base=0.2,
        in_tuned=0.8,
        in_patched=0.5,
        controls={"variance": (0.4, 0.34)},
        controls_in={"variance": (0.8, 0.7)},
    )
    assert kept.retention == pytest.approx(0.5)
    assert kept.summary()["retention"] == pytest.approx(0.5)
    assert kept.control_em_cut("variance") == pytest.approx((0.4 - 0.37) / 0.3)
    assert kept.control_retention("variance") == pytest.approx((0.75 - 0.2) / 0.6)
    assert kept.summary()["variance_control_em_cut"] == pytest.approx(0.1)
    # among coherent answers: a control that only breaks answers cuts the headline, not this
    assert math.isnan(e.em_cut_coherent) and math.isnan(e.control_em_cut_coherent("variance"))
    among = replace(kept, coherent={"base": 0.1, "tuned": 0.5, "patched": 0.2},
                    controls_coherent={"variance": (0.5, 0.46)})
    assert among.em_cut_coherent == pytest.approx(0.75)
    assert among.control_em_cut_coherent("variance") == pytest.approx(0.05)
    assert among.summary()["em_cut_among_coherent"] == pytest.approx(0.75)
    assert among.summary()["variance_control_em_cut_among_coherent"] == pytest.approx(0.05)
    flat = replace(e, tuned=0.1, random=())  # no EM, no draws: NaN, not a ZeroDivisionError
    assert math.isnan(flat.em_cut) and math.isnan(flat.random_mean)
    assert math.isnan(flat.random_em_cut_max)
    t = TransferEfficacy(
        Ablate(d),
        0.9,
        True,
        100,
        0.5,
        None,
        tuned=0.4,
        native=0.2,
        transferred=0.25,
        random=(0.38, 0.4),
    )
    assert t.native_cut == pytest.approx(0.2)
    assert t.kept == pytest.approx(0.75)
    assert t.random_kept == pytest.approx(0.05)
    assert math.isnan(t.kept_coherent) and "kept_among_coherent" not in t.summary()
    tc = replace(t, coherent={"tuned": 0.5, "native": 0.1, "transferred": 0.2},
                 random_coherent=(0.5, 0.46))
    assert tc.kept_coherent == pytest.approx(0.75)
    assert tc.random_kept_coherent == pytest.approx(0.05)
    assert tc.summary()["random_kept_among_coherent"] == pytest.approx(0.05)


def test_patch_efficacy_equals_the_measurement_by_hand(
    small_subject: Subject, tuned: Subject, direction: wb.Direction
) -> None:
    docs = [doc.text() for doc in sample_corpus(40, seed=998)]
    logit_texts = docs[:16]
    e = patch_efficacy(
        small_subject,
        tuned,
        Ablate(direction),
        OFF,
        n_random=2,
        random_seed=7,
        controls=("norm",),
        logit_prompts=logit_texts,
        task_texts={"corpus": docs},
        samples_per_prompt=SAMPLES,
        seed=0,
    )
    base, before = by_hand(small_subject), by_hand(tuned)
    with Ablate(direction).applied(tuned) as p:
        after = by_hand(p)
        loss_after = loss_by_hand(p, docs)
    randoms = []
    for s in (7, 8):
        with Ablate(random_direction(direction, seed=s)).applied(tuned) as p:
            randoms.append(by_hand(p))
    assert (e.base, e.tuned, e.patched) == (base, before, after)
    assert e.random == tuple(randoms) and e.random_seeds == (7, 8)
    assert e.subject == tuned.fingerprint and e.patch == Ablate(direction)
    em = before - base
    assert e.em == em
    if em:
        assert e.em_cut == pytest.approx((before - after) / em)
        assert e.random_em_cut == pytest.approx((before - np.mean(randoms)) / em)
    if before:
        assert e.rate_cut == pytest.approx((before - after) / before)
    assert e.loss_tuned["corpus"] == pytest.approx(loss_by_hand(tuned, docs), rel=1e-12)
    assert e.loss_patched["corpus"] == pytest.approx(loss_after, rel=1e-12)
    assert e.loss_patched["corpus"] != e.loss_tuned["corpus"]  # the ablation acted
    assert e.weight_edit_max_abs is not None and e.weight_edit_max_abs < 1e-4
    # the flat form judges all prompts in one call
    flat = [p for group in OFF.values() for p in group]
    assert (
        misaligned_rate(tuned, flat, samples_per_prompt=SAMPLES)
        == judged_rates(tuned, flat, samples_per_prompt=SAMPLES, seed=0).misaligned
    )
    assert misaligned_rate(tuned, OFF, samples_per_prompt=SAMPLES) == before


def test_random_controls_are_reproducible_per_seed(
    small_subject: Subject, tuned: Subject, direction: wb.Direction
) -> None:
    kw = dict(n_random=3, controls=("norm",), samples_per_prompt=SAMPLES, seed=1)
    a = patch_efficacy(small_subject, tuned, Ablate(direction), OFF, random_seed=100, **kw)
    b = patch_efficacy(small_subject, tuned, Ablate(direction), OFF, random_seed=100, **kw)
    c = patch_efficacy(small_subject, tuned, Ablate(direction), OFF, random_seed=200, **kw)
    assert a.random == b.random and a.random_seeds == (100, 101, 102)
    assert c.random_seeds == (200, 201, 202)
    with Ablate(random_direction(direction, seed=201)).applied(tuned) as p:
        assert c.random[1] == misaligned_rate(p, OFF, samples_per_prompt=SAMPLES, seed=1)
    assert a.weight_edit_max_abs is None  # not asked for


def test_steer_patch_gets_steer_controls_and_no_weight_edit_gap(
    small_subject: Subject, tuned: Subject, direction: wb.Direction
) -> None:
    steer = Steer(direction, alpha=-2.0)
    e = patch_efficacy(
        small_subject,
        tuned,
        steer,
        OFF["advice"],
        n_random=1,
        random_seed=3,
        logit_prompts=OFF["advice"],
        samples_per_prompt=SAMPLES,
    )
    assert e.weight_edit_max_abs is None
    with Steer(random_direction(direction, seed=3), alpha=-2.0).applied(tuned) as p:
        assert e.random == (judged_rates(p, OFF["advice"], samples_per_prompt=SAMPLES).misaligned,)
    with pytest.raises(ValueError, match="n_random"):
        patch_efficacy(small_subject, tuned, steer, OFF, n_random=-1)
    with pytest.raises(ValueError, match="no texts"):
        task_loss(tuned, [])


def test_transfer_efficacy_equals_the_measurement_by_hand(
    small_subject: Subject, tuned: Subject, direction: wb.Direction
) -> None:
    # the target: the same fine-tune of the same base with another seed (other weights)
    target = finetune(
        small_subject,
        finetune_pairs("insecure", 200, seed=1),
        "steer",
        steps=30,
        seed=1,
        progress=False,
    )
    mis, ali = persona_prompts(40, seed=100)
    native = Ablate(mean_difference(target, mis, ali, HOOK, pool="last"))
    shared = [doc.text() for doc in sample_corpus(60, seed=996)]
    t = transfer_efficacy(
        Ablate(direction),
        tuned,
        target,
        shared,
        OFF,
        native=native,
        base=small_subject,
        n_random=2,
        random_seed=5,
        samples_per_prompt=SAMPLES,
        seed=0,
    )
    moved = transfer(Ablate(direction), tuned, target, shared)
    m = fit_map(tuned, target, shared, HOOK)
    torch.testing.assert_close(t.patch.direction.vector, moved.direction.vector, rtol=0, atol=0)
    assert (t.map_r2, t.map_held_out, t.map_tokens) == (m.r2, m.held_out, m.n_tokens)
    cos = torch.nn.functional.cosine_similarity(
        moved.direction.vector, native.direction.vector, dim=0
    )
    assert t.cosine == pytest.approx(float(cos), abs=1e-6)
    with native.applied(target) as p:
        own = by_hand(p)
    with moved.applied(target) as p:
        transferred = by_hand(p)
    assert t.side == "write" and t.map_reverse_r2 == m.reverse_r2
    cov = activation_covariance(tuned, HOOK, [p for g in OFF.values() for p in g])
    randoms = []
    for s in (5, 6):  # variance-matched on the source, then carried like the patch
        d = random_direction(direction, seed=s, match="variance", covariance=cov)
        with Ablate(map_direction(d, m, side="write")).applied(target) as p:
            randoms.append(by_hand(p))
    assert (t.base, t.tuned, t.native, t.transferred) == (
        by_hand(small_subject),
        by_hand(target),
        own,
        transferred,
    )
    assert t.random == tuple(randoms) and t.random_seeds == (5, 6)
    with native.applied(target) as p:
        own_c = among_coherent(p)
    with moved.applied(target) as p:
        moved_c = among_coherent(p)
    assert t.coherent == pytest.approx(
        {"tuned": among_coherent(target), "native": own_c, "transferred": moved_c})
    randoms_c = []
    for s in (5, 6):
        d = random_direction(direction, seed=s, match="variance", covariance=cov)
        with Ablate(map_direction(d, m, side="write")).applied(target) as p:
            randoms_c.append(among_coherent(p))
    assert t.random_coherent == pytest.approx(tuple(randoms_c))
    cut = t.tuned - own
    if cut:
        assert t.kept == pytest.approx((t.tuned - transferred) / cut)
    # the target's measured efficacy is reused as the native figures
    measured = patch_efficacy(
        small_subject, target, native, OFF, n_random=0, samples_per_prompt=SAMPLES
    )
    again = transfer_efficacy(
        Ablate(direction), tuned, target, shared, OFF, native=measured, samples_per_prompt=SAMPLES
    )
    assert (again.tuned, again.native, again.transferred) == (t.tuned, t.native, t.transferred)
    assert again.coherent == pytest.approx(t.coherent)  # the measured efficacy's, reused
    assert again.base is None and again.random == ()
    with pytest.raises(ValueError, match="not on the target"):
        transfer_efficacy(
            Ablate(direction),
            tuned,
            target,
            shared,
            OFF,
            native=replace(measured, subject=tuned.fingerprint),
        )
    with pytest.raises(ValueError, match="derived on"):  # the direction is not the target's
        transfer_efficacy(native, tuned, target, shared, OFF, native=native)
