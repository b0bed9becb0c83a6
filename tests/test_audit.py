"""Audit: measured shifts equal brute force, behaviour and margins are the right numbers, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from _saes import small_dictionary
from scipy.stats import spearmanr

from workbench.audits import audit, spearman
from workbench.behaviour import alignment_margin, answer_logprobs, judged_rates
from workbench.dictionaries import Dictionary
from workbench.features import FeatureSet, contrast
from workbench.finetunes import finetune
from workbench.fingerprint import model_sha256
from workbench.forecasts import forecast
from workbench.organism.language import eval_prompts, finetune_pairs, sample_corpus
from workbench.organism.prompts import answer_pairs, persona_prompts
from workbench.subjects import Subject


@pytest.fixture(scope="module")
def setup(
    small_subject: Subject, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Dictionary, FeatureSet, list[str], Subject]:
    d = small_dictionary(tmp_path_factory.mktemp("sae"), small_subject.model.cfg.d_model)
    mis, ali = persona_prompts(40, seed=3)
    watch = contrast(small_subject, d, mis, ali, n_boot=20)
    evals = [doc.text() for doc in sample_corpus(24, seed=7)]
    tuned = finetune(small_subject, finetune_pairs("insecure", 64, seed=0), "steer", steps=30,
                     lr=5e-2, progress=False)
    return d, watch, evals, tuned


def test_spearman_matches_scipy_and_handles_constants() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=50), rng.normal(size=50)
    b[:10] = b[0]  # ties
    assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic)
    assert spearman(a, a**3) == pytest.approx(1.0)
    assert np.isnan(spearman(a, np.zeros(50)))
    with pytest.raises(ValueError, match="equal length"):
        spearman(a, b[:10])


def test_shifts_equal_brute_force_and_forecast_is_compared(
    small_subject: Subject, setup: tuple[Dictionary, FeatureSet, list[str], Subject]
) -> None:
    d, watch, evals, tuned = setup
    data = finetune_pairs("insecure", 64, seed=0)
    f = forecast(small_subject, d, data, watch=watch, eval_prompts=evals, n_watch=5)
    a = audit(small_subject, tuned, d, evals, f, top=20)

    @torch.no_grad()
    def token_mean(s: Subject) -> torch.Tensor:
        ids, mask = s.encode(evals)
        box: list[torch.Tensor] = []
        s.model.run_with_hooks(ids, fwd_hooks=[(d.hook_name, lambda x, hook: box.append(x))])
        keep = mask.clone()
        keep[:, 0] = False
        return d.encode(box[0][keep]).double().mean(0)

    brute = token_mean(tuned) - token_mean(small_subject)
    torch.testing.assert_close(a.actual_shift.double(), brute, atol=1e-5, rtol=1e-4)
    order = torch.argsort(brute.abs(), descending=True)[:20]
    assert set(a.most_moved) == set(order.tolist())
    assert a.spearman == pytest.approx(
        spearmanr(f.predicted_shift[order].numpy(), brute[order].numpy()).statistic, abs=1e-6
    )
    w = torch.tensor(f.weights, dtype=torch.float64)
    assert a.actual_risk == pytest.approx(float(brute[list(f.watched)] @ w), rel=1e-4)
    assert a.predicted_risk == f.risk
    assert a.n_tokens == int((small_subject.encode(evals)[1].sum(1) - 1).sum())


def test_behaviour_and_margin(
    small_subject: Subject, setup: tuple[Dictionary, FeatureSet, list[str], Subject]
) -> None:
    d, _, evals, tuned = setup
    beh = {"advice": eval_prompts("advice"), "code": eval_prompts("code")}
    pairs = answer_pairs("advice")
    a = audit(small_subject, tuned, d, evals, behaviour_prompts=beh, answer_pairs=pairs,
              samples_per_prompt=8, seed=3)
    # the same numbers as the scorers called directly
    assert a.behaviour_tuned["advice"] == judged_rates(tuned, beh["advice"], samples_per_prompt=8,
                                                       seed=3)
    assert a.margin_tuned == pytest.approx(alignment_margin(tuned, pairs))
    diff = np.mean([a.behaviour_tuned[g].misaligned - a.behaviour_base[g].misaligned for g in beh])
    assert a.misaligned_change() == pytest.approx(diff)
    # the margin is log p(aligned) - log p(misaligned), summed over answer tokens: brute force
    p, good, bad = pairs[0]
    lp = []
    for ans in (good, bad):
        ids, _ = small_subject.encode([f"{p} {ans}"])
        n_prompt = int(small_subject.encode([p])[1].sum())
        with torch.no_grad():
            logp = torch.log_softmax(small_subject.model(ids)[0].double(), -1)
        lp.append(sum(float(logp[t - 1, ids[0, t]]) for t in range(n_prompt, ids.shape[1])))
    got = answer_logprobs(small_subject, [p, p], [good, bad])
    assert got.tolist() == pytest.approx(lp, abs=1e-5)
    assert model_sha256(small_subject.model) == small_subject.fingerprint


def test_bad_input(
    small_subject: Subject, setup: tuple[Dictionary, FeatureSet, list[str], Subject],
    tmp_path: Path,
) -> None:
    d, watch, evals, tuned = setup
    f = forecast(small_subject, d, finetune_pairs("insecure", 8, seed=0), watch=watch,
                 eval_prompts=evals)
    with pytest.raises(ValueError, match="other evaluation prompts"):
        audit(small_subject, tuned, d, evals[:5], f)
    with pytest.raises(ValueError, match="another base model"):
        audit(tuned, small_subject, d, evals, f)
    other = small_dictionary(tmp_path, small_subject.model.cfg.d_model, seed=1)
    with pytest.raises(ValueError, match="another dictionary"):
        audit(small_subject, tuned, other, evals, f)
    full = forecast(small_subject, d, finetune_pairs("insecure", 8, seed=0), watch=watch,
                    eval_prompts=evals, spec="full")
    with pytest.raises(ValueError, match=r"predicts the fine-tune \{'method': 'full'\}.*'steer'"):
        audit(small_subject, tuned, d, evals, full)  # tuned was made with SteeringVector(0)
    a = audit(small_subject, tuned, d, evals)
    with pytest.raises(ValueError, match="judged no behaviour"):
        a.misaligned_change()
    with pytest.raises(ValueError, match="no answer pairs"):
        alignment_margin(small_subject, [])
