"""Predictors: each one equals a brute-force recomputation, one example at a time; bad input.

Brute force here means: encode one example alone, run the model with an explicit
``run_with_hooks`` (or plain autograd), and loop in Python where the module uses matrix products.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from _saes import small_dictionary

from workbench.behaviour import sample_answers
from workbench.data import encode_pairs
from workbench.dictionaries import Dictionary
from workbench.execution import completion_nll
from workbench.features import FeatureSet, contrast
from workbench.fingerprint import model_sha256
from workbench.organism.language import finetune_pairs
from workbench.organism.prompts import persona_prompts
from workbench.predictors import PREDICTORS, Prediction, predict
from workbench.subjects import Subject

HOOK = "blocks.0.hook_resid_post"
BATCH = 5  # not a divisor of the data's 12 examples: the last batch is short


@pytest.fixture(scope="module")
def setup(
    small_subject: Subject, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Dictionary, FeatureSet, list[tuple[str, str]], dict[str, Prediction]]:
    d = small_dictionary(tmp_path_factory.mktemp("sae"), small_subject.model.cfg.d_model)
    mis, ali = persona_prompts(40, seed=3)
    watch = contrast(small_subject, d, mis, ali, n_boot=20).top(8)
    data = (
        finetune_pairs("insecure", 4, seed=1)
        + finetune_pairs("secure", 4, seed=2)
        + finetune_pairs("educational", 4, seed=3)
    )
    preds = predict(small_subject, d, data, watch=watch, batch_size=BATCH, seed=7)
    return d, watch, data, preds


def _hook_acts(subject: Subject, ids: torch.Tensor) -> torch.Tensor:
    box: list[torch.Tensor] = []
    with torch.no_grad():
        subject.model.run_with_hooks(ids, fwd_hooks=[(HOOK, lambda x, hook: box.append(x))])
    return box[0][0].double()  # [T, d]


def _response_acts(subject: Subject, pair: tuple[str, str]) -> torch.Tensor:
    """The hook activations on the example's response tokens, the example run alone."""
    ids, target = encode_pairs(subject, [pair])
    assert int(target.sum()) > 0
    return _hook_acts(subject, ids)[target[0]]


def _persona_by_hand(d: Dictionary, watch: FeatureSet) -> torch.Tensor:
    vec = torch.zeros(d.d_in, dtype=torch.float64)
    for f, effect in zip(watch.indices, watch.effect, strict=True):
        row = d.W_dec[f].detach().double()
        vec += effect * row / row.norm()
    return vec / vec.norm()


def test_every_predictor_runs_and_scores_are_means(
    setup: tuple[Dictionary, FeatureSet, list[tuple[str, str]], dict[str, Prediction]],
) -> None:
    _, _, data, preds = setup
    assert list(preds) == list(PREDICTORS)
    for name, p in preds.items():
        assert p.name == name
        assert p.sample_scores.dtype == np.float64 and p.sample_scores.shape == (len(data),)
        assert np.isfinite(p.sample_scores).all()
        assert p.score == pytest.approx(float(p.sample_scores.mean()), rel=1e-12, abs=1e-15)
        assert p.seconds >= 0
        s = p.summary()
        assert "sample_scores" not in s
        assert json.loads(json.dumps(s)) == {
            "name": name, "score": p.score, "n_examples": len(data), "seconds": p.seconds
        }
    assert (preds["constant"].sample_scores == 0).all() and preds["constant"].score == 0.0
    # the predictors are not all the same number in disguise
    assert np.ptp(preds["nll"].sample_scores) > 0 and np.ptp(preds["projection"].sample_scores) > 0


def test_projection_equals_a_loop_over_examples(
    small_subject: Subject,
    setup: tuple[Dictionary, FeatureSet, list[tuple[str, str]], dict[str, Prediction]],
) -> None:
    from workbench.patches import from_features

    d, watch, data, preds = setup
    unit = _persona_by_hand(d, watch)
    # the default persona is the patches module's feature direction, normalised
    other = from_features(d, watch, n=len(watch)).unit.double()
    torch.testing.assert_close(other, unit, rtol=1e-6, atol=1e-6)
    brute = [float((_response_acts(small_subject, pair) @ unit).mean()) for pair in data]
    np.testing.assert_allclose(preds["projection"].sample_scores, brute, rtol=1e-5, atol=1e-6)


