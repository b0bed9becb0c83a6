"""Real-scale cost: collect, forecast and fine-tune on a GPT-2-small-shaped model, time and memory.

What a user pays on a real model, with the workbench's own entry points:

* **subject**: a random-weight ``transformers.GPT2LMHeadModel`` (``GPT2Config(n_layer, n_embd,
  n_head, vocab_size=50257, n_positions=1024)``: GPT-2 small's shape by default) saved with
  ``save_pretrained`` beside an offline word-level tokenizer (``tokenizers.WordLevel`` over the
  synthetic corpus's words, ``--words`` of them; the model keeps GPT-2's 50,257-token
  unembedding, so the logits and the loss have their real size), loaded through
  ``workbench.load_subject(folder)`` (TransformerLens, float32, CPU; TransformerLens keeps its
  own unembedding, so the 124M parameters of the tied Hugging Face model are 163M). No download.
* **dictionary**: a random-weight SAE Lens ReLU SAE (``--d-sae`` features, not trained: the cost
  of collect and forecast does not depend on the weights) at the middle block's
  ``hook_resid_post``, saved and opened with ``workbench.load_dictionary``; the watched features
  are ``workbench.contrast`` of two synthetic prompt sets (the 16 strongest are forecast).
* **data**: ``--pairs`` synthetic (prompt, completion) pairs of about 60 tokens.

Rows, each timed once (after a tiny warm-up forecast) with its peak memory:

* ``collect``: ``workbench.activations.collect`` of about ``--collect-tokens`` tokens at the hook;
* ``forecast steer / lora r1 / full``: ``workbench.forecast`` with ``SteeringVector`` at the
  hook's block, ``LoRA(rank=1)`` on that block's ``mlp.W_out`` and ``Full()`` (per-sample risks
  and geometric paths included), and ``full, data-level``: ``per_sample=False, n_targets=0``;
* ``finetune steer / lora r1 / full, 1 step``: ``workbench.finetune`` of each spec for one step at
  the recipe's batch size (32 pairs); the wall time includes the copy of the model and the tuned
  model's fingerprint, ``s/step`` is the training loop's (the recipe's ``seconds``);
* ``finetune lora r1, N steps``: the whole fine-tune at ``workbench.finetune``'s default length
  (150 steps x 32 pairs = 4,800 sequences: one epoch of a 4,800-pair data set, of which the
  forecast reads a ``--pairs`` sample; over the ``--pairs`` pairs alone one epoch is
  ``ceil(pairs / 32)`` steps, and the table says the ratio for that too). ``--finetune-steps 0``
  extrapolates it from the 1-step row instead (marked ``*``): its wall time plus 149 steps at
  its loop's pace.

``% of LoRA FT`` is each forecast's time as a percentage of the whole LoRA fine-tune's (target:
<= 5%); ``% of own FT`` of the whole fine-tune of the spec it forecasts (steer and Full
extrapolated from their 1-step rows as above). Memory is the process's resident set (RSS), which
counts Python and torch's CPU allocations alike: ``peak`` is the high-water mark during the row
(Linux: ``VmHWM`` after resetting it through ``/proc/self/clear_refs``; elsewhere ``ru_maxrss``,
the whole process's, which only grows), ``+peak`` that peak above the RSS at the row's start
(freed memory handed back with ``malloc_trim`` first). Everything runs on one CPU thread, as
``workbench.finetune`` and ``workbench.forecast`` run on a CPU.

Usage: python benchmarks/real_scale.py [--layers 12] [--d-model 768] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import math
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

#: workbench.finetune's defaults (the recipe a user gets without choosing)
FINETUNE_STEPS = 150
FINETUNE_BATCH = 32


@dataclass(frozen=True)
class Row:
    """One measured phase."""

    name: str
    what: str
    seconds: float
    peak_gib: float
    above_start_gib: float
    per_unit: str = ""
    pct_of_finetune: float | None = None  # of the whole LoRA fine-tune
    pct_of_own: float | None = None  # of the whole fine-tune of the same spec
    extrapolated: bool = False


# ------------------------------------------------------------------ memory


def _rss_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    """Reset the RSS high-water mark (Linux); ``False`` where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return _rss_kib("VmHWM") is not None


def _trim() -> None:
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # glibc only
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def memory_method() -> str:
    if _reset_peak():
        return "RSS high-water (VmHWM, reset per row via /proc/self/clear_refs)"
    return "RSS high-water (ru_maxrss, whole process: only grows)"


