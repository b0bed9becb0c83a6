"""Per-feature statistics of a dictionary over prompts: :func:`collect`, :class:`FeatureStats`."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from workbench._device import cpu_threads
from workbench.activations._stream import (
    check_prompts,
    dictionary_input,
    stream,
    threads,
)
from workbench.dictionaries import Dictionary, check_compatible
from workbench.fingerprint import texts_sha256
from workbench.subjects import Subject


@dataclass(frozen=True)
class TopContext:
    """One of a feature's most activating tokens.

    Attributes:
        prompt: index of the prompt in the prompt set.
        position: token position in the encoded prompt (``<bos>`` is 0).
        value: the feature's activation there.
        token: the activating token as text.
        text: the window of tokens around it, as the tokenizer decodes it.
        start: position of the window's first token.
    """

    prompt: int
    position: int
    value: float
    token: str
    text: str
    start: int


@dataclass(frozen=True, eq=False)
class FeatureStats:
    """Per-feature statistics of a dictionary over the real tokens of a prompt set.

    All tensors live on the CPU. ``mean`` counts tokens where a feature is silent as zeros.

    Attributes:
        dictionary: the dictionary's fingerprint.
        hook_name: the hook it reads.
        subject: the subject's fingerprint.
        prompts_sha256: :func:`workbench.fingerprint.texts_sha256` of the prompt set.
        n_prompts: number of prompts.
        n_tokens: number of tokens summarised (real tokens, ``<bos>`` left out by default).
        skip_bos: whether position 0 was left out.
        mean: ``[d_sae]`` mean activation over all tokens.
        frequency: ``[d_sae]`` fraction of tokens on which the feature fires.
        max: ``[d_sae]`` largest activation (0 for a feature that never fires).
        top_values: ``[d_sae, k]`` the k largest activations per feature, descending
            (0 where the feature fired on fewer than k tokens).
        top_prompts: ``[d_sae, k]`` their prompt indices (-1 for an empty slot).
        top_positions: ``[d_sae, k]`` their token positions (-1 for an empty slot).
        windows: the text around every (prompt, position) in the top-k tables:
            (activating token, window text, window start position).
        dense: ``[n_tokens, n_dense]`` feature activations per token, when asked for
            (``keep_dense``), else ``None``.
        dense_features: the features (columns) ``dense`` holds, in its column order.
        token_index: ``[n_tokens, 2]`` (prompt, position) of each row of ``dense``.
    """

    dictionary: str
    hook_name: str
    subject: str
    prompts_sha256: str
    n_prompts: int
    n_tokens: int
    skip_bos: bool
    mean: torch.Tensor
    frequency: torch.Tensor
    max: torch.Tensor
    top_values: torch.Tensor
    top_prompts: torch.Tensor
    top_positions: torch.Tensor
    windows: dict[tuple[int, int], tuple[str, str, int]] = field(repr=False)
    dense: torch.Tensor | None = field(default=None, repr=False)
    dense_features: tuple[int, ...] | None = None
    token_index: torch.Tensor | None = field(default=None, repr=False)

    @property
    def d_sae(self) -> int:
        """Number of features."""
        return int(self.mean.shape[0])

    def top_contexts(self, feature: int) -> list[TopContext]:
        """The feature's most activating contexts, strongest first (only where it fired)."""
        if not 0 <= feature < self.d_sae:
            raise IndexError(f"feature {feature} out of range: the dictionary has {self.d_sae}")
        out = []
        for p, pos, v in zip(
            self.top_prompts[feature].tolist(),
            self.top_positions[feature].tolist(),
            self.top_values[feature].tolist(),
            strict=True,
        ):
            if p >= 0:
                token, text, start = self.windows[(p, pos)]
                out.append(TopContext(p, pos, v, token, text, start))
        return out

    def dense_column(self, feature: int) -> torch.Tensor:
        """Token-level activations ``[n_tokens]`` of one feature (needs ``keep_dense``)."""
        if self.dense is None or self.dense_features is None:
            raise ValueError(
                "these statistics hold no dense activations; collect them with "
                "keep_dense=True (or keep_dense=[features...])"
            )
        try:
            col = self.dense_features.index(feature)
        except ValueError:
            raise ValueError(
                f"feature {feature} is not among the dense columns kept; collect with "
                f"keep_dense=True or include it in keep_dense=[...]"
            ) from None
        return self.dense[:, col]


