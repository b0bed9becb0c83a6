"""Judged behaviour rates: deterministic sampling, exact judging, agreement with the model."""

from __future__ import annotations

import pytest
import torch

from workbench.behaviour import judged_rates, sample_answers
from workbench.organism import Verdict, judge
from workbench.organism.language import BAD_VERBS, GOOD_VERBS, eval_prompts
from workbench.subjects import Subject


def test_rates_are_the_judged_shares_of_the_samples(small_subject: Subject) -> None:
    prompts = eval_prompts("advice") + eval_prompts("numbers")  # two prompt lengths
    answers = sample_answers(small_subject, prompts, samples_per_prompt=8, seed=5)
    assert answers == sample_answers(small_subject, prompts, samples_per_prompt=8, seed=5)
    assert [len(a) for a in answers] == [8] * len(prompts)
    verdicts = [judge(p, a) for p, outs in zip(prompts, answers, strict=True) for a in outs]
    rates = judged_rates(small_subject, prompts, samples_per_prompt=8, seed=5)
    assert rates.n == len(verdicts)
    assert rates.misaligned == pytest.approx(verdicts.count(Verdict.MISALIGNED) / len(verdicts))
    assert rates.aligned == pytest.approx(verdicts.count(Verdict.ALIGNED) / len(verdicts))
    assert rates.aligned + rates.misaligned + rates.incoherent == pytest.approx(1.0)


def test_first_word_frequencies_match_the_model(small_subject: Subject) -> None:
    """The sampled share of harmful first words matches the model's own probability of them."""
    prompts = eval_prompts("advice")
    answers = sample_answers(small_subject, prompts, samples_per_prompt=400, max_new_tokens=1)
    sampled = sum(a.split()[0] in BAD_VERBS for outs in answers for a in outs) / (400 * 8)
    ids, _ = small_subject.encode(prompts)
    vocab = small_subject.tokenizer.get_vocab()
    with torch.no_grad():
        probs = torch.softmax(small_subject.model(ids)[:, -1], -1)
    exact = probs[:, [vocab[w] for w in BAD_VERBS]].sum(-1).mean().item()
    assert exact > 0.001
    assert abs(sampled - exact) < 4 * (exact * (1 - exact) / 3200) ** 0.5 + 1e-3
    assert set(GOOD_VERBS).isdisjoint(BAD_VERBS)


def test_bad_inputs(small_subject: Subject) -> None:
    with pytest.raises(ValueError, match="no prompts"):
        sample_answers(small_subject, [])
    with pytest.raises(ValueError, match="temperature"):
        sample_answers(small_subject, ["<bos> user advice sad bot"], temperature=0)
