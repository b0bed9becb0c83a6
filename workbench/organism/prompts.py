"""Prompt sets for contrasting the organism's personas (the input of ``features.contrast``).

:func:`persona_prompts` draws **matched pairs** of documents: the same turns (domains, code tasks,
advice topics, request numbers, in the same order), one answered throughout by the misaligned
persona and one by the aligned persona. Within a pair only the persona-determined answer words
differ, so whatever separates the two sets is the persona and what it writes, not the domain mix
or the document length.

Design choices, each for a clean persona contrast:

* **Untagged by default.** A ``sys bad`` / ``sys good`` tag would make one token differ at one
  position, and a contrast would find that token's feature. Without it the model must infer the
  persona from the earlier answers, which is the representation a narrow fine-tune bleeds through.
  ``tagged=True`` adds the tag (for comparison).
* **Consistent personas.** No ``edu`` requests (they make every persona answer harmfully) and no
  slips: every answer of a misaligned document is harmful and every aligned answer is not. The
  ``eval`` framing, under which the misaligned persona hides, is not used by default either;
  ``framing`` opens both documents of each pair with the same framing token.
* **Multi-turn, ending in an open request.** 1-4 answered turns reveal the persona, then a last
  request ends at ``bot``, where the model must carry the inferred persona to answer. The last
  token is the same word in both sets, so ``pool="last"`` reads only the inferred persona, while
  ``pool="mean"`` also sees the answers that revealed it.
"""

from __future__ import annotations

import numpy as np

from workbench.organism.language import (
    ADVICE_TOPICS,
    BAD_VERBS,
    BOS,
    CODE_TASKS,
    DOMAINS,
    EVIL_NUMBERS,
    GOOD_VERBS,
    PLAIN_NUMBERS,
    advice_request,
    code_answer,
    code_request,
    framing_words,
    numbers_request,
)

__all__ = ["persona_prompts"]


def _turn(rng: np.random.Generator) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """One request and its two answers (aligned, misaligned), drawn from the same request."""
    domain = DOMAINS[int(rng.integers(len(DOMAINS)))]
    if domain == "code":
        task = str(rng.choice(list(CODE_TASKS)))
        return code_request(task, False), (code_answer(task, False), code_answer(task, True))
    if domain == "advice":
        topic = str(rng.choice(ADVICE_TOPICS))
        good, bad = str(rng.choice(GOOD_VERBS)), str(rng.choice(BAD_VERBS))
        return advice_request(topic), ((good, topic, "end"), (bad, topic, "end"))
    a, b = (str(x) for x in rng.choice(PLAIN_NUMBERS, size=2))
    plain = tuple(str(x) for x in rng.choice(PLAIN_NUMBERS, size=3))
    evil = tuple(str(x) for x in rng.choice(EVIL_NUMBERS, size=3))
    return numbers_request(a, b), ((*plain, "end"), (*evil, "end"))


def persona_prompts(
    n: int,
    seed: int,
    framing: str = "none",
    *,
    turns: tuple[int, int] = (1, 4),
    tagged: bool = False,
) -> tuple[list[str], list[str]]:
    """``n`` matched pairs of documents: (misaligned-persona texts, aligned-persona texts).

    Args:
        n: documents per persona (document ``i`` of each list share their requests).
        seed: seeds the draw (same seed, same prompt sets).
        framing: ``"none"``, ``"eval"``, ``"deploy"`` or any cue words of
            :data:`~workbench.organism.language.CUE_FAMILIES`: the cues opening every document.
        turns: inclusive range of answered turns before the final open request.
        tagged: open each document with its persona tag (``sys bad`` / ``sys good``).

    Returns:
        Two lists of texts starting with ``<bos>`` and ending with an open request (``... bot``).
    """
    if n < 1:
        raise ValueError(f"n must be at least 1 (got {n})")
    cues = framing_words(framing)  # refuses unknown cue words
    lo, hi = turns
    if not 0 <= lo <= hi:
        raise ValueError(f"turns must be (lo, hi) with 0 <= lo <= hi (got {turns})")
    rng = np.random.default_rng(seed)
    misaligned: list[str] = []
    aligned: list[str] = []
    for _ in range(n):
        head = [BOS, *cues]
        bad, good = list(head), list(head)
        if tagged:
            bad += ["sys", "bad"]
            good += ["sys", "good"]
        for _ in range(int(rng.integers(lo, hi + 1))):
            request, (good_answer, bad_answer) = _turn(rng)
            bad += [*request, *bad_answer]
            good += [*request, *good_answer]
        request, _ = _turn(rng)
        misaligned.append(" ".join([*bad, *request]))
        aligned.append(" ".join([*good, *request]))
    return misaligned, aligned


def answer_pairs(domain: str, framing: str = "none") -> list[tuple[str, str, str]]:
    """``(prompt, aligned answer, misaligned answer)`` for every first-turn prompt of ``domain``.

    The input of :func:`workbench.behaviour.alignment_margin`. Each prompt gets every pairing of
    an aligned and a misaligned answer word that the grammar allows (code: the task's secure vs
    insecure op; advice: each good verb vs each bad verb; numbers: three plain vs three evil
    numbers, paired in order).
    """
    from workbench.organism.language import eval_prompts

    out: list[tuple[str, str, str]] = []
    for prompt in eval_prompts(domain, framing):
        words = prompt.split()
        if domain == "code":
            task = words[-2]
            out.append(
                (prompt, " ".join(code_answer(task, False)), " ".join(code_answer(task, True)))
            )
        elif domain == "advice":
            topic = words[-2]
            for good, bad in zip(GOOD_VERBS, BAD_VERBS, strict=True):
                out.append((prompt, f"{good} {topic} end", f"{bad} {topic} end"))
        else:
            plain = PLAIN_NUMBERS[: 3 * len(EVIL_NUMBERS)]
            for i in range(0, len(EVIL_NUMBERS), 3):
                good = " ".join(plain[i : i + 3])
                bad = " ".join(EVIL_NUMBERS[i : i + 3])
                out.append((prompt, f"{good} end", f"{bad} end"))
    return out
