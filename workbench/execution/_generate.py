"""Generation: sampled or greedy continuations, cut at the end of the answer, decoded to text.

Prompts are grouped by length so no padding enters the model. Sampling draws from one seeded CPU
generator in a fixed order (groups by increasing length, one draw per row per step), so a seed
fixes every answer on any device. A continuation ends at the tokenizer's EOS (dropped) or after
one of the ``stop_ids`` (kept: for the organism, the answer's closing ``end`` word).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from typing import Any

import torch


def _cut(row: Sequence[int], eos_id: int | None, stop_ids: Collection[int]) -> list[int]:
    out = []
    for t in row:
        if eos_id is not None and t == eos_id:
            break
        out.append(int(t))
        if t in stop_ids:
            break
    return out


@torch.no_grad()
def generate(
    model: Any,
    rows: Sequence[Sequence[int]],
    *,
    samples: int = 1,
    max_new_tokens: int = 6,
    temperature: float = 1.0,
    greedy: bool = False,
    seed: int = 0,
    eos_id: int | None = None,
    stop_ids: Collection[int] = (),
) -> list[list[list[int]]]:
    """Continuations of every prompt (token-id ``rows``): ``samples`` each, as token ids.

    Returns ``out[prompt][sample]``, each cut at EOS (dropped) or after a stop token (kept).

    Raises:
        ValueError: no prompts, an empty prompt, ``temperature <= 0`` when sampling, or
            ``samples < 1``.
    """
    if not rows:
        raise ValueError("no prompts: pass at least one prompt")
    if any(len(r) == 0 for r in rows):
        raise ValueError("a prompt has no tokens; every prompt needs at least one token")
    if samples < 1:
        raise ValueError(f"samples={samples}: draw at least one answer per prompt")
    if not greedy and temperature <= 0:
        raise ValueError("temperature must be > 0 (use greedy=True for deterministic decoding)")
    device = next(model.parameters()).device
    gen = torch.Generator(device="cpu").manual_seed(seed)
    groups: dict[int, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        groups[len(r)].append(i)
    out: list[list[list[int]]] = [[] for _ in rows]
    stop = set(int(s) for s in stop_ids)
    for n, idx in sorted(groups.items()):
        x = torch.tensor([list(rows[i]) for i in idx], dtype=torch.long, device=device)
        x = x.repeat_interleave(samples, dim=0)
        for _ in range(max_new_tokens):
            last = model(x)[:, -1].float()
            if greedy:
                nxt = last.argmax(-1, keepdim=True)
            else:
                nxt = torch.multinomial(
                    torch.softmax(last.cpu() / temperature, -1), 1, generator=gen
                )
            x = torch.cat([x, nxt.to(x.device)], dim=1)
            if greedy and all(
                (eos_id is not None and eos_id in row) or bool(stop & set(row))
                for row in x[:, n:].tolist()
            ):
                break  # greedy decoding draws nothing, so stopping early changes no later answer
        for j, row in enumerate(x[:, n:].cpu().tolist()):
            out[idx[j // samples]].append(_cut(row, eos_id, stop))
    return out


def decode(tokenizer: Any, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
    """Text of generated token ids, as the tokenizer writes it.

    Judges read answers with ``skip_special_tokens=False``: a stray special token mid-answer is
    part of what the model said.
    """
    return str(tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens))


def render_prompts(tokenizer: Any, prompts: Sequence[str], chat: bool | None = None) -> list[str]:
    """Prompts as the model reads them: a user turn in the chat template where there is one.

    ``chat=None`` uses the tokenizer's chat template when it has one, ``False`` never does,
    ``True`` requires one.
    """
    template = getattr(tokenizer, "chat_template", None)
    if chat is None:
        chat = bool(template)
    if not chat:
        return list(prompts)
    if not template:
        raise ValueError(
            "chat=True but this tokenizer has no chat template; pass chat=False (raw prompts) "
            "or set tokenizer.chat_template"
        )
    return [
        str(
            tokenizer.apply_chat_template(
                [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
            )
        )
        for p in prompts
    ]
