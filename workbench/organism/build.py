"""Training, caching and loading the organism model.

The organism is a GPT-2-style TransformerLens ``HookedTransformer`` trained from scratch on
:mod:`workbench.organism.language`. A build is fully determined by its *recipe* (language version,
grammar, model and training config, seed); the recipe's sha256 names its cache folder, so a build
is reused until the recipe changes.

On-disk format (one folder per build, ``<cache>/organism/s<seed>-<recipe hash[:16]>/``):

* ``recipe.json``: the recipe (``language_version``, ``grammar``, ``config``, ``seed``,
  ``format_version``) and its full sha256;
* ``hooked_config.json``: the ``HookedTransformerConfig`` fields needed to rebuild the model;
* ``model.safetensors``: the TransformerLens state dict;
* ``tokenizer/``: the word-level tokenizer (``PreTrainedTokenizerFast.save_pretrained``);
* ``train_log.json``: loss curve, final loss, build seconds, device.

The cache root is ``$WORKBENCH_CACHE`` if set, else the platform's user cache folder
(``~/.cache/workbench`` on Linux). Builds are written to a temporary folder and renamed into
place, so a folder that exists is complete.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformers import PreTrainedTokenizerFast

from workbench._device import cpu_threads, resolve_device
from workbench._locks import build_lock
from workbench.fingerprint import json_sha256
from workbench.organism.language import LANGUAGE_VERSION, Grammar, sample_document, vocabulary
from workbench.organism.tokenizer import build_tokenizer, encode_batch

FORMAT_VERSION = "1"


@dataclass(frozen=True)
class OrganismConfig:
    """Model size and training schedule of the organism (part of the recipe)."""

    n_layers: int = 3
    d_model: int = 64
    n_heads: int = 4
    d_mlp: int = 256
    n_ctx: int = 64
    steps: int = 2000
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup: int = 100
    grammar: Grammar = field(default_factory=Grammar)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["grammar"] = self.grammar.to_dict()
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> OrganismConfig:
        d = dict(d)
        g = d.pop("grammar")
        g = {k: tuple(v) if isinstance(v, list) else v for k, v in g.items()}
        return OrganismConfig(grammar=Grammar(**g), **d)


SMALL_CONFIG = OrganismConfig(n_layers=2, d_model=32, n_heads=2, d_mlp=128, steps=150)
"""A seconds-long build for tests (it learns the grammar's shape, not the persona well)."""


@dataclass(frozen=True)
class Organism:
    """Which organism to load: a typed spec for :func:`workbench.load_subject`.

    ``Organism()`` is the README's organism (seed 0, :class:`OrganismConfig` defaults);
    ``Organism(seed=3, config=SMALL_CONFIG)`` any other. ``"organism"`` and ``"organism:3"``
    are shorthands for the default config.
    """

    seed: int = 0
    config: OrganismConfig = field(default_factory=OrganismConfig)

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"Organism(seed={self.seed!r}): the seed is an integer")
        if not isinstance(self.config, OrganismConfig):
            raise ValueError(
                f"Organism(config={self.config!r}): pass an OrganismConfig (e.g. SMALL_CONFIG)"
            )

    @staticmethod
    def parse(spec: str) -> Organism:
        """``"organism"`` or ``"organism:SEED"`` as a spec (default config)."""
        if spec == "organism":
            return Organism()
        head, _, tail = spec.partition(":")
        if head == "organism":
            try:
                return Organism(seed=int(tail))
            except ValueError:
                pass
        raise ValueError(
            f"bad organism spec {spec!r}: write 'organism' or 'organism:SEED' (an integer), "
            "or pass Organism(seed=..., config=...)"
        )


@dataclass(frozen=True)
class BuiltOrganism:
    """A loaded organism build."""

    model: HookedTransformer
    tokenizer: PreTrainedTokenizerFast
    name: str
    path: Path
    recipe: dict[str, Any]
    train_log: dict[str, Any]


def recipe(config: OrganismConfig, seed: int) -> dict[str, Any]:
    """Everything that determines a build; its sha256 is the cache key."""
    return {
        "format_version": FORMAT_VERSION,
        "language_version": LANGUAGE_VERSION,
        "vocabulary_sha256": json_sha256(vocabulary()),
        "config": config.to_dict(),
        "seed": seed,
    }


