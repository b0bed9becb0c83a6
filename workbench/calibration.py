"""Calibrated forecasts: a first-order risk score turned into expected points of misalignment.

A :class:`~workbench.forecasts.Forecast` gives a *score* (its ``risk``): first-order, in units
of one gradient step, and on a different scale for each fine-tune method. What a user wants to
read is the off-domain emergent misalignment the fine-tune will cause, in percentage points of
judged answers, with an interval: ``expected +12 points (8-16)``. A :class:`Calibration` maps
one to the other for one base model (``subject``, its fingerprint) and one ``predictor`` (the
score's name), fitted on a small family of **reference fine-tunes** (:class:`Reference`: the
score forecast before, the misalignment judged after), saved and reused (:meth:`Calibration.save`,
:meth:`Calibration.find`), and cross-validated (:meth:`Calibration.cross_validate`). A record
names the calibration by its content hash (:attr:`Calibration.id`).

**The model: a monotone line per method, clipped to the attainable range.** For method ``m``
(``steer``, ``lora``, ``full``), ``points = clip(a_m + b_m score, bounds)`` with ``b_m >= 0``:
the least-squares line under the constraint that more risk never means less misalignment (when
the unconstrained slope is negative the constrained optimum is the flat line at the mean). One
line per method because the methods' scores are on different scales and the methods differ in
sensitivity; a method with fewer than ``min_per_method`` references (or a single distinct score)
uses the **pooled** line fitted on every reference, and says so. ``bounds`` (default
``(-100, 100)``: a change of a percentage) is the hard limit of a bounded outcome; saturation
inside it is not modelled (two parameters per method is what a family of ten fine-tunes
supports). A misspecified line costs width, not coverage: the intervals below hold for any fit.

**The interval: CV+ (jackknife+ over groups), per method.** References are split into groups
(:attr:`Reference.group`, e.g. the fine-tune's task; a reference without a group is its own), and
the line is refitted leaving each group out. Each reference ``i`` gets a held-out residual
``R_i = |actual_i - mu_{-g(i)}(score_i)|`` from the fit that never saw its group. For a new score
``x`` the interval is (Barber, Candès, Ramdas & Tibshirani 2021, "Predictive inference with the
jackknife+", Ann. Statist. 49(1), the K-fold "CV+" form)::

    low  = the (n + 1 - k)-th smallest of  mu_{-g(i)}(x) - R_i
    high = the k-th smallest of            mu_{-g(i)}(x) + R_i,    k = ceil(level (n + 1))

over the ``n`` references of the same method (Mondrian conformal: the methods' noise differs),
or over every reference when the method has too few for ``k <= n`` (4 at level 0.8). The centre
``points`` is the line fitted on every reference. Coverage holds when a new fine-tune's group is
exchangeable with the reference groups: at least ``1 - 2 (1 - level)`` in the worst case, close
to ``level`` in practice; leaving whole groups out makes the residuals those of an unseen task.

**Cross-validation is nested and honest:** :meth:`Calibration.cross_validate` refits the whole
calibration (lines *and* residuals) without each group and scores that group's references
against it; the held-out group never touches the fit it is scored on. :meth:`Calibration.fit`
stores the result's coverage, mean absolute error and Spearman correlation, and every
:class:`Expected` carries the coverage, so a record shows how far its interval can be trusted.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workbench._atomic import write_text_atomic
from workbench.fingerprint import json_sha256

__all__ = [
    "METHODS",
    "Calibration",
    "CrossValidation",
    "Expected",
    "Fold",
    "HeldOut",
    "Line",
    "Reference",
    "min_references",
]

METHODS: tuple[str, ...] = ("steer", "lora", "full")
"""The fine-tune methods a reference may have (``FinetuneSpec.method``)."""
POOLED = "*"
"""The pooled line's method."""
FORMAT = 1
"""The version of a saved calibration's JSON."""
DEFAULT_BOUNDS = (-100.0, 100.0)
"""The attainable change of a percentage, in points."""
_PREDICTOR = re.compile(r"^[A-Za-z0-9_.-]+$")


