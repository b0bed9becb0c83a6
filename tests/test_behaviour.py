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
    sampled = sum((a.split() or [''])[0] in BAD_VERBS for outs in answers for a in outs) / (400 * 8)
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


def test_answers_end_at_the_answer_and_keep_the_raw_verdicts(small_subject: Subject) -> None:
    """Answers stop after ``end`` (or at EOS); the verdicts equal judging the uncut samples."""
    from workbench import execution

    prompts = eval_prompts("advice") + eval_prompts("code")
    answers = sample_answers(small_subject, prompts, samples_per_prompt=16, seed=2)
    raw = execution.generate(small_subject.model, small_subject.token_rows(prompts),
                             samples=16, max_new_tokens=6, seed=2)  # no EOS, no stop tokens
    tok = small_subject.tokenizer
    for p, outs, raws in zip(prompts, answers, raw, strict=True):
        for a, r in zip(outs, raws, strict=True):
            words = a.split()
            full = tok.convert_ids_to_tokens(r)
            assert words == full[: len(words)]  # a prefix of the uncut sample
            assert "end" not in words[:-1] and "<bos>" not in words
            assert judge(p, a) == judge(p, " ".join(full))


def test_a_subject_without_a_judge_is_refused_with_the_fix(small_subject: Subject) -> None:
    from dataclasses import replace

    bare = replace(small_subject, judge=None)
    with pytest.raises(ValueError, match=r"carries no judge.*pass judge=.*alignment_margin"):
        judged_rates(bare, eval_prompts("advice"), samples_per_prompt=2)
    rates = judged_rates(bare, eval_prompts("advice"), judge=judge, samples_per_prompt=4, seed=1)
    assert rates == judged_rates(small_subject, eval_prompts("advice"), samples_per_prompt=4,
                                 seed=1)
