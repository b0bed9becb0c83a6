"""Fine-tune specs: which parameters a fine-tune trains, as typed values.

:func:`workbench.finetune` runs a spec and :func:`workbench.forecast` predicts one, so a forecast
states which fine-tune it is about and :func:`workbench.audit` refuses a forecast made for another.

* :class:`SteeringVector` ``(layer)``: one vector added to the residual stream after block
  ``layer`` at every position (the restricted fine-tune of the toy-EM experiment);
* :class:`LoRA` ``(rank, alpha, targets, layers)``: low-rank adapters on chosen weights of chosen
  blocks (default: one rank-1 adapter on block 0's ``mlp.W_out``);
* :class:`Full` ``()``: every weight.

The strings ``"steer"``, ``"lora"`` and ``"full"`` are shorthands for the defaults
(:func:`as_spec`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Union

LORA_TARGETS = (
    "mlp.W_in",
    "mlp.W_out",
    "mlp.W_gate",
    "attn.W_Q",
    "attn.W_K",
    "attn.W_V",
    "attn.W_O",
)


def _check_layer(layer: int, n_layers: int, name: str) -> None:
    if not 0 <= layer < n_layers:
        raise ValueError(
            f"layer={layer} out of range: {name} has {n_layers} blocks (0..{n_layers - 1})"
        )


@dataclass(frozen=True)
class SteeringVector:
    """One learned vector added at ``blocks.{layer}.hook_resid_post`` (folded into a bias after)."""

    layer: int = 0

    method: ClassVar[str] = "steer"
    default_lr: ClassVar[float] = 1e-2

    @property
    def hook_name(self) -> str:
        """Where the vector is added."""
        return f"blocks.{self.layer}.hook_resid_post"

    def check(self, n_layers: int, name: str = "the model") -> None:
        """Raise ``ValueError`` unless the spec fits a model of ``n_layers`` blocks."""
        _check_layer(self.layer, n_layers, name)

    def describe(self) -> dict[str, Any]:
        """A JSON-able description (what a recipe, a forecast and a record store)."""
        return {"method": self.method, "layer": self.layer}


@dataclass(frozen=True)
class LoRA:
    """Rank-``rank`` adapters ``W + A @ B * alpha / rank`` on ``targets`` of blocks ``layers``.

    ``alpha=None`` means ``alpha = rank`` (a scale of 1). Targets are names from
    :data:`LORA_TARGETS`.
    """

    rank: int = 1
    alpha: float | None = None
    targets: tuple[str, ...] = ("mlp.W_out",)
    layers: tuple[int, ...] = (0,)

    method: ClassVar[str] = "lora"
    default_lr: ClassVar[float] = 1e-2

    def __post_init__(self) -> None:
        targets = (self.targets,) if isinstance(self.targets, str) else self.targets
        object.__setattr__(self, "targets", tuple(dict.fromkeys(targets)))
        layers = (self.layers,) if isinstance(self.layers, int) else self.layers
        object.__setattr__(self, "layers", tuple(sorted(set(int(x) for x in layers))))
        if self.rank < 1:
            raise ValueError(f"rank={self.rank}: a LoRA adapter needs rank >= 1")
        if not self.targets:
            raise ValueError(f"targets is empty: name at least one of {LORA_TARGETS}")
        bad = [t for t in self.targets if t not in LORA_TARGETS]
        if bad:
            raise ValueError(f"unknown LoRA target(s) {bad}; choose from {LORA_TARGETS}")
        if not self.layers:
            raise ValueError("layers is empty: name at least one block")

    @property
    def scale_alpha(self) -> float:
        """The ``alpha`` in use (``rank`` when not given)."""
        return float(self.rank) if self.alpha is None else float(self.alpha)

    def check(self, n_layers: int, name: str = "the model") -> None:
        """Raise ``ValueError`` unless the spec fits a model of ``n_layers`` blocks."""
        for layer in self.layers:
            _check_layer(layer, n_layers, name)

    def describe(self) -> dict[str, Any]:
        """A JSON-able description (what a recipe, a forecast and a record store)."""
        return {
            "method": self.method,
            "rank": self.rank,
            "alpha": self.scale_alpha,
            "targets": list(self.targets),
            "layers": list(self.layers),
        }


@dataclass(frozen=True)
class Full:
    """Every weight of the model."""

    method: ClassVar[str] = "full"
    default_lr: ClassVar[float] = 1e-3

    def check(self, n_layers: int, name: str = "the model") -> None:
        """Every model fits."""

    def describe(self) -> dict[str, Any]:
        """A JSON-able description (what a recipe, a forecast and a record store)."""
        return {"method": self.method}


FinetuneSpec = Union[SteeringVector, LoRA, Full]  # noqa: UP007 (a runtime alias on Python 3.10)
_SHORTHANDS: dict[str, type[SteeringVector] | type[LoRA] | type[Full]] = {
    "steer": SteeringVector,
    "lora": LoRA,
    "full": Full,
}


def as_spec(spec: FinetuneSpec | str) -> FinetuneSpec:
    """A spec from a spec or a shorthand string (``"steer"``, ``"lora"``, ``"full"``)."""
    if isinstance(spec, SteeringVector | LoRA | Full):
        return spec
    if isinstance(spec, str) and spec in _SHORTHANDS:
        return _SHORTHANDS[spec]()
    raise ValueError(
        f"unknown fine-tune spec {spec!r}; pass SteeringVector(layer), LoRA(rank, alpha, "
        f"targets, layers) or Full(), or one of the shorthands {tuple(_SHORTHANDS)}"
    )


def from_description(d: dict[str, Any]) -> FinetuneSpec:
    """Inverse of ``spec.describe()``."""
    method = d.get("method")
    if method == "steer":
        return SteeringVector(layer=int(d.get("layer", 0)))
    if method == "lora":
        return LoRA(
            rank=int(d["rank"]),
            alpha=float(d["alpha"]),
            targets=tuple(d["targets"]),
            layers=tuple(d["layers"]),
        )
    if method == "full":
        return Full()
    raise ValueError(f"not a fine-tune spec description: {d!r}")


def same_spec(a: FinetuneSpec, b: FinetuneSpec) -> bool:
    """Whether two specs describe one fine-tune (``LoRA(alpha=None)`` equals ``alpha=rank``)."""
    return a.describe() == b.describe()


__all__ = [
    "LORA_TARGETS",
    "FinetuneSpec",
    "Full",
    "LoRA",
    "SteeringVector",
    "as_spec",
    "from_description",
    "same_spec",
]
