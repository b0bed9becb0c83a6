"""Activation collection throughput: ``collect`` (stop at the hook) vs a bare full forward.

``workbench.activations.collect`` runs the model only up to the dictionary's hook, then encodes
every real token with the dictionary and updates the per-feature statistics (mean, frequency,
max, running top-k contexts). This script times it against, on the very same token batches:

* **full forward**: the bare model to the logits (``model(tokens)``), the reference;
* **forward to hook**: the bare model stopped at the hook (``stop_at_layer``), the floor;
* **naive collect**: a full forward with a cache of the hook, then the dictionary's encoder
  (what collection costs without stopping early, and without any statistics).

``collect`` starts from texts, so its time includes tokenizing them (shown on its own row);
the other three get the token batches ready-made.

Two subjects:

* the embedded organism (seed 0; 2 blocks, d_model 64) with its default dictionary at block 0;
* a randomly initialised GPT-2-small-shaped ``HookedTransformer`` (12 blocks, d_model 768,
  d_vocab 50,257; no download) with a random 24,576-feature ReLU SAE at
  ``blocks.6.hook_resid_post`` (the middle layer) and random 128-token prompts.

Tokens/s counts real tokens (padding excluded); each timing is the best of ``--repeats`` runs,
the rows timed round-robin (on a shared machine other jobs only ever add time).
Usage: python benchmarks/activations.py [--device auto] [--repeats 5] [--skip-gpt2]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
import torch
from sae_lens import StandardSAE, StandardSAEConfig
from sae_lens.saes.sae import SAEMetadata
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformers import PreTrainedTokenizerFast

from workbench._device import cpu_threads, resolve_device
from workbench.activations import collect, stop_layer
from workbench.dictionaries import Dictionary, default_dictionary, load_dictionary
from workbench.organism import load_organism
from workbench.organism.language import sample_corpus
from workbench.subjects import Subject, make_subject


def _timed(fn: Callable[[], object]) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def _interleaved_best(fns: Sequence[Callable[[], object]], repeats: int) -> list[float]:
    """Best (least) seconds of each function over ``repeats`` round-robin runs.

    On a shared machine other jobs only ever add time, so the minimum is the closest estimate
    of each method's own cost; round-robin order keeps slow phases from favouring one method.
    """
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            times[i].append(_timed(fn))
    return [min(t) for t in times]


def run_case(
    label: str,
    subject: Subject,
    dictionary: Dictionary,
    prompts: list[str],
    batch_size: int,
    repeats: int,
) -> None:
    """Time every way on the same batches and print one table."""
    hook = dictionary.hook_name
    model = subject.model
    batches = [
        subject.encode(prompts[i : i + batch_size]) for i in range(0, len(prompts), batch_size)
    ]
    n_tokens = int(sum(int(mask.sum()) for _, mask in batches))
    stop = stop_layer(subject, hook)
    # the same thread rule as workbench.activations: one CPU thread for organism-sized models
    threads = 1 if model.cfg.d_model <= 256 else None

    @torch.no_grad()
    def full_forward() -> None:
        for ids, _ in batches:
            model(ids)

    @torch.no_grad()
    def to_hook() -> None:
        for ids, _ in batches:
            model(ids, stop_at_layer=stop)

    @torch.no_grad()
    def naive_collect() -> None:
        for ids, mask in batches:
            _, cache = model.run_with_cache(ids, names_filter=hook)
            dictionary.encode(cache[hook][mask])

    def tokenize() -> None:
        for i in range(0, len(prompts), batch_size):
            subject.encode(prompts[i : i + batch_size])

    def workbench_collect() -> None:
        collect(subject, dictionary, prompts, batch_size=batch_size, progress=False)

    def on_threads(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            with cpu_threads(threads, subject.device):
                fn()

        return run

    names = [
        "full forward (logits)",
        f"forward to hook (stop_at_layer={stop})",
        "naive collect (full fwd + SAE)",
        "workbench collect (stop + SAE + stats)",
        "  of which: tokenizing the texts",
    ]
    fns = [on_threads(full_forward), on_threads(to_hook), on_threads(naive_collect)]
    fns += [workbench_collect, tokenize]  # collect sets its own threads
    fns[0]()  # warm-up
    rows = list(zip(names, _interleaved_best(fns, repeats), strict=True))
    base = rows[0][1]
    print(
        f"\n== {label}: {len(prompts)} prompts, {n_tokens:,} tokens, hook {hook}, "
        f"d_sae {dictionary.d_sae:,}, {subject.device}, torch threads "
        f"{threads or torch.get_num_threads()}"
    )
    print(f"{'method':<42} {'seconds':>9} {'tokens/s':>12} {'speed vs full fwd':>18}")
    for name, sec in rows:
        if name.startswith("  of which"):
            print(f"{name:<42} {sec:9.3f}")
        else:
            print(f"{name:<42} {sec:9.3f} {n_tokens / sec:12,.0f} {base / sec:17.2f}x")


def organism_case(device: torch.device, repeats: int) -> None:
    built = load_organism(seed=0, device=device)
    subject = make_subject(built.model, built.tokenizer, built.name, "organism", built.path)
    dictionary = default_dictionary(seed=0, device=device)
    prompts = [d.text() for d in sample_corpus(2000, seed=123)]
    run_case("organism s0", subject, dictionary, prompts, batch_size=64, repeats=repeats)


def _word_tokenizer(d_vocab: int) -> PreTrainedTokenizerFast:
    """A word-level tokenizer with ``d_vocab`` words ``<bos> <pad> <unk> w3 w4 ...``."""
    vocab = {"<bos>": 0, "<pad>": 1, "<unk>": 2} | {f"w{i}": i for i in range(3, d_vocab)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", 0)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", pad_token="<pad>", unk_token="<unk>"
    )


def gpt2_case(device: torch.device, repeats: int, n_prompts: int, ctx: int) -> None:
    cfg = HookedTransformerConfig(
        n_layers=12,
        d_model=768,
        n_heads=12,
        d_head=64,
        d_mlp=3072,
        d_vocab=50257,
        n_ctx=1024,
        act_fn="gelu_new",
        normalization_type="LN",
        seed=0,
        device=str(device),
    )
    model = HookedTransformer(cfg)
    tokenizer = _word_tokenizer(cfg.d_vocab)
    subject = make_subject(model, tokenizer, "gpt2-small-shaped (random)", "benchmark")
    hook = "blocks.6.hook_resid_post"
    sae = StandardSAE(
        StandardSAEConfig(d_in=768, d_sae=24576, metadata=SAEMetadata(hook_name=hook))
    )
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in sae.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.02 if name != "b_enc" else 0.0))
        sae.b_enc.fill_(-2.0)  # sparse firing, like a trained SAE
    with TemporaryDirectory() as tmp:
        sae.save_model(Path(tmp) / "sae")
        dictionary = load_dictionary(Path(tmp) / "sae", device=device)
    rng = np.random.default_rng(0)
    words = rng.integers(3, cfg.d_vocab, size=(n_prompts, ctx - 1))
    prompts = [" ".join(f"w{i}" for i in row) for row in words]
    run_case("gpt2-small-shaped", subject, dictionary, prompts, batch_size=8, repeats=repeats)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--gpt2-prompts", type=int, default=32)
    ap.add_argument("--gpt2-ctx", type=int, default=128)
    ap.add_argument("--skip-gpt2", action="store_true")
    args = ap.parse_args()
    device = resolve_device(args.device)
    organism_case(device, args.repeats)
    if not args.skip_gpt2:
        gpt2_case(device, args.repeats, args.gpt2_prompts, args.gpt2_ctx)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
