"""Interventions: the patches (:class:`Steer`, :class:`Ablate`, :class:`Orthogonalize`).

Each patch applies a :class:`~workbench.patches._directions.Direction` to a subject, either for a
block (hooks, or a weight edit restored on exit) or for good (a deep copy with edited weights).
The first part of the module is the machinery they share: which hooks and weights write to the
residual stream, the width of a hook, the orthogonalizing weight edit and its restoring context.
:mod:`~workbench.patches._transfer` and :mod:`~workbench.patches._preview` build on this module.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, ClassVar, TypeVar

import torch
from transformer_lens import HookedTransformer
from transformer_lens.hook_points import HookPoint

from workbench.activations import stop_layer
from workbench.fingerprint import json_sha256
from workbench.patches._directions import Direction
from workbench.subjects import Subject, make_subject

# ------------------------------------------------------------------ model structure


_RESID_HOOK = re.compile(
    r"^(hook_embed|hook_pos_embed|blocks\.\d+\.hook_(resid_pre|resid_mid|resid_post|attn_out|mlp_out))$"
)
_RESID_POST = re.compile(r"^blocks\.(\d+)\.hook_resid_post$")


def _post_norm_architectures() -> frozenset[str]:
    try:
        from transformer_lens.utilities.architectures import POST_NORM_ARCHITECTURES
    except ImportError:  # older TransformerLens 3.x: no post-norm architectures
        return frozenset()
    return frozenset(POST_NORM_ARCHITECTURES)


def _check_hook(subject: Subject, hook_name: str) -> None:
    if hook_name not in subject.model.hook_dict:
        examples = [h for h in subject.hook_names() if h.endswith("resid_post")][:4]
        raise ValueError(
            f"{subject.name} has no hook {hook_name!r}; use one of its hooks, e.g. "
            f"{', '.join(examples or subject.hook_names()[:4])} (see Subject.hook_names())"
        )


def _hook_width(subject: Subject, hook_name: str) -> int:
    """Width of one token's activation at ``hook_name`` (per-head hooks flattened)."""
    _check_hook(subject, hook_name)
    if _RESID_HOOK.match(hook_name):
        return int(subject.model.cfg.d_model)
    tokens = torch.zeros((1, 2), dtype=torch.long, device=subject.device)
    with torch.no_grad():
        _, cache = subject.model.run_with_cache(
            tokens, names_filter=hook_name, stop_at_layer=stop_layer(subject, hook_name)
        )
    return math.prod(int(s) for s in cache[hook_name].shape[2:])


def _width_error(direction: Direction, subject: Subject, width: int, hook: str) -> ValueError:
    where = f"has d_model {width}" if _RESID_HOOK.match(hook) else f"is {width} wide at {hook!r}"
    return ValueError(
        f"this patch's direction has width {direction.d_model} but {subject.name} {where}; "
        "map it with workbench.patches.transfer(patch, source, target, prompts) first"
    )


def _has_hooks(model: HookedTransformer) -> bool:
    return any(hp.fwd_hooks or hp.bwd_hooks for hp in model.hook_dict.values())


