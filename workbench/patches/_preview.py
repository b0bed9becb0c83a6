"""Preview: what a patch does to a few prompts, as a notebook widget shows it.

:func:`preview` runs any :class:`~workbench.patches._interventions.Patch` through its
``applied`` block and compares greedy answers, watched dictionary features and behaviour metrics
with the unpatched subject; :class:`Preview` holds the result. Nothing here depends on how
the patch's direction was made (:mod:`~workbench.patches._directions`,
:mod:`~workbench.patches._transfer`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from workbench import execution
from workbench.activations import feature_activations
from workbench.behaviour import judged_rates
from workbench.dictionaries import Dictionary
from workbench.features import FeatureSet
from workbench.patches._interventions import Patch
from workbench.subjects import Subject


@dataclass(frozen=True)
class Preview:
    """What a patch does to a few prompts (the payload of a notebook widget).

    Attributes:
        prompts: the prompts.
        before, after: greedy continuations (text) without and with the patch, of each prompt
            as the model reads it (a user turn of the chat template, where there is one).
        before_tokens, after_tokens: the same, one string per generated token.
        changed: per prompt, per generated position: whether the token differs.
        features: watched dictionary features (empty without a dictionary).
        before_acts, after_acts: per prompt, per watched feature: mean activation over the
            prompt's tokens (``<bos>`` left out); empty without a dictionary.
        metrics_before, metrics_after: ``"task_loss"`` (mean next-token NLL of the prompts)
            and, with a judge or for the organism, ``"misaligned"`` and ``"incoherent"``
            (shares of sampled answers, :func:`workbench.behaviour.judged_rates`); with
            ``in_domain`` prompts ``"in_domain"``, and with a ``base`` also ``"em_cut"`` and
            ``"retention"`` (see :func:`preview`).
        patch: the patch's description.
        strength: the patch's strength.
    """

    prompts: tuple[str, ...]
    before: tuple[str, ...]
    after: tuple[str, ...]
    before_tokens: tuple[tuple[str, ...], ...]
    after_tokens: tuple[tuple[str, ...], ...]
    changed: tuple[tuple[bool, ...], ...]
    features: tuple[int, ...]
    before_acts: tuple[tuple[float, ...], ...]
    after_acts: tuple[tuple[float, ...], ...]
    metrics_before: dict[str, float]
    metrics_after: dict[str, float]
    patch: dict[str, Any]
    strength: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (lists for tuples)."""

        def plain(v: Any) -> Any:
            if isinstance(v, tuple | list):
                return [plain(x) for x in v]
            if isinstance(v, dict):
                return {k: plain(x) for k, x in v.items()}
            return v

        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Preview:
        """Inverse of :meth:`to_dict`."""

        def nested(v: Any) -> Any:
            return tuple(nested(x) for x in v) if isinstance(v, list) else v

        fields = {f.name: d[f.name] for f in dataclasses.fields(Preview)}
        for k, v in fields.items():
            if k not in ("metrics_before", "metrics_after", "patch"):
                fields[k] = nested(v)
        return Preview(**fields)


def _greedy(subject: Subject, rendered: Sequence[str], max_new_tokens: int) -> list[list[int]]:
    """Greedy continuations (token ids) of the ``rendered`` prompts (as the model reads them,
    :func:`workbench.execution.render_prompts`), each ending at EOS or after a stop token."""
    out = execution.generate(
        subject.model,
        subject.token_rows(list(rendered)),
        greedy=True,
        max_new_tokens=max_new_tokens,
        eos_id=subject.text_tokenizer.eos_token_id,
        stop_ids=subject.stop_ids(),
    )
    return [rows[0] for rows in out]


def token_pieces(subject: Subject, ids: Sequence[int]) -> tuple[str, ...]:
    """The text each token adds to the decoded continuation (joined, they are the text).

    Word-level tokenizers (the organism's) decode tokens without their separating spaces, BPE
    tokenizers with them; decoding growing prefixes gives the right pieces for both.
    """
    pieces, prev = [], ""
    for i in range(len(ids)):
        text = subject.decode(ids[: i + 1])
        grew = text.startswith(prev)
        pieces.append(text[len(prev) :] if grew else subject.decode(ids[i : i + 1]))
        prev = text
    return tuple(pieces)


def _metrics(
    subject: Subject,
    prompts: Sequence[str],
    judge: Callable[[str, str], object] | None,
    samples_per_prompt: int,
    max_new_tokens: int,
    seed: int,
) -> dict[str, float]:
    ids, mask = subject.encode(prompts)
    with torch.no_grad():
        out = {"task_loss": float(execution.completion_nll(subject.model, ids, mask))}
    if judge is not None or subject.judge is not None:
        rates = judged_rates(
            subject,
            prompts,
            judge,
            samples_per_prompt=samples_per_prompt,
            max_new_tokens=max_new_tokens,
            seed=seed,
        )
        out["misaligned"] = rates.misaligned
        out["incoherent"] = rates.incoherent
    return out


def _watched(
    dictionary: Dictionary | None, features: FeatureSet | None, patch: Patch, n: int
) -> tuple[int, ...]:
    if dictionary is None:
        if features is not None:
            raise ValueError("pass the dictionary the FeatureSet was computed with (dictionary=)")
        return ()
    if features is not None:
        if features.dictionary != dictionary.fingerprint:
            raise ValueError(
                f"this FeatureSet was computed with another dictionary (fingerprint "
                f"{features.dictionary[:12]}…); recompute it with contrast(subject, dictionary, "
                "...)"
            )
        return tuple(features.top(n).indices)
    w = dictionary.W_dec.detach().to("cpu", torch.float64)
    if w.shape[1] != patch.direction.d_model:
        raise ValueError(
            f"dictionary {dictionary.name!r} reads {w.shape[1]} dimensions but the patch's "
            f"direction has {patch.direction.d_model}; pass features= to choose what to watch"
        )
    cos = (w @ patch.direction.unit.double()) / w.norm(dim=1).clamp_min(1e-12)
    order = torch.argsort(cos.abs(), descending=True, stable=True)
    return tuple(int(i) for i in order[:n].tolist())


