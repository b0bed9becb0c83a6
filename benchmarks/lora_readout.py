"""Why the feature forecast cannot rank LoRA fine-tunes here: read-outs of the *trained* adapter.

For each rank-1 LoRA member of the forecast benchmark's family (the ten tasks at odd fraction 1
and the three code fine-tunes, on block 0's MLP output), fine-tune it as the family does, take
the real weight change ``ΔW`` (the merged adapter) and ask which read-out of ``ΔW`` ranks the
members' off-domain EM (Spearman across the 13):

* ``features``: the exact change of the watched persona read-out (the forecast's risk, with the
  real ``ΔW`` in place of the forecast step) on the corpus evaluation documents; at block 0's
  residual stream the MLP output enters linearly, so this is exact, not first-order;
* ``persona@L``: the change of the projection on the persona direction (mean difference of
  misaligned- vs aligned-persona prompts) at the answer position of the off-domain questions,
  at every layer, in the tuned model;
* ``rate``: the rate's score-function gradient (:func:`workbench.rate_forecasts.rate_readout`)
  dotted with ``ΔW``;
* and, for reference, the two forecasts of the step (``rate_adam`` and the feature forecast).

Usage: python benchmarks/lora_readout.py [--seeds 0 1]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).parent))
from forecast import N_EVAL, N_WATCH

from workbench.analysis import setup
from workbench.experiments.family import (
    OFF_DOMAINS,
    FinetuneSettings,
    off_domain_rate,
    organism_family,
)
from workbench.features import contrast
from workbench.finetunes import finetune
from workbench.forecasts import _encoder, _token_level, forecast
from workbench.organism.language import eval_prompts, sample_corpus
from workbench.organism.prompts import persona_prompts
from workbench.rate_forecasts import _rate_gradient, rate_forecast, rate_readout

WEIGHT = "blocks.0.mlp.W_out"


def _last(base: object, prompts: Sequence[str], names: Sequence[str]) -> dict[str, torch.Tensor]:
    """Each hook's activation at every prompt's last token."""
    ids, keep = _token_level(base, prompts)  # type: ignore[arg-type]
    with torch.no_grad():
        _, cache = base.model.run_with_cache(ids, names_filter=lambda n: n in names)  # type: ignore[attr-defined]
    last = keep.sum(1) - 1
    return {n: cache[n][torch.arange(len(ids)), last].double() for n in names}


def run_seed(seed: int, settings: FinetuneSettings) -> dict[str, np.ndarray]:
    base, d = setup(organism="full", seed=seed, device="cpu")
    model = base.model
    mis, ali = persona_prompts(300, seed=100)
    watch = contrast(base, d, mis, ali, n_boot=100, name="persona").top(N_WATCH)
    evals = [doc.text() for doc in sample_corpus(N_EVAL, seed=999)]
    off = [p for dom in OFF_DOMAINS for p in eval_prompts(dom)]
    base_rate = off_domain_rate(base, settings.samples_per_prompt, settings.seed)
    enc = _encoder(base, d, torch.tensor(watch.indices),
                   torch.tensor(watch.effect, dtype=torch.float64))
    ids, keep = _token_level(base, evals)
    with torch.no_grad():
        _, cache = model.run_with_cache(ids, names_filter="blocks.0.mlp.hook_post")
    h_eval = cache["blocks.0.mlp.hook_post"][keep].double().mean(0)
    layers = [f"blocks.{i}.hook_resid_post" for i in range(model.cfg.n_layers)]
    am, aa = _last(base, mis, layers), _last(base, ali, layers)
    persona = {n: am[n].mean(0) - aa[n].mean(0) for n in layers}
    before = _last(base, off, layers)
    readout = rate_readout(base, off, samples_per_prompt=settings.samples_per_prompt,
                           seed=settings.seed + 1)
    members = organism_family(fractions=(1.0,), specs=["lora"], seed=seed)
    grad = _rate_gradient(base, model, readout, members[0].spec, settings.seed, 64)[WEIGHT]
    weight = dict(model.named_parameters())[WEIGHT]
    w0 = weight.detach().clone()
    rows: dict[str, list[float]] = {"em": [], "features": [], "rate": [], "rate_adam": [],
                                    "forecast": [], **{f"persona@L{i}": [] for i in
                                                       range(len(layers))}}
    for m in members:
        tuned = finetune(base, m.data, m.spec, steps=settings.steps,
                         batch_size=settings.batch_size, lr=settings.lr["lora"],
                         seed=settings.seed, progress=False)
        dw = dict(tuned.model.named_parameters())[WEIGHT].detach().double() - w0.double()
        rows["em"].append(100 * (off_domain_rate(tuned, settings.samples_per_prompt,
                                                 settings.seed) - base_rate))
        rows["features"].append(float(h_eval @ dw @ enc.readout))
        rows["rate"].append(float((grad.double() * dw).sum()))
        rows["rate_adam"].append(rate_forecast(base, m.data, readout, spec=m.spec,
                                               step="adam").risk)
        rows["forecast"].append(forecast(base, d, m.data, watch=watch, eval_prompts=evals,
                                         spec=m.spec, n_watch=None, dedupe=False,
                                         per_sample=False, n_targets=0).risk)
        with torch.no_grad():
            weight.copy_(w0 + dw.to(w0))
        try:
            after = _last(base, off, layers)
        finally:
            with torch.no_grad():
                weight.copy_(w0)
        for i, n in enumerate(layers):
            u = persona[n] / persona[n].norm()
            rows[f"persona@L{i}"].append(float((after[n] - before[n]).mean(0) @ u))
    return {k: np.array(v) for k, v in rows.items()}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    settings = FinetuneSettings()
    print("Spearman with the LoRA members' off-domain EM (13 per seed)")
    print(f"{'read-out':<40}" + "".join(f"{'seed ' + str(s):>9}" for s in args.seeds))
    per_seed = [run_seed(s, settings) for s in args.seeds]
    for name in per_seed[0]:
        if name == "em":
            continue
        kind = "of the trained dW" if name in ("features", "rate") or "@" in name else "forecast"
        print(f"{name + ' (' + kind + ')':<40}" + "".join(
            f"{spearmanr(r[name], r['em'])[0]:9.2f}" for r in per_seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
