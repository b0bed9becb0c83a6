"""Interventions: the patches (:class:`Steer`, :class:`Ablate`, :class:`Orthogonalize`).

Each patch applies a :class:`~workbench.patches._directions.Direction` to a subject, either for a
block (hooks, or a weight edit restored on exit) or for good (a deep copy with edited weights).
The first part of the module is the machinery they share: which hooks and weights write to the
residual stream, the width of a hook, the orthogonalizing weight edit and its restoring context.
:mod:`~workbench.patches._transfer` and :mod:`~workbench.patches._preview` build on this module.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, TypeVar

import torch

from workbench import execution
from workbench.execution import Model
from workbench.fingerprint import json_sha256
from workbench.patches._directions import Direction
from workbench.subjects import Subject

# ------------------------------------------------------------------ model structure


def _hook_width(subject: Subject, hook_name: str) -> int:
    """Width of one token's activation at ``hook_name`` (per-head hooks flattened)."""
    return execution.hook_width(subject.model, hook_name, subject.name)


def _width_error(direction: Direction, subject: Subject, width: int, hook: str) -> ValueError:
    resid = execution.RESID_HOOK.match(hook)
    where = f"has d_model {width}" if resid else f"is {width} wide at {hook!r}"
    return ValueError(
        f"this patch's direction has width {direction.d_model} but {subject.name} {where}; "
        "map it with workbench.patches.transfer(patch, source, target, prompts) first"
    )