def preview(
    subject: Subject,
    patch: Patch,
    prompts: Sequence[str],
    *,
    dictionary: Dictionary | None = None,
    features: FeatureSet | None = None,
    n_features: int = 8,
    max_new_tokens: int | None = None,
    samples_per_prompt: int = 16,
    seed: int = 0,
    judge: Callable[[str, str], object] | None = None,
    in_domain: Sequence[str] | None = None,
    base: Subject | None = None,
) -> Preview:
    """Run ``patch`` on ``prompts`` (via ``patch.applied``) and compare with the unpatched model.

    With ``in_domain`` (the fine-tune's own kind of prompt) the metrics also hold
    ``"in_domain"``, the misaligned share there (what the fine-tune was for, e.g. insecure code);
    with ``base`` (the model the fine-tune started from) too, ``"em_cut"`` (share of the
    off-domain rise over the base that the patch removes) and ``"retention"`` (share of the
    in-domain rise it keeps) sit side by side: 0 and 1 before the patch.

    Args:
        dictionary: watch its features (mean activation per prompt, before and after).
        features: which to watch: the top ``n_features`` of this FeatureSet; without it, the
            ``n_features`` whose decoder rows are most aligned (``|cos|``) with the direction.
        max_new_tokens: greedy tokens per prompt (and tokens per judged sample); default the
            subject's :attr:`~workbench.subjects.Subject.answer_tokens` (the organism's 6).
        samples_per_prompt, seed: sampling for the judged rates.
        judge: ``judge(prompt, answer) -> verdict``; by default the subject's own judge (the
            organism's is exact); subjects without one get behaviour rates only with a judge.
    """
    if isinstance(prompts, str) or len(prompts) == 0:
        raise ValueError("prompts is empty (or one string): pass a list of prompt texts")
    if max_new_tokens is None:
        max_new_tokens = subject.answer_tokens
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1 (got {max_new_tokens})")
    # answers follow the prompt as sampling renders it (a user turn of the chat template, where
    # the tokenizer has one), so the greedy answers are the ones the judged rates sample from
    rendered = execution.render_prompts(subject.text_tokenizer, list(prompts))
    longest = max(len(r) for r in subject.token_rows(rendered))
    if longest + max_new_tokens > subject.n_ctx:
        raise ValueError(
            f"a prompt has {longest} tokens and {max_new_tokens} more would pass "
            f"{subject.name}'s context of {subject.n_ctx}; shorten the prompts"
        )
    watched = _watched(dictionary, features, patch, n_features)
    if in_domain is not None and (isinstance(in_domain, str) or len(in_domain) == 0):
        raise ValueError("in_domain is empty (or one string): pass a list of prompt texts")

    def in_rate(s: Subject) -> float:
        assert in_domain is not None
        return judged_rates(s, list(in_domain), judge, samples_per_prompt=samples_per_prompt,
                            max_new_tokens=max_new_tokens, seed=seed).misaligned

    def run(s: Subject) -> tuple[list[list[int]], list[list[float]], dict[str, float]]:
        gen = _greedy(s, rendered, max_new_tokens)
        acts: list[list[float]] = []
        if dictionary is not None and watched:
            fa = feature_activations(s, dictionary, prompts, pool="mean")
            acts = fa[:, list(watched)].double().tolist()
        elif dictionary is not None:
            acts = [[] for _ in prompts]
        met = _metrics(s, prompts, judge, samples_per_prompt, max_new_tokens, seed)
        if in_domain is not None and "misaligned" in met:
            met["in_domain"] = in_rate(s)
        return gen, acts, met

    gen0, acts0, met0 = run(subject)
    with patch.applied(subject) as patched:
        gen1, acts1, met1 = run(patched)
    if base is not None and "in_domain" in met0:
        b = _metrics(base, prompts, judge, samples_per_prompt, max_new_tokens, seed)["misaligned"]
        ib = in_rate(base)

        # a share of a rise: left out where the fine-tune did not rise (no NaN in a payload)
        for key, num, den in (
            ("em_cut", met0["misaligned"] - met1["misaligned"], met0["misaligned"] - b),
            ("retention", met1["in_domain"] - ib, met0["in_domain"] - ib),
        ):
            if den:
                met0[key], met1[key] = (0.0 if key == "em_cut" else 1.0), num / den

    def changed(r0: list[int], r1: list[int]) -> tuple[bool, ...]:
        n = max(len(r0), len(r1))
        return tuple(j >= len(r0) or j >= len(r1) or r0[j] != r1[j] for j in range(n))

    return Preview(
        prompts=tuple(prompts),
        before=tuple(subject.decode(r) for r in gen0),
        after=tuple(subject.decode(r) for r in gen1),
        before_tokens=tuple(token_pieces(subject, r) for r in gen0),
        after_tokens=tuple(token_pieces(subject, r) for r in gen1),
        changed=tuple(changed(r0, r1) for r0, r1 in zip(gen0, gen1, strict=True)),
        features=watched,
        before_acts=tuple(tuple(float(v) for v in r) for r in acts0),
        after_acts=tuple(tuple(float(v) for v in r) for r in acts1),
        metrics_before=met0,
        metrics_after=met1,
        patch=patch.describe(),
        strength=patch.strength,
    )
