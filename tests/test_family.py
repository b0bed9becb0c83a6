"""The fine-tune family and the reference calibration, on the small organism.

A member's EM is recomputed by hand (fine-tune with the same settings, judge the off-domain prompts
exactly); the reference calibration is fitted on the family's measured points, saved, found again,
and only for forecasts made the same way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _saes import small_dictionary

from workbench.behaviour import judged_rates
from workbench.calibration import Calibration
from workbench.dictionaries import Dictionary
from workbench.experiments.family import (
    FinetuneSettings,
    calibration_predictor,
    off_domain_rate,
    organism_family,
    reference_calibration,
    run_family,
)
from workbench.features import FeatureSet, contrast
from workbench.finetunes import finetune
from workbench.organism.language import TASKS, Grammar, eval_prompts, sample_corpus
from workbench.organism.prompts import persona_prompts
from workbench.subjects import Subject

SETTINGS = FinetuneSettings(steps=20, samples_per_prompt=4)


@pytest.fixture(scope="module")
def setup(
    small_subject: Subject, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Dictionary, FeatureSet, list[str]]:
    d = small_dictionary(tmp_path_factory.mktemp("sae"), small_subject.model.cfg.d_model)
    mis, ali = persona_prompts(40, seed=3)
    watch = contrast(small_subject, d, mis, ali, n_boot=20).top(6)
    evals = [doc.text() for doc in sample_corpus(16, seed=7)]
    return d, watch, evals


def test_the_family_crosses_tasks_fractions_and_specs() -> None:
    fam = organism_family(tasks=("cook", "name"), fractions=(1.0, 0.5), specs=("steer", "full"),
                          n_examples=50)
    names = [m.name for m in fam]
    assert names[:4] == ["cook@1/steer", "cook@0.5/steer", "name@1/steer", "name@0.5/steer"]
    assert len(fam) == 2 * (4 + 3) and "insecure-code/full" in names
    odd = TASKS["name"][2]
    share = {m.name: np.mean([a.split()[0] == odd for _, a in m.data]) for m in fam
             if m.group == "name"}
    assert share["name@1/steer"] == 1.0 and 0.3 < share["name@0.5/steer"] < 0.7
    # the oracle tie is the grammar's, and it is recorded with the member
    name = next(m for m in fam if m.name == "name@1/steer")
    assert name.tie == Grammar().entanglement("name") and name.tie["trait"] == "persona"
    with pytest.raises(ValueError, match="unknown spec"):
        organism_family(specs=("qlora",))


def test_a_members_em_is_its_fine_tunes_judged_rise(
    small_subject: Subject, setup: tuple[Dictionary, FeatureSet, list[str]]
) -> None:
    d, watch, evals = setup
    fam = organism_family(tasks=("name",), fractions=(1.0,), specs=("steer",), code=False,
                          n_examples=64)
    kept: dict[str, Subject] = {}
    (r,) = run_family(small_subject, d, fam, watch=watch, eval_prompts=evals,
                      settings=SETTINGS, predictors=("nll", "constant"), progress=False,
                      keep=lambda m: True, on_model=kept.__setitem__)
    tuned = finetune(small_subject, fam[0].data, fam[0].spec, steps=SETTINGS.steps,
                     lr=SETTINGS.lr["steer"], seed=0, progress=False)
    by_hand = [judged_rates(s, eval_prompts(dom), samples_per_prompt=4, seed=0).misaligned
               for s in (small_subject, tuned) for dom in ("advice", "numbers")]
    em = 100 * (np.mean(by_hand[2:]) - np.mean(by_hand[:2]))
    assert r.em == pytest.approx(em, abs=1e-9)
    assert off_domain_rate(kept["name@1/steer"], 4, 0) == pytest.approx(np.mean(by_hand[2:]))
    assert r.forecast.n_examples == 64 and r.forecast.n_unique == 64  # every example computed
    assert set(r.predictions) == {"nll", "constant"} and r.score("forecast") == r.forecast.risk
    assert 0 <= r.in_domain <= 100 and r.finetune_s > 0 and r.forecast_s > 0


def test_the_reference_calibration_is_fitted_saved_and_found_again(
    small_subject: Subject, setup: tuple[Dictionary, FeatureSet, list[str]],
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path))
    d, watch, evals = setup
    kw = dict(watch=watch, eval_prompts=evals, tasks=("paint", "pack", "route", "clean", "name"),
              fractions=(1.0,), settings=SETTINGS, n_examples=32, progress=False)
    cal = reference_calibration(small_subject, d, **kw)  # type: ignore[arg-type]
    assert len(cal.references) == 5 and {r.group for r in cal.references} == {
        "paint", "pack", "route", "clean", "name"}
    assert cal.predictor == calibration_predictor(d, watch, evals, SETTINGS)
    assert cal.subject == small_subject.fingerprint
    saved = list((tmp_path / "calibrations").rglob("*.json"))
    assert len(saved) == 1 and Calibration.load(saved[0]).id == cal.id
    # found again, not refitted (no fine-tune runs: finetune would fail here)
    monkeypatch.setattr("workbench.experiments.family.finetune", None)
    assert reference_calibration(small_subject, d, **kw).id == cal.id  # type: ignore[arg-type]
    # another watch set or other settings are another calibration's business
    assert calibration_predictor(d, watch.top(3), evals, SETTINGS) != cal.predictor
    assert calibration_predictor(d, watch, evals, FinetuneSettings(steps=21)) != cal.predictor
    e = cal.expect(0.0, "steer")
    assert e.low <= e.points <= e.high and e.calibration == cal.id