def _residual_writers(model: HookedTransformer) -> list[str]:
    """Names of every parameter that writes to the residual stream (residual axis last).

    Raises ``ValueError`` where a weight edit would not equal directional ablation: a norm
    between a writer and the residual stream, quantised weights, a mixture-of-experts MLP, or
    an embedding tied to the unembedding.
    """
    cfg = model.cfg
    why = None
    if getattr(cfg, "post_embedding_ln", False):
        why = "a LayerNorm after the embedding"
    elif getattr(cfg, "use_normalization_before_and_after", False):
        why = "a norm after each attention and MLP output"
    elif cfg.original_architecture in _post_norm_architectures():
        why = f"post-norm blocks ({cfg.original_architecture})"
    elif getattr(cfg, "load_in_4bit", False):
        why = "4-bit quantised weights"
    if why is not None:
        raise ValueError(
            f"{cfg.model_name} has {why}, so a weight edit is not exact directional ablation; "
            "use Ablate(direction).applied(subject) (hooks) instead"
        )
    names = ["embed.W_E"]
    if cfg.positional_embedding_type == "standard":
        names.append("pos_embed.W_pos")
    for layer in range(cfg.n_layers):
        names += [f"blocks.{layer}.attn.W_O", f"blocks.{layer}.attn.b_O"]
        if not cfg.attn_only:
            names += [f"blocks.{layer}.mlp.W_out", f"blocks.{layer}.mlp.b_out"]
    params = dict(model.named_parameters())
    missing = [n for n in names if n not in params or params[n].shape[-1] != cfg.d_model]
    if missing:
        raise ValueError(
            f"{cfg.model_name} has no plain residual-writing weight {missing[0]!r} (e.g. a "
            "mixture-of-experts MLP); use Ablate(direction).applied(subject) (hooks) instead"
        )
    W_U = getattr(getattr(model, "unembed", None), "W_U", None)
    if isinstance(W_U, torch.Tensor) and (
        W_U.untyped_storage().data_ptr() == params["embed.W_E"].untyped_storage().data_ptr()
    ):
        raise ValueError(
            f"{cfg.model_name} ties W_E to W_U: orthogonalizing W_E would also edit the "
            "unembedding; use Ablate(direction).applied(subject) (hooks) instead"
        )
    return names


def _orthogonalized(
    model: HookedTransformer, r: torch.Tensor, strength: float
) -> dict[str, torch.Tensor]:
    """New values of every residual writer: ``W - strength * (W @ r)[..., None] * r``."""
    params = dict(model.named_parameters())
    out = {}
    for name in _residual_writers(model):
        w = params[name].detach()
        r64 = r.to(w.device, torch.float64)
        w64 = w.double()
        out[name] = (w64 - strength * (w64 @ r64)[..., None] * r64).to(w.dtype)
    return out


