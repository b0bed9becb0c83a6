"""The organism's tokenizer: one token per word of the synthetic language.

It is a real Hugging Face ``PreTrainedTokenizerFast`` (a ``tokenizers`` WordLevel model with a
whitespace pre-tokenizer and a ``<bos>`` template), so TransformerLens' ``to_tokens``/``generate``
and SAE Lens work with the organism exactly as with any hub model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

import numpy as np
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from workbench.organism.language import BOS, PAD, UNK, Grammar, sample_document, vocabulary


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over :func:`vocabulary` that prepends ``<bos>``."""
    vocab = {w: i for i, w in enumerate(vocabulary())}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", special_tokens=[(BOS, vocab[BOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=BOS,
        pad_token=PAD,
        unk_token=UNK,
        add_bos_token=True,
        padding_side="right",
        name_or_path="organism",
    )


def encode_batch(
    tokenizer: PreTrainedTokenizerFast, texts: Sequence[str], length: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids (right-padded with ``<pad>``) and a mask of real tokens for space-separated texts.

    Texts that already start with ``<bos>`` are not given a second one.
    """
    vocab = tokenizer.get_vocab()
    unk = vocab[UNK]
    rows = []
    for t in texts:
        words = t.split()
        if not words or words[0] != BOS:
            words = [BOS, *words]
        rows.append([vocab.get(w, unk) for w in words])
    n = length or max(len(r) for r in rows)
    if any(len(r) > n for r in rows):
        raise ValueError(f"a text has more than {n} tokens; raise the context length")
    ids = torch.full((len(rows), n), vocab[PAD], dtype=torch.long)
    mask = torch.zeros((len(rows), n), dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = True
    return ids, mask


def decode_words(tokenizer: PreTrainedTokenizerFast, ids: Sequence[int]) -> str:
    """Space-separated words for token ids (special tokens kept)."""
    inv = {i: w for w, i in tokenizer.get_vocab().items()}
    return " ".join(inv.get(int(i), UNK) for i in ids)


def corpus_tokens(
    n_docs: int, context: int, seed: int, grammar: Grammar | None = None
) -> torch.Tensor:
    """Token ids of ``n_docs`` documents of the most turns, truncated to ``context`` tokens.

    Every row is a full window of real tokens (no padding), as SAE training wants.
    """
    g = grammar or Grammar()
    long_docs = Grammar(**{**asdict(g), "turns": (g.turns[1], g.turns[1])})
    rng = np.random.default_rng(seed)
    texts: list[str] = []
    while len(texts) < n_docs:  # keep documents that fill the context (no padding)
        words = sample_document(rng, long_docs).words()
        if len(words) >= context:
            texts.append(" ".join(words[:context]))
    ids, mask = encode_batch(build_tokenizer(), texts, context)
    if not bool(mask.all()):
        raise RuntimeError("a corpus document is shorter than the context; lower `context`")
    return ids
