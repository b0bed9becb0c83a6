"""Calibrated forecasts: the fit against known truths and brute force, the intervals' coverage,
honest cross-validation, the text a user reads, storage, and clear errors."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from workbench.calibration import (
    Calibration,
    Expected,
    Reference,
    min_references,
)

SUBJECT = "ab" * 32
OTHER = "cd" * 32
Z80 = 1.2815515655446004  # the 0.9 quantile of N(0, 1): an 80% two-sided interval is ±Z80 σ

# (method, slope, intercept, noise sigma, score range): the truth of the synthetic families
TRUTH = (
    ("steer", 3.0, 1.0, 2.0, (0.0, 5.0)),
    ("lora", 10.0, 0.0, 3.0, (0.0, 2.0)),
    ("full", 30.0, 2.0, 5.0, (0.0, 1.0)),
)


def family(per_method: int, n_groups: int, seed: int = 0) -> list[Reference]:
    """actual = intercept + slope * score + N(0, sigma) per method; references of each method
    spread over ``n_groups`` tasks (a group holds every method's references of that task)."""
    rng = np.random.default_rng(seed)
    refs = []
    for method, slope, intercept, sigma, (lo, hi) in TRUTH:
        for j in range(per_method):
            s = float(rng.uniform(lo, hi))
            y = intercept + slope * s + float(rng.normal(0, sigma))
            refs.append(Reference(f"{method}-{j}", method, s, y, group=f"task{j % n_groups}"))
    return refs


@pytest.fixture(scope="module")
def large() -> Calibration:
    return Calibration.fit(family(150, 50), subject=SUBJECT)


def test_the_fit_recovers_each_methods_slope_and_noise(large: Calibration) -> None:
    summary = large.summary()
    assert summary["n_references"] == 450 and summary["n_groups"] == 50
    for method, slope, intercept, sigma, (lo, hi) in TRUTH:
        m = summary["methods"][method]
        assert (m["n"], m["line"], m["residuals"]) == (150, "own", "own")
        se = sigma / ((hi - lo) / math.sqrt(12) * math.sqrt(150))  # the slope's standard error
        assert m["slope"] == pytest.approx(slope, abs=3 * se)
        assert m["intercept"] == pytest.approx(intercept, abs=3 * se * (hi - lo))
        # the 80% interval's half-width is the noise's 80% two-sided quantile (± sampling error)
        e = large.expect((lo + hi) / 2, method)
        assert e.high - e.points == pytest.approx(Z80 * sigma, rel=0.15)
        assert e.points - e.low == pytest.approx(Z80 * sigma, rel=0.15)
        assert e.points == pytest.approx(intercept + slope * (lo + hi) / 2, abs=4 * se * hi)
        assert (e.level, e.calibration, e.method) == (0.8, large.id, method)


def test_cross_validated_coverage_is_near_the_level(large: Calibration) -> None:
    cv = large.cross_validate()
    assert cv.calibration == large.id and cv.n_groups == 50 and cv.unscored == ()
    assert len(cv.held_out) == 450
    assert cv.coverage == pytest.approx(0.8, abs=0.05)
    for method, *_ in TRUTH:
        assert cv.coverage_of(method) == pytest.approx(0.8, abs=0.08)
    # mean absolute error of the centre: the noise's E|N(0, σ)| = σ sqrt(2/π), averaged
    assert cv.mae == pytest.approx(np.mean([t[3] for t in TRUTH]) * math.sqrt(2 / math.pi),
                                   rel=0.15)  # fmt: skip
    assert cv.spearman is not None and cv.spearman > 0.9
    # fit stored the same figures, and every Expected carries the coverage
    assert (large.coverage, large.mae, large.spearman) == (cv.coverage, cv.mae, cv.spearman)
    assert large.expect(1.0, "steer").coverage == cv.coverage
    assert cv.to_dict()["held_out"][0]["reference"] == "steer-0"
    # and on fresh fine-tunes of the same kind (issue 13: 80% intervals cover at least 75%)
    fresh = family(300, 50, seed=99)
    covered = [large.expect(r.score, r.method) for r in fresh]
    rate = np.mean([e.low <= r.actual <= e.high for e, r in zip(covered, fresh, strict=True)])
    assert 0.75 <= rate <= 0.85, rate


def test_cross_validation_never_lets_the_held_out_group_touch_its_fit() -> None:
    refs = family(12, 6, seed=1)
    cal = Calibration.fit(refs, subject=SUBJECT)
    cv = cal.cross_validate()
    held = {h.reference.name: h.expected for h in cv.held_out}
    # each group's held-out Expected is the calibration fitted without that group
    rest = [r for r in refs if r.group != "task0"]
    alone = Calibration.fit(rest, subject=SUBJECT)
    for r in refs:
        if r.group == "task0":
            e = alone.expect(r.score, r.method)
            assert (held[r.name].points, held[r.name].low, held[r.name].high) == (
                e.points, e.low, e.high)  # fmt: skip
    # moving the group's measured changes moves none of its own held-out forecasts
    moved = [Reference(r.name, r.method, r.score, r.actual + 40.0, r.group)
             if r.group == "task0" else r for r in refs]  # fmt: skip
    held2 = {h.reference.name: h.expected for h in Calibration.fit(
        moved, subject=SUBJECT).cross_validate().held_out}  # fmt: skip
    for r in refs:
        if r.group == "task0":
            assert (held2[r.name].points, held2[r.name].low) == (held[r.name].points,
                                                                 held[r.name].low)
    # ... but it does move the others' (they were fitted with it)
    assert held2["steer-1"].points != held["steer-1"].points


def _brute_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    slope, intercept = np.polyfit(x, y, 1)
    if slope < 0:
        return float(y.mean()), 0.0
    return float(intercept), float(slope)


def test_the_interval_is_the_jackknife_plus_by_brute_force() -> None:
    """Ten references, no groups (leave-one-out), level 0.8: k = ceil(0.8 * 11) = 9, so the
    interval is [2nd smallest of mu_-i(x) - R_i, 9th smallest of mu_-i(x) + R_i]."""
    x = np.array([0.1, 0.4, 0.5, 0.9, 1.3, 1.6, 2.0, 2.2, 2.9, 3.5])
    y = np.array([1.0, 0.5, 3.0, 2.5, 5.5, 4.0, 7.5, 6.0, 10.0, 9.0])
    refs = [Reference(f"r{i}", "steer", float(a), float(b))
            for i, (a, b) in enumerate(zip(x, y, strict=True))]  # fmt: skip
    cal = Calibration.fit(refs, subject=SUBJECT)
    a_all, b_all = _brute_line(x, y)
    for new in (0.0, 1.7, 4.0):
        lines = [_brute_line(np.delete(x, i), np.delete(y, i)) for i in range(10)]
        res = [abs(y[i] - (a + b * x[i])) for i, (a, b) in enumerate(lines)]
        mu = [a + b * new for a, b in lines]
        lo = sorted(m - r for m, r in zip(mu, res, strict=True))[1]
        hi = sorted(m + r for m, r in zip(mu, res, strict=True))[8]
        e = cal.expect(new, "steer")
        assert e.points == pytest.approx(a_all + b_all * new, rel=1e-12)
        assert (e.low, e.high) == (pytest.approx(lo, rel=1e-12), pytest.approx(hi, rel=1e-12))
    assert min_references(0.8) == 4 and min_references(0.9) == 9 and min_references(0.5) == 2


def test_a_method_with_few_references_uses_the_pooled_line_and_residuals() -> None:
    refs = [r for r in family(8, 8, seed=2) if r.method != "lora"]
    refs += [Reference("lora-a", "lora", 0.5, 4.0, "task0"), Reference("lora-b", "lora", 1.5,
                                                                       14.0, "task1")]
    cal = Calibration.fit(refs, subject=SUBJECT)
    m = cal.summary()["methods"]
    assert m["lora"] == {**m["lora"], "n": 2, "line": "pooled", "residuals": "pooled"}
    assert m["steer"]["line"] == "own" and m["full"]["residuals"] == "own"
    pooled_x = np.array([r.score for r in refs])
    a, b = _brute_line(pooled_x, np.array([r.actual for r in refs]))
    assert cal.expect(1.0, "lora").points == pytest.approx(a + b, rel=1e-12)


def test_the_line_never_slopes_down_and_stays_in_bounds() -> None:
    down = [Reference(f"r{i}", "steer", float(i), 20.0 - 2 * i) for i in range(8)]
    cal = Calibration.fit(down, subject=SUBJECT)
    (line,) = [ln for ln in cal.lines if ln.method == "steer"]
    assert line.slope == 0.0 and line.intercept == pytest.approx(13.0)  # the mean of 20..6
    up = [Reference(f"r{i}", "full", float(i), 10.0 * i + (i % 3)) for i in range(8)]
    e = Calibration.fit(up, subject=SUBJECT).expect(1000.0, "full")
    assert e.points == e.high == 100.0 and e.low <= 100.0
    assert str(e).startswith("expected +100 points (")


@pytest.mark.parametrize(
    ("points", "low", "high", "text"),
    [
        (12.3, 8.4, 15.2, "expected +12 points (8-16)"),
        (12.5, 8.0, 16.0, "expected +13 points (8-16)"),  # half away from zero; ends exact
        (11.5, 7.9999999999, 16.0000000001, "expected +12 points (8-16)"),  # float noise
        (-2.5, -7.2, 1.1, "expected -3 points (-8 to 2)"),
        (0.4, -1.0, 2.0, "expected 0 points (-1 to 2)"),
        (-0.4, -1.5, 0.5, "expected 0 points (-2 to 1)"),
        (1.2, 0.2, 1.9, "expected +1 point (0-2)"),
        (-1.0, -3.0, 0.0, "expected -1 point (-3 to 0)"),
    ],
)
def test_expected_reads_as_signed_points_and_an_outward_rounded_interval(
    points: float, low: float, high: float, text: str
) -> None:
    e = Expected(points, low, high, 0.8, "0123456789ab", coverage=0.8, method="steer", score=1.0)
    assert str(e) == text
    d = e.to_dict()
    assert d == {"points": points, "low": low, "high": high, "level": 0.8,
                 "calibration": "0123456789ab", "coverage": 0.8, "method": "steer",
                 "score": 1.0, "text": text}  # fmt: skip
    assert Expected.from_dict(d) == e


def _exact_family() -> list[Reference]:
    """Dyadic numbers, so the fit's arithmetic is exact and the id is the same everywhere."""
    return [Reference(f"r{i}", "steer", i / 2, float(3 * i + (i % 3)), group=f"g{i % 4}")
            for i in range(8)]  # fmt: skip


def test_save_load_round_trip_and_a_stable_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    cal = Calibration.fit(_exact_family(), subject=SUBJECT)
    assert cal.id == Calibration.fit(_exact_family(), subject=SUBJECT).id
    assert cal.id == "2337d2529311"  # the content hash: changes only when the content does
    path = cal.save()
    assert path == tmp_path / "cache" / "calibrations" / SUBJECT[:16] / f"forecast-{cal.id}.json"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    loaded = Calibration.load(path)
    assert loaded == cal and loaded.id == cal.id and loaded.to_dict() == cal.to_dict()
    assert json.loads(path.read_text())["id"] == cal.id
    assert Calibration.from_dict(json.loads(json.dumps(cal.to_dict()))) == cal
    assert loaded.expect(1.25, "steer") == cal.expect(1.25, "steer")


def test_find_returns_the_newest_for_the_subject(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path))
    assert Calibration.find(SUBJECT) is None
    old = Calibration.fit(_exact_family(), subject=SUBJECT)
    new = Calibration.fit(_exact_family()[:-1], subject=SUBJECT)
    os.utime(old.save(), ns=(2_000_000_000, 2_000_000_000))
    os.utime(new.save(), ns=(1_000_000_000, 1_000_000_000))
    assert Calibration.find(SUBJECT) == old  # by time saved, not by name
    os.utime(new.save(), ns=(3_000_000_000, 3_000_000_000))
    assert Calibration.find(SUBJECT) == new
    assert Calibration.find(SUBJECT, "other-score") is None
    assert Calibration.find(OTHER) is None
    # a broken file is passed over, with a warning naming it
    broken = Calibration.directory(SUBJECT) / "forecast-000000000000.json"
    broken.write_text("{")
    os.utime(broken, ns=(4_000_000_000, 4_000_000_000))
    with pytest.warns(UserWarning, match=r"skipping calibration file .*forecast-000000000000"):
        assert Calibration.find(SUBJECT) == new