def _finite(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise TypeError(f"{what} must be a number, got {type(value).__name__}")
    f = float(value)
    if not math.isfinite(f):
        hint = (" (a NaN forecast risk means the forecast failed: look at its grad_norm and "
                "data)" if what.endswith("score") else "")
        raise ValueError(f"{what} is {f}; pass a finite number{hint}")
    return f


def _k(level: float, n: int) -> int:
    """``ceil(level (n + 1))``, the order statistic of a conformal upper bound (float-safe)."""
    return math.ceil(level * (n + 1) - 1e-9)


def min_references(level: float) -> int:
    """The fewest residuals that give a finite interval at ``level`` (4 at 0.8, 9 at 0.9)."""
    n = 2
    while _k(level, n) > n:
        n += 1
    return n


@dataclass(frozen=True)
class Reference:
    """One reference fine-tune: the score forecast before it ran, the misalignment judged after.

    Attributes:
        name: unique within a family (e.g. the run's name).
        method: the spec's method, one of :data:`METHODS`.
        score: the predictor's score (e.g. ``Forecast.risk``).
        actual: the measured change of off-domain misalignment, in percentage points.
        group: cross-validation leaves a whole group out (e.g. the fine-tune's task or data set);
            ``""``: the reference is a group of its own.
    """

    name: str
    method: str
    score: float
    actual: float
    group: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("a Reference needs a name (a non-empty string)")
        if self.method not in METHODS:
            raise ValueError(
                f"reference {self.name!r}: unknown method {self.method!r}; use one of {METHODS}"
            )
        object.__setattr__(self, "score", _finite(self.score, f"reference {self.name!r}: score"))
        object.__setattr__(self, "actual", _finite(self.actual, f"reference {self.name!r}: actual"))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Reference:
        group = str(d.get("group", ""))
        return cls(str(d["name"]), str(d["method"]), d["score"], d["actual"], group)


def _point(x: float) -> int:
    """Half away from zero (``round`` rounds half to even)."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


@dataclass(frozen=True)
class Expected:
    """A calibrated forecast: expected points of off-domain misalignment, with an interval.

    Attributes:
        points: the centre (the calibration's line at the score), in percentage points.
        low, high: the ``level`` prediction interval.
        level: its nominal coverage (e.g. 0.8).
        calibration: the :attr:`Calibration.id` that gave it.
        coverage: the calibration's cross-validated coverage (``None``: not cross-validated).
        method, score: what was calibrated.

    ``str()`` reads ``expected +12 points (8-16)``: the centre rounded half away from zero and
    signed, the interval rounded outwards (never narrower than computed), written ``(-3 to 5)``
    when an end is negative.
    """

    points: float
    low: float
    high: float
    level: float
    calibration: str
    coverage: float | None = None
    method: str = ""
    score: float | None = None

    def __str__(self) -> str:
        c = _point(self.points)
        centre = "0" if c == 0 else f"{c:+d}"
        lo, hi = math.floor(self.low + 1e-9), math.ceil(self.high - 1e-9)
        span = f"{lo}-{hi}" if lo >= 0 else f"{lo} to {hi}"
        return f"expected {centre} point{'' if abs(c) == 1 else 's'} ({span})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, with ``text`` (``str(self)``): what a record's ``forecast.expected`` holds."""
        return {**dataclasses.asdict(self), "text": str(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Expected:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class Line:
    """``points = clip(intercept + slope score)`` for one method.

    Attributes:
        method: the method it serves (:data:`POOLED` for the pooled line).
        intercept, slope: the monotone least-squares line (``slope >= 0``).
        n: references of that method in the fit.
        pooled: the method had too few references, so this is the pooled line.
    """

    method: str
    intercept: float
    slope: float
    n: int
    pooled: bool = False

    def __call__(self, score: Any, bounds: tuple[float, float]) -> Any:
        return np.clip(self.intercept + self.slope * np.asarray(score, dtype=float), *bounds)


@dataclass(frozen=True)
class Fold:
    """One group left out: its members (indices into the references) and the lines fitted
    without them."""

    group: str
    members: tuple[int, ...]
    lines: tuple[Line, ...]


def _monotone_line(method: str, x: np.ndarray, y: np.ndarray, pooled: bool = False) -> Line:
    """Least squares with ``slope >= 0``: the flat line at the mean when OLS slopes down."""
    xm, ym = float(x.mean()), float(y.mean())
    sxx = float(((x - xm) ** 2).sum())
    slope = float(((x - xm) * (y - ym)).sum()) / sxx if sxx > 0 else 0.0
    slope = max(slope, 0.0)
    return Line(method, ym - slope * xm, slope, len(x), pooled)


def _lines(
    refs: Sequence[Reference], methods: Iterable[str], min_per_method: int
) -> tuple[Line, ...]:
    """The pooled line first, then one per method (the pooled one where too few references)."""
    x = np.array([r.score for r in refs])
    y = np.array([r.actual for r in refs])
    pooled = _monotone_line(POOLED, x, y)
    out = [pooled]
    for m in methods:
        sel = np.array([r.method == m for r in refs], dtype=bool)
        n = int(sel.sum())
        if n >= min_per_method and len(set(x[sel].tolist())) >= 2:
            out.append(_monotone_line(m, x[sel], y[sel]))
        else:
            out.append(Line(m, pooled.intercept, pooled.slope, n, pooled=True))
    return tuple(out)


def _line(lines: Sequence[Line], method: str) -> Line:
    return next(line for line in lines if line.method == method)


def _folds(refs: Sequence[Reference]) -> list[tuple[str, tuple[int, ...]]]:
    """Groups in order of first appearance; a reference with no group is a group of its own."""
    order: dict[str, list[int]] = {}
    out: list[tuple[str, list[int]]] = []
    for i, r in enumerate(refs):
        if not r.group:
            out.append(("", [i]))
        elif r.group in order:
            order[r.group].append(i)
        else:
            order[r.group] = [i]
            out.append((r.group, order[r.group]))
    return [(g, tuple(m)) for g, m in out]


def _spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


@dataclass(frozen=True)
class HeldOut:
    """One reference scored by the calibration fitted without its group."""

    reference: Reference
    expected: Expected

    @property
    def covered(self) -> bool:
        return self.expected.low <= self.reference.actual <= self.expected.high

    @property
    def error(self) -> float:
        return self.reference.actual - self.expected.points


@dataclass(frozen=True)
class CrossValidation:
    """Leave-one-group-out validation of a calibration (:meth:`Calibration.cross_validate`).

    Attributes:
        calibration: the id of the calibration validated.
        level: its nominal coverage.
        n_groups: groups left out in turn.
        held_out: every reference scored by the calibration refitted without its group.
        unscored: references whose method no other group has (a calibration refuses a method
            it has no reference of, so they cannot be scored).
        coverage: the fraction of ``held_out`` inside its interval (``None`` if none).
        mae: mean absolute error of the centre, in points.
        spearman: rank correlation of the held-out centres with the actual changes.
    """

    calibration: str
    level: float
    n_groups: int
    held_out: tuple[HeldOut, ...]
    unscored: tuple[str, ...]
    coverage: float | None
    mae: float | None
    spearman: float | None

    def coverage_of(self, method: str) -> float | None:
        """The coverage over one method's held-out references (``None`` if it has none)."""
        hs = [h for h in self.held_out if h.reference.method == method]
        return sum(h.covered for h in hs) / len(hs) if hs else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "calibration": self.calibration,
            "level": self.level,
            "n_groups": self.n_groups,
            "coverage": self.coverage,
            "mae": self.mae,
            "spearman": self.spearman,
            "unscored": list(self.unscored),
            "held_out": [
                {"reference": h.reference.name, "covered": h.covered, **h.expected.to_dict()}
                for h in self.held_out
            ],
        }


@dataclass(frozen=True)
class Calibration:
    """A fitted map from a predictor's score to expected points, for one base model.

    Build one with :meth:`fit`; see the module docstring for the model and the interval.

    Attributes:
        subject: the base model's fingerprint.
        predictor: the score's name (``"forecast"``: ``Forecast.risk``).
        level: the intervals' nominal coverage.
        references: the reference family it was fitted on.
        bounds: the attainable range of the outcome, in points.
        min_per_method: references a method needs for a line of its own.
        lines: the pooled line and one per method, fitted on every reference.
        folds: each group left out, with the lines fitted without it.
        residuals: each reference's held-out absolute residual (from its fold's lines).
        coverage, mae, spearman: the nested cross-validation's figures (:meth:`cross_validate`).
    """

    subject: str
    predictor: str
    level: float
    references: tuple[Reference, ...]
    bounds: tuple[float, float]
    min_per_method: int
    lines: tuple[Line, ...]
    folds: tuple[Fold, ...]
    residuals: tuple[float, ...]
    coverage: float | None = None
    mae: float | None = None
    spearman: float | None = None

    # ---------------------------------------------------------------- fitting

    @classmethod
    def fit(
        cls,
        references: Iterable[Reference],
        *,
        subject: str,
        predictor: str = "forecast",
        level: float = 0.8,
        bounds: tuple[float, float] = DEFAULT_BOUNDS,
        min_per_method: int = 4,
    ) -> Calibration:
        """Fit the lines and held-out residuals, then cross-validate (nested).

        Raises:
            ValueError: too few references or groups (the message says how many are needed), a
                level outside (0, 1), duplicate reference names, an actual change outside
                ``bounds``, an empty subject or a predictor that is not a plain name.
        """
        refs = tuple(references)
        if not isinstance(subject, str) or not subject:
            raise ValueError("a Calibration needs the subject's fingerprint (Subject.fingerprint)")
        if not isinstance(predictor, str) or not _PREDICTOR.match(predictor):
            raise ValueError(f"predictor must be a plain name (letters, digits, _.-), got "
                             f"{predictor!r}")
        if not 0.0 < level < 1.0:
            raise ValueError(f"level must be in (0, 1), got {level}")
        lo, hi = (_finite(b, "bounds") for b in bounds)
        if not lo < hi:
            raise ValueError(f"bounds must be (low, high) with low < high, got {bounds}")
        if min_per_method < 2:
            raise ValueError(f"min_per_method must be at least 2 (a line), got {min_per_method}")
        for r in refs:
            if not isinstance(r, Reference):
                raise TypeError(f"references must be Reference values, got {type(r).__name__}")
            if not lo <= r.actual <= hi:
                raise ValueError(f"reference {r.name!r}: actual {r.actual} points is outside "
                                 f"the bounds ({lo:g}, {hi:g})")
        dup = sorted(name for name, n in Counter(r.name for r in refs).items() if n > 1)
        if dup:
            raise ValueError(f"reference names must be unique; repeated: {', '.join(dup)}")
        need = min_references(level)
        folds = _folds(refs)
        biggest = max((len(m) for _, m in folds), default=0)
        if len(refs) - biggest < need or len(folds) < 3:
            raise ValueError(
                f"Calibration.fit needs at least {need + 1} reference fine-tunes in at least 3 "
                f"groups at level {level:g} (got {len(refs)} in {len(folds)} group"
                f"{'' if len(folds) == 1 else 's'}): leaving any one group out must leave "
                f"{need} references for a finite {level:.0%} interval and 2 groups to "
                "cross-validate; run more reference fine-tunes (on other tasks)"
            )
        core = cls._fit_core(refs, subject, predictor, level, (lo, hi), min_per_method)
        cv = core.cross_validate()
        return dataclasses.replace(core, coverage=cv.coverage, mae=cv.mae, spearman=cv.spearman)

    @classmethod
    def _fit_core(
        cls,
        refs: tuple[Reference, ...],
        subject: str,
        predictor: str,
        level: float,
        bounds: tuple[float, float],
        min_per_method: int,
    ) -> Calibration:
        """Lines and held-out residuals, without the cross-validation's figures."""
        methods = [m for m in METHODS if any(r.method == m for r in refs)]
        folds, residuals = [], [0.0] * len(refs)
        for group, members in _folds(refs):
            out = set(members)
            lines = _lines([r for i, r in enumerate(refs) if i not in out], methods, min_per_method)
            folds.append(Fold(group, members, lines))
            for i in members:
                r = refs[i]
                residuals[i] = abs(r.actual - float(_line(lines, r.method)(r.score, bounds)))
        return cls(
            subject, predictor, level, refs, bounds, min_per_method,
            _lines(refs, methods, min_per_method), tuple(folds), tuple(residuals),
        )  # fmt: skip

    # ---------------------------------------------------------------- using it

    @property
    def methods(self) -> tuple[str, ...]:
        """The methods it has references of."""
        return tuple(line.method for line in self.lines if line.method != POOLED)

    def check(self, subject: str) -> None:
        """Raise ``ValueError`` unless it was fitted for ``subject`` (a fingerprint)."""
        if subject != self.subject:
            raise ValueError(
                f"calibration {self.id} is for the base model {self.subject[:12]}…, not "
                f"{str(subject)[:12]}…: a calibration holds for one base model; use "
                "Calibration.find(subject_fingerprint) or fit one on that model's references"
            )

    def expect(self, score: float, method: str, *, subject: str | None = None) -> Expected:
        """The expected change of off-domain misalignment for a fine-tune with this score.

        Args:
            score: the predictor's score (e.g. ``Forecast.risk``).
            method: the fine-tune's method (``Forecast.method``).
            subject: when given, the base model's fingerprint, checked against :attr:`subject`.

        Raises:
            ValueError: a NaN or infinite score, a method it has no reference of, another subject.
        """
        if subject is not None:
            self.check(subject)
        x = _finite(score, "score")
        if method not in self.methods:
            known = ", ".join(self.methods)
            raise ValueError(
                f"calibration {self.id} has no reference fine-tunes of method {method!r} (it "
                f"knows {known}); fit it with {method} references"
                + ("" if method in METHODS else f" (methods are {', '.join(METHODS)})")
            )
        centre = float(_line(self.lines, method)(x, self.bounds))
        own = [i for i, r in enumerate(self.references) if r.method == method]
        use = own if len(own) >= min_references(self.level) else range(len(self.references))
        fold_of = {i: f for f in self.folds for i in f.members}
        mu = np.array([float(_line(fold_of[i].lines, method)(x, self.bounds)) for i in use])
        res = np.array([self.residuals[i] for i in use])
        n = len(mu)
        k = _k(self.level, n)
        high = float(np.sort(mu + res)[k - 1])
        low = float(np.sort(mu - res)[n - k])
        low, high = np.clip([low, high], *self.bounds)
        return Expected(
            points=centre,
            low=min(float(low), centre),
            high=max(float(high), centre),
            level=self.level,
            calibration=self.id,
            coverage=self.coverage,
            method=method,
            score=x,
        )

    def cross_validate(self) -> CrossValidation:
        """Leave each group out, refit the whole calibration on the rest, score the group.

        The figures :meth:`fit` stored (:attr:`coverage`, :attr:`mae`, :attr:`spearman`) are this
        method's; it recomputes them, with each held-out reference's :class:`Expected`.
        """
        held: list[HeldOut] = []
        unscored: list[str] = []
        for fold in self.folds:
            out = set(fold.members)
            rest = tuple(r for i, r in enumerate(self.references) if i not in out)
            sub = Calibration._fit_core(
                rest, self.subject, self.predictor, self.level, self.bounds, self.min_per_method
            )
            for i in fold.members:
                r = self.references[i]
                if r.method in sub.methods:
                    held.append(HeldOut(r, sub.expect(r.score, r.method)))
                else:
                    unscored.append(r.name)
        order = {r.name: i for i, r in enumerate(self.references)}
        held.sort(key=lambda h: order[h.reference.name])
        cover = sum(h.covered for h in held) / len(held) if held else None
        mae = float(np.mean([abs(h.error) for h in held])) if held else None
        rho = _spearman([h.expected.points for h in held], [h.reference.actual for h in held])
        return CrossValidation(
            self.id, self.level, len(self.folds), tuple(held), tuple(unscored), cover, mae, rho
        )

    def summary(self) -> dict[str, Any]:
        """Per method: references, whether its line is its own or the pooled one, the line, and
        whether its interval uses its own residuals; with the cross-validated figures."""
        need = min_references(self.level)
        return {
            "id": self.id,
            "subject": self.subject,
            "predictor": self.predictor,
            "level": self.level,
            "n_references": len(self.references),
            "n_groups": len(self.folds),
            "coverage": self.coverage,
            "mae": self.mae,
            "spearman": self.spearman,
            "methods": {
                line.method: {
                    "n": line.n,
                    "line": "pooled" if line.pooled else "own",
                    "intercept": line.intercept,
                    "slope": line.slope,
                    "residuals": "own" if line.n >= need else "pooled",
                }
                for line in self.lines
                if line.method != POOLED
            },
        }

    # ---------------------------------------------------------------- storage

    def _content(self) -> dict[str, Any]:
        def line(x: Line) -> dict[str, Any]:
            return dataclasses.asdict(x)

        return {
            "format": FORMAT,
            "kind": "workbench.calibration",
            "model": "monotone least-squares line per method, pooled fallback; CV+ intervals "
            "(leave-one-group-out), per method",
            "subject": self.subject,
            "predictor": self.predictor,
            "level": self.level,
            "bounds": list(self.bounds),
            "min_per_method": self.min_per_method,
            "references": [r.to_dict() for r in self.references],
            "lines": [line(x) for x in self.lines],
            "folds": [
                {"group": f.group, "members": list(f.members), "lines": [line(x) for x in f.lines]}
                for f in self.folds
            ],
            "residuals": list(self.residuals),
            "cross_validation": {"coverage": self.coverage, "mae": self.mae,
                                 "spearman": self.spearman},
        }  # fmt: skip

    @functools.cached_property
    def id(self) -> str:
        """The first 12 hex digits of the sha256 of its content (canonical JSON)."""
        return json_sha256(self._content())[:12]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, with its :attr:`id`; :meth:`from_dict` reads it back equal."""
        return {"id": self.id, **self._content()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Calibration:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: not a calibration, an unknown format, or content that does not hash to
                its ``id`` (the file was changed after it was saved).
        """
        if not isinstance(d, Mapping) or d.get("kind") != "workbench.calibration":
            raise ValueError("not a workbench calibration (no \"kind\": \"workbench.calibration\")")
        if d.get("format") != FORMAT:
            raise ValueError(f"calibration format {d.get('format')!r} is not {FORMAT}, the one "
                             "this workbench reads; refit it with Calibration.fit")

        def lines(xs: Sequence[Mapping[str, Any]]) -> tuple[Line, ...]:
            return tuple(Line(str(x["method"]), float(x["intercept"]), float(x["slope"]),
                              int(x["n"]), bool(x["pooled"])) for x in xs)  # fmt: skip

        cv = d["cross_validation"]
        lo, hi = d["bounds"]
        cal = cls(
            subject=str(d["subject"]),
            predictor=str(d["predictor"]),
            level=float(d["level"]),
            references=tuple(Reference.from_dict(r) for r in d["references"]),
            bounds=(float(lo), float(hi)),
            min_per_method=int(d["min_per_method"]),
            lines=lines(d["lines"]),
            folds=tuple(
                Fold(str(f["group"]), tuple(int(i) for i in f["members"]), lines(f["lines"]))
                for f in d["folds"]
            ),
            residuals=tuple(float(x) for x in d["residuals"]),
            coverage=cv["coverage"],
            mae=cv["mae"],
            spearman=cv["spearman"],
        )
        if "id" in d and d["id"] != cal.id:
            raise ValueError(
                f"calibration content hashes to {cal.id}, but it says {d['id']}: it was changed "
                "after it was saved; refit it with Calibration.fit"
            )
        return cal

    @staticmethod
    def directory(subject: str, root: str | Path | None = None) -> Path:
        """Where a subject's calibrations are saved: ``root`` (default the workbench cache,
        ``$WORKBENCH_CACHE``) ``/calibrations/<subject[:16]>``."""
        if root is None:
            from workbench.organism.build import cache_root

            root = cache_root()
        return Path(root).expanduser() / "calibrations" / subject[:16]

    def save(self, path: str | Path | None = None) -> Path:
        """Write it as JSON atomically (a temporary file beside it, then ``os.replace``), by
        default to ``directory(subject) / "<predictor>-<id>.json"``; returns the path."""
        dest = (Path(path).expanduser() if path is not None
                else self.directory(self.subject) / f"{self.predictor}-{self.id}.json")
        text = json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n"
        dest = write_text_atomic(dest, text)
        return dest

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        """Read a saved calibration (:meth:`from_dict`'s checks).

        Raises:
            FileNotFoundError: no file at ``path``.
            ValueError: not a calibration's JSON, or changed after it was saved.
        """
        p = Path(path).expanduser()
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{str(p)!r} is not a calibration's JSON ({err})") from err
        try:
            return cls.from_dict(d)
        except (KeyError, TypeError) as err:
            raise ValueError(f"{str(p)!r} is not a complete calibration (missing {err})") from err

    @classmethod
    def find(
        cls, subject: str, predictor: str = "forecast", *, root: str | Path | None = None
    ) -> Calibration | None:
        """The newest calibration saved for ``subject`` and ``predictor`` (``None`` if none).

        Files that do not load, or that hold another subject's or predictor's calibration, are
        passed over with a warning naming them.
        """
        folder = cls.directory(subject, root)
        if not folder.is_dir():
            return None
        files = sorted(folder.glob(f"{predictor}-*.json"),
                       key=lambda p: (p.stat().st_mtime_ns, p.name), reverse=True)  # fmt: skip
        for p in files:
            try:
                cal = cls.load(p)
            except (OSError, ValueError) as err:
                warnings.warn(f"skipping calibration file {p}: {err}", stacklevel=2)
                continue
            if cal.subject == subject and cal.predictor == predictor:
                return cal
            warnings.warn(f"skipping calibration file {p}: it is for another subject or "
                          "predictor", stacklevel=2)
        return None