def measure(fn: Callable[[], Any]) -> tuple[Any, float, float, float]:
    """``fn()``, its seconds, the peak RSS during it and that peak above the RSS at its start
    (GiB)."""
    _trim()
    start = _rss_kib("VmRSS")
    reset = _reset_peak()
    if start is None:
        start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    peak = _rss_kib("VmHWM") if reset else None
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return out, seconds, peak / 2**20, max(0, peak - start) / 2**20


# ------------------------------------------------------------------ the subject


def _words(n: int) -> list[str]:
    return [f"w{i}" for i in range(n)]


def build_folder(folder: Path, layers: int, d_model: int, heads: int, vocab: int,
                 words: int, seed: int) -> None:
    """A random GPT-2 (``save_pretrained``) and a word-level tokenizer over ``words`` words."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(n_layer=layers, n_embd=d_model, n_head=heads,
                                  vocab_size=vocab, n_positions=1024)
    transformers.GPT2LMHeadModel(cfg).eval().save_pretrained(folder)
    vocab_words = ["<|endoftext|>", "<unk>", "user", "assistant", ":", *_words(words - 5)]
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab_words)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    transformers.PreTrainedTokenizerFast(
        tokenizer_object=tk, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
        pad_token="<|endoftext|>", unk_token="<unk>",
    ).save_pretrained(folder)


def _sentence(rng: np.random.Generator, n: int, words: int, low: int = 0) -> str:
    ids = low + rng.zipf(1.3, size=n) % (words - 5 - low)
    return " ".join(f"w{int(i)}" for i in ids)


def synthetic_pairs(n: int, words: int, seed: int) -> list[tuple[str, str]]:
    """``n`` (prompt, completion) pairs: ``user : <16 words> assistant :`` and 40 words."""
    rng = np.random.default_rng(seed)
    return [(f"user : {_sentence(rng, 16, words)} assistant :", " " + _sentence(rng, 40, words))
            for _ in range(n)]


def synthetic_prompts(n: int, words: int, seed: int, length: int = 48, low: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [_sentence(rng, length, words, low) for _ in range(n)]


def random_dictionary(folder: Path, d_in: int, d_sae: int, hook: str, seed: int) -> Any:
    from sae_lens import StandardSAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    from workbench.dictionaries import load_dictionary

    sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=d_sae,
                                        metadata=SAEMetadata(hook_name=hook)))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sae.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.0 if name == "b_enc" else 0.05))
    sae.save_model(folder)
    return load_dictionary(folder, device="cpu")


# ------------------------------------------------------------------ the benchmark


@dataclass(frozen=True)
class Settings:
    layers: int
    d_model: int
    heads: int
    vocab: int
    words: int
    d_sae: int
    pairs: int
    eval_prompts: int
    collect_tokens: int
    finetune_steps: int
    seed: int


def run(s: Settings, progress: bool = False) -> dict[str, Any]:
    """Build, load and measure everything; the table's rows and the settings."""
    from workbench import Full, LoRA, SteeringVector, contrast, finetune, forecast, load_subject
    from workbench.activations import collect

    torch.set_num_threads(1)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "gpt2-shaped"
        build_folder(folder, s.layers, s.d_model, s.heads, s.vocab, s.words, s.seed)
        subject, load_s, load_peak, load_up = measure(
            lambda: load_subject(folder, device="cpu", dtype="float32"))
        rows.append(Row("load_subject", "HF folder -> TransformerLens", load_s, load_peak,
                        load_up))
        layer = s.layers // 2
        hook = f"blocks.{layer}.hook_resid_post"
        d = random_dictionary(Path(tmp) / "sae", s.d_model, s.d_sae, hook, s.seed)
        pos = synthetic_prompts(32, s.words, s.seed + 1, low=(s.words - 5) // 2)
        neg = synthetic_prompts(32, s.words, s.seed + 2)
        watch = contrast(subject, d, pos, neg, n_boot=20)
        data = synthetic_pairs(s.pairs, s.words, s.seed + 3)
        evals = synthetic_prompts(s.eval_prompts, s.words, s.seed + 4)
        _, mask = subject.encode([p + c for p, c in data[:8]])
        seq = float(mask.sum(1).double().mean())

        n_collect = max(1, round(s.collect_tokens / 64))
        texts = synthetic_prompts(n_collect, s.words, s.seed + 5, length=63)
        _, sec, peak, up = measure(lambda: collect(subject, d, texts, progress=False))
        n_tok = n_collect * 63
        rows.append(Row("collect", f"{n_tok:,} tokens at {hook}", sec, peak, up,
                        f"{n_tok / sec:,.0f} tok/s"))

        specs: list[tuple[str, Any, dict[str, Any]]] = [
            ("forecast steer", SteeringVector(layer), {}),
            ("forecast lora r1", LoRA(rank=1, targets=("mlp.W_out",), layers=(layer,)), {}),
            ("forecast full", Full(), {}),
            ("forecast full, data-level", Full(), {"per_sample": False, "n_targets": 0}),
        ]
        forecast(subject, d, data[:2], watch=watch, eval_prompts=evals[:2],
                 spec=SteeringVector(layer))  # warm-up
        forecasts: list[tuple[Row, Any]] = []
        rows_ft: list[Row] = []
        for name, spec, kw in specs:

            def predict(spec: Any = spec, kw: dict[str, Any] = kw) -> Any:
                return forecast(subject, d, data, watch=watch, eval_prompts=evals, spec=spec,
                                **kw)

            f, sec, peak, up = measure(predict)
            c = f.extra["cost"]
            forecasts.append((Row(name, f"{s.pairs} pairs + {s.eval_prompts} eval prompts",
                                  sec, peak, up, f"batch {c['batch_size']}"), f))

        # the fine-tunes: one step of each (its loop's time is the recipe's "seconds"; the rest
        # of the wall time is the copy of the model, the data and the tuned model's fingerprint)
        specs_ft = {"steer": SteeringVector(layer), "lora": specs[1][1], "full": Full()}
        one: dict[str, tuple[float, float]] = {}  # method: (wall, loop seconds of its 1 step)
        for method, spec in specs_ft.items():

            def tune(spec: Any = spec) -> Any:
                return finetune(subject, data, spec, steps=1, batch_size=FINETUNE_BATCH,
                                seed=s.seed, progress=False)

            tuned, sec, peak, up = measure(tune)
            loop = float(tuned.recipe["seconds"])
            del tuned
            one[method] = (sec, loop)
            label = {"steer": "steer", "lora": "lora r1", "full": "full"}[method]
            rows_ft.append(Row(f"finetune {label}, 1 step", f"{FINETUNE_BATCH} pairs", sec, peak,
                               up, f"{loop:.2f} s/step"))
        steps = s.finetune_steps or FINETUNE_STEPS

        def whole_of(method: str) -> float:  # setup + every step at the first step's pace
            wall, loop = one[method]
            return wall + (steps - 1) * loop

        whole = {m: whole_of(m) for m in one}
        extrapolated = s.finetune_steps == 0
        if not extrapolated:
            _, whole["lora"], peakw, upw = measure(lambda: finetune(
                subject, data, specs_ft["lora"], steps=steps, batch_size=FINETUNE_BATCH,
                seed=s.seed, progress=progress))
            rows_ft.append(Row(f"finetune lora r1, {steps} steps",
                               f"{steps * FINETUNE_BATCH:,} sequences", whole["lora"], peakw,
                               upw, f"{whole['lora'] / steps:.2f} s/step"))
        else:
            rows_ft.append(Row(f"finetune lora r1, {steps} steps", "1-step row, extrapolated",
                               whole["lora"], rows_ft[1].peak_gib, rows_ft[1].above_start_gib,
                               f"{one['lora'][1]:.2f} s/step", extrapolated=True))
        epoch_steps = math.ceil(s.pairs / FINETUNE_BATCH)
        per_step = whole["lora"] / steps
        own = {"forecast steer": "steer", "forecast lora r1": "lora"}
        for row, _ in forecasts:
            method = own.get(row.name, "full")
            rows.append(Row(**{**asdict(row), "pct_of_finetune": 100 * row.seconds / whole["lora"],
                               "pct_of_own": 100 * row.seconds / whole[method]}))
        rows.extend(rows_ft)
    return {
        "settings": asdict(s),
        "model": {"n_layers": s.layers, "d_model": s.d_model, "n_heads": s.heads,
                  "model_vocab": s.vocab, "tokenizer_words": s.words,
                  "params": sum(p.numel() for p in subject.model.parameters())},
        "hook": hook,
        "mean_pair_tokens": seq,
        "memory": memory_method(),
        "threads": torch.get_num_threads(),
        "finetune_steps": steps,
        "finetune_extrapolated": extrapolated,
        "finetune_whole_seconds": whole,
        "one_epoch_steps": epoch_steps,
        "one_epoch_seconds": per_step * epoch_steps,
        "rows": [asdict(r) for r in rows],
        "torch": torch.__version__,
    }


def print_table(res: dict[str, Any]) -> None:
    m = res["model"]
    print(f"\n== GPT-2-shaped random model: {m['n_layers']} blocks, d_model {m['d_model']}, "
          f"{m['n_heads']} heads, model vocab {m['model_vocab']:,} (tokenizer: "
          f"{m['tokenizer_words']:,} words), {m['params'] / 1e6:.1f}M parameters; CPU, "
          f"{res['threads']} thread; dictionary: random ReLU SAE, "
          f"d_sae {res['settings']['d_sae']:,} at {res['hook']}; pairs of "
          f"~{res['mean_pair_tokens']:.0f} tokens")
    print(f"   memory: {res['memory']}")
    print(f"{'row':<30} {'what':<40} {'seconds':>9} {'peak GiB':>9} {'+peak GiB':>10} "
          f"{'':<15} {'% of LoRA FT':>12} {'% of own FT':>11}")
    for r in res["rows"]:
        pct = "" if r["pct_of_finetune"] is None else f"{r['pct_of_finetune']:11.1f}%"
        own = "" if r["pct_of_own"] is None else f"{r['pct_of_own']:10.1f}%"
        name = r["name"] + (" *" if r["extrapolated"] else "")
        print(f"{name:<30} {r['what']:<40} {r['seconds']:9.2f} {r['peak_gib']:9.2f} "
              f"{r['above_start_gib']:10.2f} {r['per_unit']:<15} {pct:>12} {own:>11}")
    w = res["finetune_whole_seconds"]
    star = " (*: extrapolated from the 1-step row)" if res["finetune_extrapolated"] else ""
    print(f"% of LoRA FT: of the whole LoRA r1 fine-tune, {res['finetune_steps']} steps x "
          f"{FINETUNE_BATCH} pairs (workbench.finetune's default: {FINETUNE_STEPS}), "
          f"{w['lora']:.0f} s{star}.")
    print(f"% of own FT: of the whole fine-tune of the same spec (steer {w['steer']:.0f} s, "
          f"full {w['full']:.0f} s: the 1-step rows' setup plus {res['finetune_steps']} steps "
          "at their first step's pace).")
    print(f"One epoch over the {res['settings']['pairs']} pairs alone is "
          f"{res['one_epoch_steps']} LoRA steps (~{res['one_epoch_seconds']:.0f} s): against "
          "that, " + ", ".join(f"{r['name'].removeprefix('forecast ')} "
                               f"{100 * r['seconds'] / res['one_epoch_seconds']:.0f}%"
                               for r in res["rows"] if r["name"].startswith("forecast")) + ".")


QUICK = {"layers": 2, "d_model": 64, "heads": 2, "vocab": 2000, "words": 500, "d_sae": 256,
         "pairs": 8, "eval_prompts": 4, "collect_tokens": 512, "finetune_steps": 3}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--d-model", type=int, default=768)
    p.add_argument("--heads", type=int, default=None, help="default: d_model / 64")
    p.add_argument("--vocab", type=int, default=50257, help="the model's vocabulary")
    p.add_argument("--words", type=int, default=4096, help="the tokenizer's words")
    p.add_argument("--d-sae", type=int, default=4096)
    p.add_argument("--pairs", type=int, default=64)
    p.add_argument("--eval-prompts", type=int, default=32)
    p.add_argument("--collect-tokens", type=int, default=4096)
    p.add_argument("--finetune-steps", type=int, default=FINETUNE_STEPS,
                   help="the whole fine-tune's steps; 0: extrapolate from one step")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="a tiny shape (CI smoke)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    a = p.parse_args(argv)
    given = {k: v for k, v in vars(a).items() if k not in ("quick", "json")}
    if a.quick:  # the tiny shape, unless a flag asks for another value
        defaults = vars(p.parse_args([]))
        given = {k: (QUICK.get(k, v) if v == defaults[k] else v) for k, v in given.items()}
    given["heads"] = given["heads"] or max(1, given["d_model"] // 64)
    res = run(Settings(**given), progress=not a.quick and sys.stderr.isatty())
    print_table(res)
    if a.json is not None:
        a.json.write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
