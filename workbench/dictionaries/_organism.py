"""The organism's default dictionary: an SAE Lens SAE on the residual stream after block 0.

Block 0's output is where the persona is first assembled from the context and where the toy-EM
restricted fine-tune acts, so the default dictionary reads ``blocks.0.hook_resid_post``. It is
trained with SAE Lens's own trainer (:func:`workbench.dictionaries.train_dictionary`) on a
seeded corpus of documents truncated to a fixed length (no padding enters the activations), and
cached beside the organism build it belongs to (``<build>/dictionaries/<hash>/``, SAE Lens format,
plus ``workbench_stats.json`` with the held-out explained variance and L0 measured at training).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from workbench._device import cpu_threads, resolve_device
from workbench._locks import build_lock
from workbench.dictionaries._dictionary import Dictionary, DictionaryStats, load_folder
from workbench.dictionaries._training import train_dictionary
from workbench.fingerprint import json_sha256
from workbench.organism import (
    BuiltOrganism,
    Organism,
    OrganismConfig,
    corpus_tokens,
    load_organism,
)
from workbench.subjects import organism_subject

DEFAULT_HOOK = "blocks.0.hook_resid_post"
STATS_FILE = "workbench_stats.json"  # held-out explained variance and L0, measured at training


@dataclass(frozen=True)
class DictionaryRecipe:
    """How the organism's default dictionary is trained (its cache key)."""

    hook_name: str = DEFAULT_HOOK
    expansion: int = 8
    k: int = 12
    training_tokens: int = 400_000
    context: int = 32
    lr: float = 2e-3
    batch_size: int = 512
    seed: int = 0


def default_dictionary(
    seed: int = 0,
    config: OrganismConfig | None = None,
    recipe: DictionaryRecipe | None = None,
    device: str | torch.device = "auto",
    progress: bool = True,
) -> Dictionary:
    """The organism's default dictionary (trained and cached on first use)."""
    dev = resolve_device(device)
    rec = recipe or DictionaryRecipe()
    built = load_organism(seed=seed, config=config, device=dev, progress=progress)
    folder = Path(built.path) / "dictionaries" / json_sha256(asdict(rec))[:16]
    name = f"{built.name}-{rec.hook_name}"
    with build_lock(folder):  # a second process asking for this recipe waits, then reads it
        if not folder.exists():
            _train(built, seed, config, rec, dev, folder, name, progress)
    d = replace(load_folder(folder, dev, None), name=name)
    stats_file = folder / STATS_FILE
    if stats_file.exists():  # held-out figures measured when it was trained
        d = replace(d, stats=DictionaryStats(**json.loads(stats_file.read_text())))
    return d


def _train(
    built: BuiltOrganism,
    seed: int,
    config: OrganismConfig | None,
    rec: DictionaryRecipe,
    dev: torch.device,
    folder: Path,
    name: str,
    progress: bool,
) -> None:
    """Train the dictionary aside, write its stats beside it, then rename it into place."""
    subject = organism_subject(built, Organism(seed, config or OrganismConfig()))
    n_docs = rec.training_tokens // rec.context + 1
    tokens = corpus_tokens(n_docs, rec.context, seed=10_000 + rec.seed)
    # trained aside, its stats written beside it, then renamed into place: a folder that
    # exists is complete (stats included)
    aside = folder.parent / f".{folder.name}.{os.getpid()}"
    shutil.rmtree(aside, ignore_errors=True)
    with cpu_threads(1, dev):
        d = train_dictionary(
            subject,
            rec.hook_name,
            tokens,
            d_sae=rec.expansion * subject.d_model,
            architecture="topk",
            k=rec.k,
            training_tokens=rec.training_tokens,
            lr=rec.lr,
            batch_size=rec.batch_size,
            seed=rec.seed,
            out_dir=aside,
            name=name,
            progress=progress,
        )
    try:
        if d.stats is not None:
            (aside / STATS_FILE).write_text(json.dumps(asdict(d.stats), indent=2))
        try:
            os.replace(aside, folder)
        except OSError:
            if not folder.exists():  # a concurrent build that won the race is fine
                raise
    finally:
        shutil.rmtree(aside, ignore_errors=True)