@contextlib.contextmanager
def _edited(model: HookedTransformer, values: dict[str, torch.Tensor]) -> Iterator[None]:
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
    if _has_hooks(subject.model):
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
            if f.name != "direction"
        }
        return {"kind": self.kind, **fields, "direction": self.direction.describe()}

    def _check(self, subject: Subject) -> None:
        width = int(subject.model.cfg.d_model)
        if self.direction.d_model != width:
            raise _width_error(self.direction, subject, width, "hook_embed")

    def _install(self, subject: Subject) -> contextlib.AbstractContextManager[Any]:
        raise NotImplementedError

    def _check_bake(self, model: HookedTransformer) -> None:
        return None

    def _bake(self, model: HookedTransformer) -> None:
        raise NotImplementedError

    def _recipe(self, subject: Subject) -> dict[str, Any]:
        return {"patch": self.describe(), "base_fingerprint": subject.fingerprint}

    @contextlib.contextmanager
    def applied(self, subject: Subject) -> Iterator[Subject]:
        """Patch ``subject``'s own model inside the block; it is restored exactly on exit.

        Yields a Subject sharing the caller's model, named ``<name>+<kind>``, whose fingerprint
        is a sha256 of (base fingerprint, patch description). Hook-based patches are removed by
        ``model.reset_hooks()``: do not call it inside the block.
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
        model = copy.deepcopy(subject.model)
        self._bake(model)
        new = make_subject(model, subject.tokenizer, f"{subject.name}+{self.kind}", subject.source)
        return replace(new, recipe=self._recipe(subject))


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

        def add(x: torch.Tensor, *, hook: HookPoint) -> torch.Tensor:
            return x + delta.to(x.device, x.dtype).reshape(x.shape[2:])

        return subject.model.hooks(fwd_hooks=[(self.hook, add)])

    def _check_bake(self, model: HookedTransformer) -> None:
        if _RESID_POST.match(self.hook) is None:
            raise ValueError(
                f"Steer.apply can fold a vector into a bias only at blocks.L.hook_resid_post "
                f"(not {self.hook!r}); use `with Steer(...).applied(subject) as s:` for any hook"
            )
        cfg = model.cfg
        if getattr(cfg, "use_normalization_before_and_after", False) or (
            cfg.original_architecture in _post_norm_architectures()
        ):
            raise ValueError(
                f"{cfg.model_name} normalises each block output before the residual add, so "
                "the vector cannot be folded into a bias; use Steer(...).applied(subject)"
            )

    def _bake(self, model: HookedTransformer) -> None:
        self._check_bake(model)
        m = _RESID_POST.match(self.hook)
        assert m is not None
        cfg = model.cfg
        block = model.blocks[int(m.group(1))]
        bias = block.attn.b_O if cfg.attn_only else block.mlp.b_out
        if not isinstance(bias, torch.nn.Parameter):
            raise ValueError(f"{cfg.model_name} has no output bias to fold the vector into")
        with torch.no_grad():
            v = self.direction.vector.to(bias.device, torch.float64)
            bias.copy_((bias.double() + self.alpha * v).to(bias.dtype))


def _ablation_hooks(
    model: HookedTransformer, r: torch.Tensor, strength: float
) -> list[tuple[str | Callable[..., Any], Callable[..., Any]]]:
    def project(x: torch.Tensor, *, hook: HookPoint) -> torch.Tensor:
        rr = r.to(x.device, x.dtype)
        return x - strength * (x @ rr)[..., None] * rr

    names = ["hook_embed"]
    if model.cfg.positional_embedding_type == "standard" and "hook_pos_embed" in model.hook_dict:
        names.append("hook_pos_embed")  # shortformer/alibi/rotary: positions never enter it
    for layer in range(model.cfg.n_layers):
        names.append(f"blocks.{layer}.hook_attn_out")
        if not model.cfg.attn_only:
            names.append(f"blocks.{layer}.hook_mlp_out")
    return [(n, project) for n in names if n in model.hook_dict]


@dataclass(frozen=True)
class Ablate(Patch):
    """Directional ablation: ``x <- x - strength * (x . r) r`` on every residual-stream write.

    ``r`` is the unit direction. ``applied`` hooks ``hook_embed``, ``hook_pos_embed`` (standard
    positional embeddings only) and every block's ``hook_attn_out`` and ``hook_mlp_out``, so the
    residual stream at every layer has its component along ``r`` scaled by ``1 - strength``
    (zero at ``strength=1``). ``apply`` returns the orthogonalized model
    (:class:`Orthogonalize`), which computes the same function with no hooks.
    """

    direction: Direction
    strength: float = 1.0

    kind: ClassVar[str] = "ablate"

    def with_strength(self, strength: float) -> Ablate:
        return replace(self, strength=float(strength))

    def _install(self, subject: Subject) -> contextlib.AbstractContextManager[Any]:
        hooks = _ablation_hooks(subject.model, self.direction.unit, float(self.strength))
        return subject.model.hooks(fwd_hooks=hooks)

    def _check_bake(self, model: HookedTransformer) -> None:
        _residual_writers(model)

    def _bake(self, model: HookedTransformer) -> None:
        Orthogonalize(self.direction, self.strength)._bake(model)


@dataclass(frozen=True)
class Orthogonalize(Patch):
    """Weight orthogonalization: ``W <- W - strength * (W r) r^T`` on every residual writer.

    The writers are ``embed.W_E``, ``pos_embed.W_pos`` (standard positional embeddings), and per
    block ``attn.W_O``, ``attn.b_O``, ``mlp.W_out``, ``mlp.b_out``. Equal to :class:`Ablate`'s
    hooks; refused (with the fix) for models where a norm sits between a writer and the residual
    stream. ``applied`` edits the caller's weights in place and restores the saved originals.
    """

    direction: Direction
    strength: float = 1.0

    kind: ClassVar[str] = "orthogonalize"

    def with_strength(self, strength: float) -> Orthogonalize:
        return replace(self, strength=float(strength))

    def _check(self, subject: Subject) -> None:
        super()._check(subject)
        _residual_writers(subject.model)

    def _install(self, subject: Subject) -> contextlib.AbstractContextManager[Any]:
        values = _orthogonalized(subject.model, self.direction.unit, float(self.strength))
        return _edited(subject.model, values)

    def _bake(self, model: HookedTransformer) -> None:
        values = _orthogonalized(model, self.direction.unit, float(self.strength))
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, v in values.items():
                params[name].copy_(v)