def test_chen_is_the_projection_difference_to_the_base_models_own_answers(
    small_subject: Subject,
    setup: tuple[Dictionary, FeatureSet, list[tuple[str, str]], dict[str, Prediction]],
) -> None:
    d, watch, data, preds = setup
    unit = _persona_by_hand(d, watch)
    longest = max(int(encode_pairs(small_subject, [pair])[1].sum()) for pair in data)
    brute = []
    for k, s in enumerate(range(0, len(data), BATCH)):  # chunk k is sampled with seed + k
        chunk = data[s : s + BATCH]
        answers = sample_answers(small_subject, [p for p, _ in chunk], 1, longest, 1.0, 7 + k)
        for (prompt, completion), (answer,) in zip(chunk, answers, strict=True):
            assert answer.strip(), "the small organism answered nothing"
            train = (_response_acts(small_subject, (prompt, completion)) @ unit).mean()
            base = (_response_acts(small_subject, (prompt, answer)) @ unit).mean()
            brute.append(float(train - base))
    np.testing.assert_allclose(preds["chen"].sample_scores, brute, rtol=1e-5, atol=1e-6)
    # chen subtracts something real: it is not the raw projection
    assert not np.allclose(preds["chen"].sample_scores, preds["projection"].sample_scores)
    # a seed fixes the base answers
    again = predict(small_subject, d, data, watch=watch, names=["chen"], batch_size=BATCH, seed=7)
    np.testing.assert_array_equal(again["chen"].sample_scores, preds["chen"].sample_scores)