def _removal(direction: Direction, reading: Direction | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(f, q)`` of the projection ``x - (x . f) q``, float64: ``f = q = r̂`` for an orthogonal
    ablation; with a ``reading``, ``f`` is the reading and ``q = p / (f . p)`` (an oblique
    projection: it zeroes ``x . f`` and removes along ``p``, the direction)."""
    if reading is None:
        u = direction.unit.double()
        return u, u
    if reading.d_model != direction.d_model:
        raise ValueError(
            f"the reading has width {reading.d_model} but the direction {direction.d_model}"
        )
    f, p = reading.vector.double(), direction.vector.double()
    fp = float(f @ p)
    if abs(fp) <= 1e-8 * float(f.norm() * p.norm()):
        raise ValueError(
            f"the reading {reading.name!r} is orthogonal to the direction {direction.name!r}: an "
            "oblique ablation removes along the direction what the reading reads, so they must "
            "not be orthogonal"
        )
    return f, p / fp


def _orthogonalized(
    model: Model, f: torch.Tensor, q: torch.Tensor, strength: float
) -> dict[str, torch.Tensor]:
    """New values of every residual writer: ``W - strength * (W @ f)[..., None] * q``."""
    params = dict(model.named_parameters())
    out = {}
    for name in execution.residual_writers(model):
        w = params[name].detach()
        f64, q64 = f.to(w.device, torch.float64), q.to(w.device, torch.float64)
        w64 = w.double()
        out[name] = (w64 - strength * (w64 @ f64)[..., None] * q64).to(w.dtype)
    return out


@contextlib.contextmanager
def _edited(model: Model, values: dict[str, torch.Tensor]) -> Iterator[None]:
    """Overwrite parameters in place for the block; restore the saved originals on exit."""
    params = dict(model.named_parameters())
    saved = {name: params[name].detach().clone() for name in values}
    try:
        with torch.no_grad():
            for name, v in values.items():
                params[name].copy_(v)
        yield
    finally:
        with torch.no_grad():
            for name, v in saved.items():
                params[name].copy_(v)


def _subject_hooks_check(subject: Subject) -> None:
    if execution.has_hooks(subject.model):
        raise ValueError(
            f"{subject.name}'s model has hooks attached (inside an `applied` block or a "
            "`model.hooks(...)` context?); call apply() on an unhooked model"
        )


# ------------------------------------------------------------------ patches

P = TypeVar("P", bound="Patch")


class Patch:
    """What every patch shares: a direction, a strength, ``apply`` and ``applied``.

    Subclasses implement ``_check`` (does the patch fit the subject), ``_install`` (patch the
    caller's model for a block), ``_check_bake`` (can the patch be made permanent in this model)
    and ``_bake`` (edit a private copy of the model for good).
    """

    kind: ClassVar[str] = "patch"
    direction: Direction

    @property
    def strength(self) -> float:
        """How strongly the patch acts (``alpha`` for :class:`Steer`)."""
        raise NotImplementedError

    def with_strength(self: P, strength: float) -> P:
        """A copy of this patch with another strength."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """A JSON-able description (what a recipe or a deployment record stores)."""
        fields = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
            if f.name not in ("direction", "reading")
        }
        out = {"kind": self.kind, **fields, "direction": self.direction.describe()}
        reading = getattr(self, "reading", None)
        if reading is not None:
            out["reading"] = reading.describe()
        return out

    def _check(self, subject: Subject) -> None:
        width = subject.d_model
        if self.direction.d_model != width:
            raise _width_error(self.direction, subject, width, "hook_embed")

    def _install(self, subject: Subject) -> contextlib.AbstractContextManager[Any]:
        raise NotImplementedError

    def _check_bake(self, model: Model) -> None:
        return None

    def _bake(self, model: Model) -> None:
        raise NotImplementedError

    def _recipe(self, subject: Subject) -> dict[str, Any]:
        return {"patch": self.describe(), "base_fingerprint": subject.fingerprint}

    @contextlib.contextmanager
    def applied(self, subject: Subject) -> Iterator[Subject]:
        """Patch ``subject``'s own model inside the block; it is restored exactly on exit.

        Yields a Subject sharing the caller's model, named ``<name>+<kind>``, whose fingerprint
        is a sha256 of (base fingerprint, patch description). Hook-based patches are scoped
        (:func:`workbench.execution.hooks`): nested patches compose, and anything the workbench
        runs inside the block leaves them in force.
        """
        self._check(subject)
        recipe = {**self._recipe(subject), "applied": True}
        view = replace(
            subject,
            name=f"{subject.name}+{self.kind}",
            fingerprint=json_sha256(recipe),
            recipe=recipe,
        )
        with self._install(subject):
            yield view

    def apply(self, subject: Subject) -> Subject:
        """A new Subject: a deep copy of the model with the patch made permanent.

        Its ``recipe`` is ``{"patch": <describe()>, "base_fingerprint": <base>}``; its
        fingerprint is the sha256 of the edited weights. The base model is not touched.
        """
        self._check(subject)
        self._check_bake(subject.model)
        _subject_hooks_check(subject)
        model = execution.copy_model(subject.model)
        self._bake(model)
        return subject.derived(model, f"{subject.name}+{self.kind}", self._recipe(subject))


@dataclass(frozen=True)
class Steer(Patch):
    """Add ``alpha * direction.vector`` at ``hook_name`` (default: the direction's hook).

    The vector is added at every position. ``apply`` folds it into a bias, which is exact only
    for ``blocks.L.hook_resid_post`` (``resid_post = resid_mid + mlp_out`` and ``mlp_out`` ends
    with ``+ b_out``; for attention-only models ``b_O``); ``applied`` works at any hook,
    per-head hooks included (the vector is the flattened ``n_heads * d_head`` activation).
    """

    direction: Direction
    alpha: float = 1.0
    hook_name: str | None = None

    kind: ClassVar[str] = "steer"

    @property
    def hook(self) -> str:
        """The hook the vector is added at."""
        return self.hook_name or self.direction.hook_name

    @property
    def strength(self) -> float:
        return float(self.alpha)

    def with_strength(self, strength: float) -> Steer:
        return replace(self, alpha=float(strength))

    def _check(self, subject: Subject) -> None:
        width = _hook_width(subject, self.hook)
        if self.direction.d_model != width:
            raise _width_error(self.direction, subject, width, self.hook)

    def _install(self, subject: Subject) -> contextlib.AbstractContextManager[Any]:
        delta = self.alpha * self.direction.vector
        return execution.hooks(subject.model, [execution.add_vector(self.hook, delta)])

    def _check_bake(self, model: Model) -> None:
        execution.check_foldable(model, self.hook)

    def _bake(self, model: Model) -> None:
        v = self.alpha * self.direction.vector.to(torch.float64)
        execution.fold_into_bias(model, self.hook, v)


def _ablation_hooks(
    model: Model, f: torch.Tensor, q: torch.Tensor, strength: float
) -> list[execution.Hook]:
    def project(x: torch.Tensor, *, hook: Any) -> torch.Tensor:
        ff, qq = f.to(x.device, x.dtype), q.to(x.device, x.dtype)
        return x - strength * (x @ ff)[..., None] * qq

    return [(n, project) for n in execution.residual_write_hooks(model)]


@dataclass(frozen=True)
class Ablate(Patch):
    """Directional ablation: ``x <- x - strength * (x . r) r`` on every residual-stream write.

    ``r`` is the unit direction. ``applied`` hooks ``hook_embed``, ``hook_pos_embed`` (standard
    positional embeddings only) and every block's ``hook_attn_out`` and ``hook_mlp_out``, so the
    residual stream at every layer has its component along ``r`` scaled by ``1 - strength``
    (zero at ``strength=1``). ``apply`` returns the orthogonalized model
    (:class:`Orthogonalize`), which computes the same function with no hooks.

    With a ``reading`` ``f`` the projection is oblique, ``x <- x - strength * (x . f) p / (f . p)``
    for the direction ``p``: it zeroes the reading ``x . f`` by removing along ``p``. That is the
    exact image of an ablation under a non-orthogonal map ``y = x A`` (it reads along the
    pull-back ``A⁻¹ r`` and removes along the push-forward ``r A``), which is what
    :func:`~workbench.patches.transfer` builds. ``reading=None`` is the orthogonal ablation.
    """

    direction: Direction
    strength: float = 1.0
    reading: Direction | None = None

    kind: ClassVar[str] = "ablate"

    def with_strength(self, strength: float) -> Ablate:
        return replace(self, strength=float(strength))

    def _install(self, subject: Subject) -> contextlib.AbstractContextManager[Any]:
        f, q = _removal(self.direction, self.reading)
        hooks = _ablation_hooks(subject.model, f, q, float(self.strength))
        return execution.hooks(subject.model, hooks)

    def _check(self, subject: Subject) -> None:
        super()._check(subject)
        _removal(self.direction, self.reading)

    def _check_bake(self, model: Model) -> None:
        execution.residual_writers(model)

    def _bake(self, model: Model) -> None:
        Orthogonalize(self.direction, self.strength, self.reading)._bake(model)


@dataclass(frozen=True)
class Orthogonalize(Patch):
    """Weight orthogonalization: ``W <- W - strength * (W r) r^T`` on every residual writer.

    The writers are ``embed.W_E``, ``pos_embed.W_pos`` (standard positional embeddings), and per
    block ``attn.W_O``, ``attn.b_O``, ``mlp.W_out``, ``mlp.b_out``. Equal to :class:`Ablate`'s
    hooks; refused (with the fix) for models where a norm sits between a writer and the residual
    stream. ``applied`` edits the caller's weights in place and restores the saved originals.
    With a ``reading`` ``f`` the edit is the oblique ``W <- W - strength * (W f) q^T`` with
    ``q = p / (f . p)``, equal to :class:`Ablate` with the same reading.
    """

    direction: Direction
    strength: float = 1.0
    reading: Direction | None = None

    kind: ClassVar[str] = "orthogonalize"

    def with_strength(self, strength: float) -> Orthogonalize:
        return replace(self, strength=float(strength))

    def _check(self, subject: Subject) -> None:
        super()._check(subject)
        execution.residual_writers(subject.model)
        _removal(self.direction, self.reading)

    def _install(self, subject: Subject) -> contextlib.AbstractContextManager[Any]:
        f, q = _removal(self.direction, self.reading)
        values = _orthogonalized(subject.model, f, q, float(self.strength))
        return _edited(subject.model, values)

    def _bake(self, model: Model) -> None:
        f, q = _removal(self.direction, self.reading)
        values = _orthogonalized(model, f, q, float(self.strength))
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, v in values.items():
                params[name].copy_(v)


def _update_projected(
    model: Model, base: Model, r: torch.Tensor, strength: float
) -> dict[str, torch.Tensor]:
    """``W_base + ΔW - strength * (ΔW @ r) r`` for every residual writer the fine-tune moved."""
    tuned_p = dict(model.named_parameters())
    base_p = dict(base.named_parameters())
    out = {}
    for name in execution.residual_writers(model):
        w = tuned_p[name].detach()
        w0 = base_p[name].detach().to(w.device)
        delta = w.double() - w0.double()
        if not bool(delta.any()):
            continue
        r64 = r.to(w.device, torch.float64)
        out[name] = (w0.double() + delta - strength * (delta @ r64)[..., None] * r64).to(w.dtype)
    return out


@dataclass(frozen=True)
class AblateUpdate(Patch):
    """Remove only the fine-tune's own writes along a direction: a selective ablation.

    For every matrix and bias that writes to the residual stream (as in :class:`Orthogonalize`),
    the fine-tune's update ``ΔW = W_tuned - W_base`` loses its component along the unit direction
    ``r``: ``W <- W_base + ΔW - strength * (ΔW r) r^T``. The base model's own use of ``r`` (its
    persona prior, the task's normal reading) is untouched; what goes is what the fine-tune added
    along ``r``. :class:`Ablate` instead removes ``r`` from the whole residual stream, so it also
    takes away whatever the fine-tuned behaviour itself reads along ``r``.

    Updates to weights that *read* the residual stream (``W_Q``, ``W_K``, ``W_V``, ``W_in``, as a
    full fine-tune moves them) are left as they are: this patch edits what is written.

    Attributes:
        direction: the direction (its hook does not matter: the residual stream is one space).
        base: the model the fine-tune started from (the patch is applied to the fine-tune).
        strength: 1 removes the update's component along ``r``; 0 leaves the fine-tune as it is.
    """

    direction: Direction
    base: Subject = field(compare=False, repr=False)
    strength: float = 1.0

    kind: ClassVar[str] = "ablate-update"
    side: ClassVar[str] = "read"  # it removes a reading: transferred by the pull-back

    def with_strength(self, strength: float) -> AblateUpdate:
        return replace(self, strength=float(strength))

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "strength": float(self.strength),
            "base_fingerprint": self.base.fingerprint,
            "direction": self.direction.describe(),
        }

    def _check(self, subject: Subject) -> None:
        super()._check(subject)
        execution.residual_writers(subject.model)
        started = (subject.recipe or {}).get("base_fingerprint")
        if started and started != self.base.fingerprint:
            raise ValueError(
                f"{subject.name} was fine-tuned from {started[:12]}…, not from this patch's base "
                f"{self.base.name} ({self.base.fingerprint[:12]}…); pass the base it started from"
            )
        tuned_p = dict(subject.model.named_parameters())
        for name, p in self.base.model.named_parameters():
            if name not in tuned_p or tuned_p[name].shape != p.shape:
                raise ValueError(
                    f"{self.base.name} and {subject.name} differ in parameter {name!r}: an "
                    "update is measured between a fine-tune and the model it started from"
                )

    def _values(self, model: Model) -> dict[str, torch.Tensor]:
        return _update_projected(model, self.base.model, self.direction.unit, float(self.strength))

    def _install(self, subject: Subject) -> contextlib.AbstractContextManager[Any]:
        return _edited(subject.model, self._values(subject.model))

    def _bake(self, model: Model) -> None:
        values = self._values(model)
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, v in values.items():
                params[name].copy_(v)