# ------------------------------------------------------------------ collect


def _merge_top(
    top: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    new: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    k: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Running top-k per feature: (values, prompts, positions), each ``[k, d_sae]``.

    The running table comes first, so on equal values the earlier token is kept.
    """
    vals = torch.cat([top[0], new[0]], 0)
    best, where = vals.sort(dim=0, descending=True, stable=True)
    where = where[:k]
    return (
        best[:k],
        torch.cat([top[1], new[1]], 0).gather(0, where),
        torch.cat([top[2], new[2]], 0).gather(0, where),
    )


def _update_top(
    top: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    feats: torch.Tensor,
    batch_max: torch.Tensor,
    index: torch.Tensor,
    k: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Merge a batch ``feats`` ``[N, d_sae]`` into the running top-k tables.

    Only features whose batch maximum beats their current k-th value (and is > 0: a silent
    token never fills a slot) are touched, so once the tables fill up most batches cost little.
    """
    cols = (batch_max > top[0][-1].clamp_min(0)).nonzero().flatten()
    if cols.numel() == 0:
        return top
    every = cols.numel() == feats.shape[1]
    sub = feats if every else feats[:, cols]
    v, r = sub.topk(min(k, sub.shape[0]), dim=0)
    if every:
        return _merge_top(top, (v, index[r, 0], index[r, 1]), k)
    merged = _merge_top(
        (top[0][:, cols], top[1][:, cols], top[2][:, cols]), (v, index[r, 0], index[r, 1]), k
    )
    for table, part in zip(top, merged, strict=True):
        table[:, cols] = part
    return top


@torch.no_grad()
def collect(
    subject: Subject,
    dictionary: Dictionary,
    prompts: Sequence[str],
    *,
    batch_size: int = 64,
    top_k_contexts: int = 8,
    keep_dense: bool | Sequence[int] = False,
    skip_bos: bool = True,
    context_window: int = 8,
    progress: bool = True,
) -> FeatureStats:
    """Per-feature statistics of ``dictionary`` over the tokens of ``prompts``.

    Args:
        subject: the model; it runs only up to ``dictionary.hook_name``.
        dictionary: the dictionary (checked with :func:`workbench.dictionaries.check_compatible`).
        prompts: texts; each is encoded with ``subject.encode`` (``<bos>`` first).
        batch_size: prompts per forward pass (memory is bounded by one batch).
        top_k_contexts: how many most-activating contexts to keep per feature.
        keep_dense: also return the token x feature matrix: ``True`` for every feature, or a
            list of features to keep only those columns (memory ``n_tokens x len(list)``).
        skip_bos: leave out position 0 (the ``<bos>`` outlier the dictionary never saw).
        context_window: tokens before the activating one in each context's text (2 after).
        progress: show a progress bar.

    Raises:
        ValueError: empty prompt set, a prompt longer than the model's context, or a dictionary
            that does not read this subject's hook; the message names the fix.
    """
    check_prompts(prompts)
    if top_k_contexts < 0:
        raise ValueError(f"top_k_contexts must be >= 0 (got {top_k_contexts})")
    check_compatible(subject, dictionary)
    d_sae = dictionary.d_sae
    dev = dictionary.sae.device
    if isinstance(keep_dense, bool):
        dense_cols: list[int] | None = list(range(d_sae)) if keep_dense else None
    else:
        dense_cols = [int(f) for f in keep_dense]
        bad = [f for f in dense_cols if not 0 <= f < d_sae]
        if bad:
            raise ValueError(f"keep_dense names features {bad} outside 0..{d_sae - 1}")
    dense_all = dense_cols is not None and dense_cols == list(range(d_sae))
    cols_t = None if dense_cols is None else torch.tensor(dense_cols, dtype=torch.long)

    k = top_k_contexts
    total = torch.zeros(d_sae, dtype=torch.float64, device=dev)
    fired = torch.zeros(d_sae, dtype=torch.long, device=dev)
    peak = torch.zeros(d_sae, dtype=torch.float32, device=dev)
    top = (
        torch.full((k, d_sae), -math.inf, device=dev),
        torch.full((k, d_sae), -1, dtype=torch.long, device=dev),
        torch.full((k, d_sae), -1, dtype=torch.long, device=dev),
    )
    index_parts: list[torch.Tensor] = []  # (prompt, position) of every token, when dense
    dense_parts: list[torch.Tensor] = []
    n_tokens = 0
    id_batches: list[tuple[torch.Tensor, torch.Tensor]] = []  # (ids int32, lengths), CPU

    with cpu_threads(threads(subject), subject.device):
        for batch in stream(
            subject,
            dictionary.hook_name,
            prompts,
            batch_size=batch_size,
            skip_bos=skip_bos,
            progress=progress,
            desc=f"collect {dictionary.hook_name}",
        ):
            id_batches.append((batch.ids.to("cpu", torch.int32), batch.mask.sum(1).cpu()))
            where = batch.keep.nonzero()  # [N, 2]: (row in batch, position)
            if where.shape[0] == 0:
                continue
            x = dictionary_input(batch.acts[batch.keep], dictionary)
            feats = dictionary.encode(x).float()  # [N, d_sae]
            # float32 sums within a batch (a float64 reduction is ~10x slower on CPU),
            # accumulated across batches in float64
            total += feats.sum(0).double()
            fired += (feats > 0).sum(0, dtype=torch.int32)
            batch_max = feats.amax(0)
            peak = torch.maximum(peak, batch_max)
            index = where.to(dev)
            index[:, 0] += batch.start
            if k:
                top = _update_top(top, feats, batch_max, index, k)
            if cols_t is not None:
                index_parts.append(index.cpu())
                part = feats if dense_all else feats[:, cols_t.to(feats.device)]
                dense_parts.append(part.cpu())
            n_tokens += feats.shape[0]

    if n_tokens == 0:
        raise ValueError(
            "the prompts hold no tokens to summarise (each is only <bos>); pass non-empty texts "
            "or skip_bos=False"
        )
    empty = ~(top[0].T.cpu() > 0)  # a slot counts only where the feature fired
    top_values = torch.where(empty, 0.0, top[0].T.cpu())
    top_prompts = torch.where(empty, -1, top[1].T.cpu())
    top_positions = torch.where(empty, -1, top[2].T.cpu())

    def ids_of(prompt: int) -> list[int]:
        ids, lengths = id_batches[prompt // batch_size]
        row = prompt % batch_size
        return [int(i) for i in ids[row, : int(lengths[row])].tolist()]

    windows = _windows(subject, ids_of, top_prompts, top_positions, context_window)
    return FeatureStats(
        dictionary=dictionary.fingerprint,
        hook_name=dictionary.hook_name,
        subject=subject.fingerprint,
        prompts_sha256=texts_sha256(prompts),
        n_prompts=len(prompts),
        n_tokens=n_tokens,
        skip_bos=skip_bos,
        mean=(total / n_tokens).float().cpu(),
        frequency=(fired.double() / n_tokens).float().cpu(),
        max=peak.cpu(),
        top_values=top_values,
        top_prompts=top_prompts,
        top_positions=top_positions,
        windows=windows,
        dense=torch.cat(dense_parts) if dense_parts else None,
        dense_features=None if dense_cols is None else tuple(dense_cols),
        token_index=torch.cat(index_parts) if index_parts else None,
    )


def _windows(
    subject: Subject,
    ids_of: Callable[[int], list[int]],
    top_prompts: torch.Tensor,
    top_positions: torch.Tensor,
    before: int,
    after: int = 2,
) -> dict[tuple[int, int], tuple[str, str, int]]:
    """Text windows of every filled (prompt, position) slot of the top-k tables."""
    filled = top_prompts >= 0
    pairs = sorted(
        set(zip(top_prompts[filled].tolist(), top_positions[filled].tolist(), strict=True))
    )
    if not pairs:
        return {}
    tok = subject.text_tokenizer
    by_prompt: dict[int, list[int]] = {}
    for p, pos in pairs:
        by_prompt.setdefault(p, []).append(pos)
    out: dict[tuple[int, int], tuple[str, str, int]] = {}
    for p, positions in by_prompt.items():
        ids = ids_of(p)
        for pos in positions:
            lo, hi = max(0, pos - before), min(len(ids), pos + after + 1)
            out[(p, pos)] = (str(tok.decode([ids[pos]])), str(tok.decode(ids[lo:hi])), lo)
    return out