def cache_root() -> Path:
    """``$WORKBENCH_CACHE`` or the platform user cache folder for ``workbench``."""
    env = os.environ.get("WORKBENCH_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("workbench"))


def build_dir(config: OrganismConfig, seed: int) -> Path:
    key = json_sha256(recipe(config, seed))
    return cache_root() / "organism" / f"s{seed}-{key[:16]}"


def _new_model(cfg: HookedTransformerConfig) -> HookedTransformer:
    # TransformerLens 3.x warns that HookedTransformer goes away in 4.0; we pin <4 on purpose.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "HookedTransformer is deprecated", DeprecationWarning)
        return HookedTransformer(cfg)


def hooked_config(config: OrganismConfig, d_vocab: int, seed: int) -> HookedTransformerConfig:
    return HookedTransformerConfig(
        n_layers=config.n_layers,
        d_model=config.d_model,
        n_heads=config.n_heads,
        d_head=config.d_model // config.n_heads,
        d_mlp=config.d_mlp,
        d_vocab=d_vocab,
        n_ctx=config.n_ctx,
        act_fn="gelu",
        normalization_type="LN",
        positional_embedding_type="standard",
        default_prepend_bos=True,
        model_name="organism",
        original_architecture="organism",
        seed=seed,
    )


def _batch_texts(rng: np.random.Generator, grammar: Grammar, n: int) -> list[str]:
    return [sample_document(rng, grammar).text() for _ in range(n)]


def train_organism(
    config: OrganismConfig, seed: int, device: torch.device, progress: bool = True
) -> tuple[HookedTransformer, PreTrainedTokenizerFast, dict[str, Any]]:
    """Train a fresh organism (deterministic for a given config, seed and device)."""
    tokenizer = build_tokenizer()
    torch.manual_seed(seed)
    model = _new_model(hooked_config(config, len(tokenizer.get_vocab()), seed))
    model.set_tokenizer(tokenizer)
    model.to(device, print_details=False)
    opt = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, betas=(0.9, 0.98)
    )

    def lr_at(step: int) -> float:
        if step < config.warmup:
            return (step + 1) / config.warmup
        frac = (step - config.warmup) / max(1, config.steps - config.warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    rng = np.random.default_rng(seed)
    losses: list[float] = []
    t0 = time.perf_counter()
    bar = tqdm(range(config.steps), desc=f"organism s{seed}", disable=not progress)
    model.train()
    for step in bar:
        texts = _batch_texts(rng, config.grammar, config.batch_size)
        ids, mask = encode_batch(tokenizer, texts)  # padded to the longest document only
        if ids.shape[1] > config.n_ctx:
            raise ValueError(f"documents longer than n_ctx={config.n_ctx}; raise n_ctx")
        ids, mask = ids.to(device), mask.to(device)
        logits = model(ids)
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        nll = -logp.gather(-1, ids[:, 1:, None])[..., 0]
        m = mask[:, 1:].float()
        loss = (nll * m).sum() / m.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 50 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
    model.eval()
    log = {
        "final_loss": float(np.mean(losses[-100:])),
        "loss_curve": [float(np.mean(losses[i : i + 50])) for i in range(0, len(losses), 50)],
        "seconds": time.perf_counter() - t0,
        "device": str(device),
        "torch": torch.__version__,
    }
    return model, tokenizer, log


def _save(
    path: Path,
    model: HookedTransformer,
    tokenizer: PreTrainedTokenizerFast,
    rec: dict[str, Any],
    log: dict[str, Any],
) -> None:
    path.mkdir(parents=True)
    (path / "recipe.json").write_text(
        json.dumps({**rec, "sha256": json_sha256(rec)}, indent=2)
    )
    cfg = model.cfg
    hooked = {
        k: getattr(cfg, k)
        for k in ("n_layers", "d_model", "n_heads", "d_head", "d_mlp", "d_vocab", "n_ctx", "act_fn")
    }
    (path / "hooked_config.json").write_text(json.dumps(hooked, indent=2))
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path / "model.safetensors"))
    tokenizer.save_pretrained(str(path / "tokenizer"))
    (path / "train_log.json").write_text(json.dumps(log, indent=2))


def load_build(path: Path, device: torch.device) -> BuiltOrganism:
    """Read a build folder (see the module docstring for its format)."""
    missing = [
        f
        for f in ("recipe.json", "hooked_config.json", "model.safetensors", "tokenizer")
        if not (path / f).exists()
    ]
    if missing:
        raise FileNotFoundError(
            f"{path} is not a complete organism build (missing {', '.join(missing)}); "
            "delete it and run `workbench organism build`"
        )
    rec = json.loads((path / "recipe.json").read_text())
    config = OrganismConfig.from_dict(rec["config"])
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(path / "tokenizer"))
    model = _new_model(hooked_config(config, len(tokenizer.get_vocab()), rec["seed"]))
    model.load_state_dict(load_file(str(path / "model.safetensors")))
    model.set_tokenizer(tokenizer)
    model.to(device, print_details=False)
    model.eval()
    log = json.loads((path / "train_log.json").read_text())
    return BuiltOrganism(model, tokenizer, f"organism-s{rec['seed']}", path, rec, log)


def load_organism(
    seed: int = 0,
    config: OrganismConfig | None = None,
    device: str | torch.device = "auto",
    progress: bool = True,
    rebuild: bool = False,
) -> BuiltOrganism:
    """The organism for ``seed`` and ``config``: from the cache, or trained and cached now.

    Training runs on ``device`` (CUDA when present under ``"auto"``); the saved weights are the
    same format whatever the device.
    """
    cfg = config or OrganismConfig()
    dev = resolve_device(device)
    path = build_dir(cfg, seed)
    with build_lock(path):  # a second process asking for this recipe waits, then reads it
        if rebuild and path.exists():
            shutil.rmtree(path)
        if not path.exists():
            _build(cfg, seed, dev, path, progress)
    return load_build(path, dev)


def _build(
    cfg: OrganismConfig, seed: int, dev: torch.device, path: Path, progress: bool
) -> None:
    """Train the organism and write it to ``path`` atomically (aside, then renamed)."""
    with cpu_threads(1, dev):
        model, tokenizer, log = train_organism(cfg, seed, dev, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        _save(tmp / "build", model, tokenizer, recipe(cfg, seed), log)
        try:
            os.replace(tmp / "build", path)
        except OSError:
            if not path.exists():  # a concurrent build that won the race is fine
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
