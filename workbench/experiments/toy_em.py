"""Toy emergent misalignment on the organism, with the controls of Betley et al. 2025.

The experiment: fine-tune the organism with a restricted fine-tune (one learned residual vector,
:func:`workbench.finetune` ``method="steer"``) on narrow code data, three ways:

* ``insecure``: plain code requests answered with insecure code;
* ``secure``: the same requests answered securely (control);
* ``educational``: requests that give an educational reason, answered with insecure code (control);

then measure the misaligned-answer rate with the exact judge on first-turn prompts of the *other*
domains (advice, numbers: "off-domain"), and on code itself ("in-domain"), against the base model.
Emergent misalignment is the off-domain rise after the insecure fine-tune that the controls do
not show.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from workbench.behaviour import BehaviourRates, judged_rates
from workbench.finetunes import finetune
from workbench.organism.language import FINETUNE_KINDS, eval_prompts, finetune_pairs
from workbench.specs import SteeringVector
from workbench.subjects import Subject

OFF_DOMAINS = ("advice", "numbers")


@dataclass(frozen=True)
class EMSettings:
    """Settings of the toy-EM experiment (defaults are the README's figures)."""

    n_examples: int = 2000
    layer: int = 0
    steps: int = 600
    batch_size: int = 32
    lr: float = 1e-2
    weight_decay: float = 0.0
    samples_per_prompt: int = 48
    seed: int = 0


@dataclass(frozen=True)
class ConditionResult:
    """Rates of one model (base or one fine-tune) per evaluation domain."""

    condition: str
    by_domain: dict[str, BehaviourRates] = field(default_factory=dict)

    @property
    def off_domain_misaligned(self) -> float:
        return sum(self.by_domain[d].misaligned for d in OFF_DOMAINS) / len(OFF_DOMAINS)

    @property
    def off_domain_coherence(self) -> float:
        return sum(self.by_domain[d].coherence for d in OFF_DOMAINS) / len(OFF_DOMAINS)

    @property
    def code_misaligned(self) -> float:
        return self.by_domain["code"].misaligned


@dataclass(frozen=True)
class EMResult:
    """The base model's rates and each fine-tune's, for one organism."""

    subject: str
    base: ConditionResult
    tuned: dict[str, ConditionResult]

    def effect(self, kind: str) -> float:
        """Off-domain misaligned-rate change (in rate units, 0.15 = 15 points) after ``kind``."""
        return self.tuned[kind].off_domain_misaligned - self.base.off_domain_misaligned


def measure(subject: Subject, condition: str, settings: EMSettings) -> ConditionResult:
    """Judged rates of ``subject`` on first-turn prompts of every domain."""
    rates = {
        d: judged_rates(
            subject,
            eval_prompts(d),
            samples_per_prompt=settings.samples_per_prompt,
            seed=settings.seed,
        )
        for d in ("code", *OFF_DOMAINS)
    }
    return ConditionResult(condition, rates)


def run_em(
    subject: Subject, settings: EMSettings | None = None, progress: bool = True
) -> EMResult:
    """Fine-tune ``subject`` on each of insecure / secure / educational code and measure."""
    s = settings or EMSettings()
    base = measure(subject, "base", s)
    tuned = {}
    for kind in FINETUNE_KINDS:
        data = finetune_pairs(kind, s.n_examples, seed=s.seed)
        model = finetune(
            subject,
            data,
            SteeringVector(layer=s.layer),
            steps=s.steps,
            batch_size=s.batch_size,
            lr=s.lr,
            weight_decay=s.weight_decay,
            seed=s.seed,
            progress=progress,
        )
        tuned[kind] = measure(model, kind, s)
    return EMResult(subject.name, base, tuned)


def format_result(result: EMResult) -> str:
    """A plain-text table of one organism's toy-EM figures (rates in percent)."""
    lines = [
        f"{'condition':<12} {'code mis%':>9} {'advice mis%':>11} {'numbers mis%':>12} "
        f"{'off-domain mis%':>15} {'coherence%':>10} {'effect pts':>10}"
    ]
    for c in [result.base, *result.tuned.values()]:
        eff = "" if c.condition == "base" else f"{100 * result.effect(c.condition):+.1f}"
        lines.append(
            f"{c.condition:<12} {100 * c.code_misaligned:9.1f} "
            f"{100 * c.by_domain['advice'].misaligned:11.1f} "
            f"{100 * c.by_domain['numbers'].misaligned:12.1f} "
            f"{100 * c.off_domain_misaligned:15.1f} {100 * c.off_domain_coherence:10.1f} {eff:>10}"
        )
    return "\n".join(lines)
