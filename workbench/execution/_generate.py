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


def _finished(rows: list[list[int]], eos_id: int | None, stop: set[int]) -> bool:
    return all((eos_id is not None and eos_id in row) or bool(stop & set(row)) for row in rows)


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
    fast: bool = False,
    batch_size: int = 64,
) -> list[list[list[int]]]:
    """Continuations of every prompt (token-id ``rows``): ``samples`` each, as token ids.

    Returns ``out[prompt][sample]``, each cut at EOS (dropped) or after a stop token (kept),
    and at the model's context length (``cfg.n_ctx``) at the latest.

    ``fast=False`` (the organism's mode, which its published figures were drawn with) runs each
    length group as one batch for all ``max_new_tokens`` steps, recomputing the whole sequence
    at every step. ``fast=True`` (any other model) runs batches of at most ``batch_size`` rows
    with TransformerLens's key-value cache and stops a batch once every row has ended: the same
    seed gives the same answers run to run, but not the same answers as ``fast=False``.

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
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: use at least 1")
    device = next(model.parameters()).device
    gen = torch.Generator(device="cpu").manual_seed(seed)
    groups: dict[int, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        groups[len(r)].append(i)
    out: list[list[list[int]]] = [[] for _ in rows]
    stop = set(int(s) for s in stop_ids)

    if fast:
        from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

    def draw(last: torch.Tensor) -> torch.Tensor:
        last = last.float()
        if greedy:
            return last.argmax(-1, keepdim=True)
        return torch.multinomial(torch.softmax(last.cpu() / temperature, -1), 1, generator=gen)

    n_ctx = getattr(getattr(model, "cfg", None), "n_ctx", None)
    longest = max(groups)
    if n_ctx is not None and longest >= n_ctx:
        raise ValueError(
            f"a prompt has {longest} tokens, and the model reads at most {n_ctx}: nothing is "
            "left to answer in; shorten the prompt"
        )
    for n, idx in sorted(groups.items()):
        # an answer stops at the model's context length, as if it had run out of tokens
        new_tokens = max_new_tokens if n_ctx is None else min(max_new_tokens, n_ctx - n)
        x_all = torch.tensor([list(rows[i]) for i in idx], dtype=torch.long, device=device)
        x_all = x_all.repeat_interleave(samples, dim=0)
        step = len(x_all) if not fast else batch_size
        for s0 in range(0, len(x_all), step):
            x = x_all[s0 : s0 + step]
            if fast:
                cache = TransformerLensKeyValueCache.init_cache(model.cfg, device, len(x))
                logits = model(x, past_kv_cache=cache)
                for _ in range(new_tokens):
                    nxt = draw(logits[:, -1]).to(device)
                    x = torch.cat([x, nxt], dim=1)
                    if _finished(x[:, n:].tolist(), eos_id, stop):
                        break
                    logits = model(nxt, past_kv_cache=cache)
            else:
                for _ in range(new_tokens):
                    nxt = draw(model(x)[:, -1])
                    x = torch.cat([x, nxt.to(x.device)], dim=1)
                    if greedy and _finished(x[:, n:].tolist(), eos_id, stop):
                        break  # greedy decoding draws nothing: stopping early changes no answer
            for j, row in enumerate(x[:, n:].cpu().tolist()):
                out[idx[(s0 + j) // samples]].append(_cut(row, eos_id, stop))
    return out


def decode(tokenizer: Any, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
    """Text of generated token ids, as the tokenizer writes it.

    Judges read answers with ``skip_special_tokens=False``: a stray special token mid-answer is
    part of what the model said.
    """
    return str(tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens))


def render_prompts(
    tokenizer: Any,
    prompts: Sequence[str],
    chat: bool | None = None,
    system: str | None = None,
) -> list[str]:
    """Prompts as the model reads them: a user turn in the chat template where there is one.

    ``chat=None`` uses the tokenizer's chat template when it has one, ``False`` never does,
    ``True`` requires one. ``system`` adds a system message before each user turn (chat only).
    A prompt that already ends with the template's generation prompt (``<|im_start|>assistant``;
    the exported organism's ``bot``) is taken as rendered and kept as it is, so rendered
    conversations and raw organism prompts pass through unchanged.
    """
    template = getattr(tokenizer, "chat_template", None)
    if chat is None:
        chat = bool(template)
    if not chat:
        if system:
            raise ValueError(
                "a system prompt needs a chat template; this tokenizer has none (pass chat=True "
                "with a tokenizer that has one, or put the system text in the prompt)"
            )
        return list(prompts)
    if not template:
        raise ValueError(
            "chat=True but this tokenizer has no chat template; pass chat=False (raw prompts) "
            "or set tokenizer.chat_template"
        )
    head = [{"role": "system", "content": system}] if system else []
    marker = "\u27e8question\u27e9"
    probe = str(
        tokenizer.apply_chat_template(
            [{"role": "user", "content": marker}], tokenize=False, add_generation_prompt=True
        )
    )
    suffix = probe.split(marker)[-1].strip()

    def render(p: str) -> str:
        if suffix and p.rstrip().endswith(suffix):
            return p  # already rendered: it ends with the template's generation prompt
        return str(
            tokenizer.apply_chat_template(
                [*head, {"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
            )
        )

    return [render(p) for p in prompts]