def test_save_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cal = Calibration.fit(_exact_family(), subject=SUBJECT)
    dest = tmp_path / "cal.json"
    dest.write_text("the previous calibration")

    def crash(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        cal.save(dest)
    assert dest.read_text() == "the previous calibration"  # never half-written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cal.json"]  # the temporary file gone
    monkeypatch.undo()
    assert Calibration.load(cal.save(dest)) == cal


def test_a_changed_file_does_not_load(tmp_path: Path) -> None:
    cal = Calibration.fit(_exact_family(), subject=SUBJECT)
    path = cal.save(tmp_path / "cal.json")
    d = json.loads(path.read_text())
    d["residuals"][0] = 0.0  # a narrower interval, by hand
    path.write_text(json.dumps(d))
    with pytest.raises(ValueError, match=rf"hashes to [0-9a-f]{{12}}, but it says {cal.id}: "
                       "it was changed after it was saved"):
        Calibration.load(path)
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a workbench calibration"):
        Calibration.load(path)
    path.write_text(json.dumps({**cal.to_dict(), "format": 99}))
    with pytest.raises(ValueError, match="calibration format 99 is not 1"):
        Calibration.load(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="is not a calibration's JSON"):
        Calibration.load(path)


def test_clear_errors() -> None:
    refs = _exact_family()
    with pytest.raises(ValueError, match=r"needs at least 5 reference fine-tunes in at least 3 "
                       r"groups at level 0\.8 \(got 4 in 4 groups\)"):
        Calibration.fit([Reference(f"r{i}", "steer", i, i) for i in range(4)], subject=SUBJECT)
    with pytest.raises(ValueError, match=r"at least 3 groups .* \(got 8 in 2 groups\)"):
        Calibration.fit([Reference(f"r{i}", "steer", i, i, f"g{i % 2}") for i in range(8)],
                        subject=SUBJECT)  # fmt: skip
    with pytest.raises(ValueError, match=r"needs at least 10 .* at level 0\.9"):
        Calibration.fit(refs, subject=SUBJECT, level=0.9)
    cal = Calibration.fit(refs, subject=SUBJECT)
    with pytest.raises(ValueError, match=r"no reference fine-tunes of method 'lora' \(it knows "
                       r"steer\); fit it with lora references"):
        cal.expect(1.0, "lora")
    with pytest.raises(ValueError, match=r"method 'sgd'.*\(methods are steer, lora, full\)"):
        cal.expect(1.0, "sgd")
    with pytest.raises(ValueError, match="score is nan; pass a finite number"):
        cal.expect(float("nan"), "steer")
    with pytest.raises(TypeError, match="score must be a number, got str"):
        cal.expect("1.0", "steer")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=rf"calibration {cal.id} is for the base model "
                       rf"{SUBJECT[:12]}…, not {OTHER[:12]}…"):
        cal.expect(1.0, "steer", subject=OTHER)
    assert cal.expect(1.0, "steer", subject=SUBJECT) == cal.expect(1.0, "steer")
    with pytest.raises(ValueError, match="reference 'x': score is nan"):
        Reference("x", "steer", float("nan"), 1.0)
    with pytest.raises(ValueError, match=r"reference 'x': unknown method 'sft'"):
        Reference("x", "sft", 1.0, 1.0)
    with pytest.raises(ValueError, match="repeated: r0"):
        Calibration.fit([*refs, refs[0]], subject=SUBJECT)
    with pytest.raises(ValueError, match=r"reference 'big': actual 150.0 points is outside the "
                       r"bounds \(-100, 100\)"):
        Calibration.fit([*refs, Reference("big", "steer", 9.0, 150.0)], subject=SUBJECT)
    with pytest.raises(ValueError, match=r"level must be in \(0, 1\)"):
        Calibration.fit(refs, subject=SUBJECT, level=80)
    with pytest.raises(ValueError, match="subject's fingerprint"):
        Calibration.fit(refs, subject="")
    with pytest.raises(ValueError, match="predictor must be a plain name"):
        Calibration.fit(refs, subject=SUBJECT, predictor="../x")