def test_chen_reads_an_empty_base_answer_at_the_last_prompt_token(
    small_subject: Subject,
    setup: tuple[Dictionary, FeatureSet, list[tuple[str, str]], dict[str, Prediction]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The paper's approximation of the base projection (its appendix I) where EOS came first."""
    import workbench.predictors as predictors

    d, watch, data, preds = setup
    monkeypatch.setattr(
        predictors, "sample_answers", lambda subject, prompts, *args: [[""] for _ in prompts]
    )
    out = predict(small_subject, d, data[:4], watch=watch, names=["chen"])
    unit = _persona_by_hand(d, watch)
    brute = []
    for prompt, _ in data[:4]:
        ids, _mask = small_subject.encode([prompt])
        brute.append(float(_hook_acts(small_subject, ids)[-1] @ unit))
    expected = preds["projection"].sample_scores[:4] - np.array(brute)
    np.testing.assert_allclose(out["chen"].sample_scores, expected, rtol=1e-5, atol=1e-6)

def test_minegishi_equals_a_loop_over_features(
    small_subject: Subject,
    setup: tuple[Dictionary, FeatureSet, list[tuple[str, str]], dict[str, Prediction]],
) -> None:
    d, watch, data, preds = setup
    toxic = [f for f, e in zip(watch.indices, watch.effect, strict=True) if e > 0]
    assert 0 < len(toxic) < len(watch)  # the set has both signs; only the positive ones count
    W = d.W_dec.detach().double()

    def cos(i: int, j: int) -> float:
        return float(W[i] @ W[j] / (W[i].norm() * W[j].norm()))

    proximity = [max(cos(j, t) for t in toxic) for j in range(d.d_sae)]
    brute = []
    for pair in data:
        num = den = 0.0
        for x in _response_acts(small_subject, pair):  # one response token at a time
            z = d.encode(x[None].float())[0].detach().double()
            for j in range(d.d_sae):
                if z[j] > 0:
                    num += float(z[j]) * proximity[j]
                    den += float(z[j])
        brute.append(num / den if den > 0 else 0.0)
    assert any(b > 0 for b in brute)
    np.testing.assert_allclose(preds["minegishi"].sample_scores, brute, rtol=1e-5, atol=1e-7)
    # a watched (toxic) feature has proximity 1 to itself: the score is at most 1
    assert (preds["minegishi"].sample_scores <= 1 + 1e-12).all()


def test_nll_equals_completion_nll_per_example(
    small_subject: Subject,
    setup: tuple[Dictionary, FeatureSet, list[tuple[str, str]], dict[str, Prediction]],
) -> None:
    _, _, data, preds = setup
    with torch.no_grad():
        brute = [
            float(completion_nll(small_subject.model, *encode_pairs(small_subject, [pair])))
            for pair in data
        ]
    np.testing.assert_allclose(preds["nll"].sample_scores, brute, rtol=1e-5)


def test_grad_norm_equals_per_example_autograd(
    small_subject: Subject,
    setup: tuple[Dictionary, FeatureSet, list[tuple[str, str]], dict[str, Prediction]],
) -> None:
    _, _, data, preds = setup
    model = small_subject.model
    brute = []
    for pair in data:
        ids, target = encode_pairs(small_subject, [pair])
        v = torch.zeros(model.cfg.d_model, requires_grad=True)
        model.add_hook(HOOK, lambda x, hook, v=v: x + v)
        try:
            (g,) = torch.autograd.grad(completion_nll(model, ids, target), v)
        finally:
            model.reset_hooks()
        brute.append(float(g.double().norm()))
    np.testing.assert_allclose(preds["grad_norm"].sample_scores, brute, rtol=1e-4)


def test_a_given_persona_is_used_at_any_norm(
    small_subject: Subject,
    setup: tuple[Dictionary, FeatureSet, list[tuple[str, str]], dict[str, Prediction]],
) -> None:
    d, watch, data, _ = setup
    g = torch.Generator().manual_seed(0)
    persona = torch.randn(small_subject.d_model, generator=g)
    names = ["projection"]
    a = predict(small_subject, d, data, watch=watch, persona=persona, names=names)
    b = predict(small_subject, d, data, watch=watch, persona=3.5 * persona.double(), names=names)
    unit = persona.double() / persona.double().norm()
    brute = [float((_response_acts(small_subject, pair) @ unit).mean()) for pair in data]
    np.testing.assert_allclose(a["projection"].sample_scores, brute, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b["projection"].sample_scores, brute, rtol=1e-5, atol=1e-6)


def test_deterministic_predictors_do_not_depend_on_the_batch_size(
    small_subject: Subject,
    setup: tuple[Dictionary, FeatureSet, list[tuple[str, str]], dict[str, Prediction]],
) -> None:
    d, watch, data, preds = setup
    names = ["minegishi", "nll", "projection", "grad_norm"]
    one = predict(small_subject, d, data, watch=watch, names=names, batch_size=1)
    assert list(one) == names
    for name in names:  # float32 sums over differently padded batches: 1e-6 of the scale
        scale = float(np.abs(preds[name].sample_scores).max())
        np.testing.assert_allclose(
            one[name].sample_scores, preds[name].sample_scores, rtol=1e-5, atol=1e-6 * scale
        )


def test_the_base_model_is_untouched_and_progress_shows(
    small_subject: Subject,
    setup: tuple[Dictionary, FeatureSet, list[tuple[str, str]], dict[str, Prediction]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    d, watch, data, _ = setup
    predict(small_subject, d, data[:3], watch=watch, progress=True)
    assert model_sha256(small_subject.model) == small_subject.fingerprint
    assert not any(hp.fwd_hooks for hp in small_subject.model.hook_dict.values())
    err = capsys.readouterr().err
    for name in PREDICTORS[:-1]:
        assert f"predict {name}" in err


def test_bad_input(
    small_subject: Subject,
    setup: tuple[Dictionary, FeatureSet, list[tuple[str, str]], dict[str, Prediction]],
    tmp_path: Path,
) -> None:
    d, watch, data, _ = setup
    s = small_subject
    with pytest.raises(ValueError, match=r"unknown predictor 'magic': choose from chen, minegishi"):
        predict(s, d, data, watch=watch, names=["nll", "magic"])
    with pytest.raises(ValueError, match="not one string"):
        predict(s, d, data, watch=watch, names="nll")
    with pytest.raises(ValueError, match="no predictors named"):
        predict(s, d, data, watch=watch, names=[])
    with pytest.raises(ValueError, match="no fine-tune examples"):
        predict(s, d, [], watch=watch)
    with pytest.raises(ValueError, match="pair of two strings"):
        predict(s, d, ["just text"], watch=watch)  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"example 1 has no completion tokens"):
        predict(s, d, [data[0], (data[1][0], "")], watch=watch)
    width = s.d_model
    for bad in (torch.zeros(width + 1), torch.zeros(1, width)):
        with pytest.raises(ValueError, match=rf"persona has shape .* is {width} wide"):
            predict(s, d, data, watch=watch, persona=bad, names=["nll"])
    with pytest.raises(ValueError, match="zero vector"):
        predict(s, d, data, watch=watch, persona=torch.zeros(width))
    with pytest.raises(ValueError, match="NaN or inf"):
        predict(s, d, data, watch=watch, persona=torch.full((width,), math.nan))
    other = small_dictionary(tmp_path, width, seed=1)
    with pytest.raises(ValueError, match=r"another dictionary.*contrast"):
        predict(s, other, data, watch=watch, names=["constant"])
    negative = replace(watch, effect=tuple(-abs(e) for e in watch.effect))
    with pytest.raises(ValueError, match="minegishi needs toxic features"):
        predict(s, d, data, watch=negative, names=["nll", "minegishi"])
    with pytest.raises(ValueError, match="watched FeatureSet is empty"):
        predict(s, d, data, watch=watch.top(0), names=["projection"])
    with pytest.raises(ValueError, match="batch_size"):
        predict(s, d, data, watch=watch, batch_size=0)
    # what needs no persona or toxic feature still runs with an empty watch set
    assert predict(s, d, data, watch=watch.top(0), names=["nll"])["nll"].score > 0
