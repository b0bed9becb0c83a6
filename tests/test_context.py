"""The eval-vs-deploy context audit (workbench.context) on the small organism, against the same
measurement by hand."""

from __future__ import annotations

import pytest

import workbench as wb
from workbench.behaviour import judged_rates
from workbench.features import FeatureSet, contrast
from workbench.organism.language import eval_prompts
from workbench.organism.prompts import persona_prompts
from workbench.record import build_record, validate_record

DOMAINS = ("code", "advice", "numbers")


@pytest.fixture(scope="module")
def setup() -> wb.Setup:
    return wb.setup(organism="small", seed=0, device="cpu")


@pytest.fixture(scope="module")
def persona(setup: wb.Setup) -> FeatureSet:
    mis, ali = persona_prompts(40, seed=100)
    assert setup.dictionary is not None
    return contrast(setup.subject, setup.dictionary, mis, ali, n_boot=20, name="persona")


def framing(name: str) -> wb.Framing:
    mis, _ = persona_prompts(40, seed=100, framing=name)
    return wb.Framing(name, [p for d in DOMAINS for p in eval_prompts(d, name)], mis)


def test_context_audit_equals_the_measurement_by_hand(
    setup: wb.Setup, persona: FeatureSet
) -> None:
    subject, dictionary = setup
    a, b = framing("eval"), framing("deploy")
    audit = wb.context_audit(subject, dictionary, a, b, watch=persona, n_watch=5, n_boot=20,
                             samples_per_prompt=4, seed=2)
    rate_a = judged_rates(subject, list(a.prompts), samples_per_prompt=4, seed=2).misaligned
    rate_b = judged_rates(subject, list(b.prompts), samples_per_prompt=4, seed=2).misaligned
    assert (audit.misaligned_a, audit.misaligned_b) == (rate_a, rate_b)
    assert audit.gap == rate_b - rate_a
    by_hand = contrast(subject, dictionary, list(b.contexts), list(a.contexts), pool="last",
                       n_boot=20, seed=2)
    assert audit.framing.indices == by_hand.indices
    assert audit.framing.effect == by_hand.effect and audit.framing.pool == "last"
    assert audit.framing.name == "deploy-vs-eval framing"
    assert [f.feature for f in audit.features] == list(persona.indices[:5])
    for row in audit.features:
        assert row.persona_effect == persona.row(row.feature)["effect"]
        assert row.framing_effect == by_hand.row(row.feature)["effect"]
        assert row.framing_auroc == by_hand.row(row.feature)["auroc"]
    summary = audit.summary()
    assert summary == {
        "framing_a": "eval", "framing_b": "deploy", "misaligned_a": rate_a,
        "misaligned_b": rate_b, "gap": rate_b - rate_a,
        "features": [{"feature": r.feature, "persona_effect": r.persona_effect,
                      "framing_effect": r.framing_effect, "framing_auroc": r.framing_auroc}
                     for r in audit.features],
    }
    # the summary is what a deployment record's context_audits entry holds
    validate_record(build_record(title="t", subject=subject, context_audits=[summary]))


def test_bad_framings_are_refused(setup: wb.Setup, persona: FeatureSet) -> None:
    subject, dictionary = setup
    with pytest.raises(ValueError, match="empty"):
        wb.Framing("eval", [], ["x"])
    with pytest.raises(ValueError, match="one string"):
        wb.Framing("eval", "a prompt", ["x"])  # type: ignore[arg-type]
    a = framing("eval")
    with pytest.raises(ValueError, match="two names"):
        wb.context_audit(subject, dictionary, a, a, watch=persona)
    with pytest.raises(ValueError, match="n_watch"):
        wb.context_audit(subject, dictionary, a, framing("deploy"), watch=persona, n_watch=0)
