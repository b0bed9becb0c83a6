"""Training a dictionary with SAE Lens's own trainer: :func:`train_dictionary`.

Re-exported by :mod:`workbench.dictionaries` (import it from there). The runner
subclass and the helpers around it (a seeded RNG that leaves the caller's alone, quieted SAE Lens
chatter, an output folder written aside and renamed when complete) live here with it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal
from unittest import mock

import torch
from sae_lens import SAE, LanguageModelSAETrainingRunner

from workbench.dictionaries._dictionary import Dictionary, hook_trailing_shape, make_dictionary
from workbench.dictionaries._evaluate import check_tokens, evaluate_dictionary
from workbench.fingerprint import state_dict_sha256
from workbench.subjects import Subject

Architecture = Literal["topk", "standard"]


def train_dictionary(
    subject: Subject,
    hook_name: str,
    tokens: torch.Tensor,
    *,
    d_sae: int | None = None,
    architecture: Architecture = "topk",
    k: int = 16,
    l1_coefficient: float = 5.0,
    training_tokens: int = 1_000_000,
    lr: float = 1e-3,
    batch_size: int = 1024,
    held_out_fraction: float = 0.1,
    eval_tokens: torch.Tensor | None = None,
    skip_first_position: bool = True,
    seed: int = 0,
    out_dir: str | Path | None = None,
    overwrite: bool = False,
    name: str | None = None,
    progress: bool = True,
) -> Dictionary:
    """Train a dictionary on ``subject``'s activations at ``hook_name`` with SAE Lens's trainer.

    Runs ``sae_lens.LanguageModelSAETrainingRunner`` with the subject's model and the tokens as a
    pre-tokenized ``datasets.Dataset`` (column ``input_ids``): no hub, no wandb, no checkpoints.
    The result is saved in SAE Lens's format (the runner's ``save_final_sae``) and read back with
    ``SAE.load_from_disk``, so the returned dictionary is exactly what is on disk.

    Args:
        subject: the model whose activations are encoded (never modified).
        hook_name: a TransformerLens hook of the subject, e.g. ``"blocks.1.hook_resid_post"``.
        tokens: LongTensor ``n_seq x ctx`` of token ids; sequences are read in order, in epochs.
        d_sae: number of features (default ``8 * d_in``).
        architecture: ``"topk"`` (default; ``k`` active features per token) or ``"standard"``
            (ReLU with an L1 penalty of ``l1_coefficient``).
        k: active features per token for TopK.
        l1_coefficient: L1 sparsity coefficient for ``"standard"`` (on normalised inputs).
        training_tokens: activations seen in training (several epochs over ``tokens`` if larger).
        lr: Adam learning rate (constant schedule).
        batch_size: activations per optimizer step.
        held_out_fraction: share of the sequences of ``tokens`` (taken from the end) kept out of
            training and used for :attr:`Dictionary.stats`, when ``eval_tokens`` is not given.
        eval_tokens: held-out sequences for :attr:`Dictionary.stats` (then all of ``tokens``
            train).
        skip_first_position: leave position 0 (``<bos>``) out of training and evaluation.
        seed: seeds initialisation and shuffling; the same seed gives the same fingerprint.
        out_dir: SAE Lens folder to write (``cfg.json``, ``sae_weights.safetensors``,
            ``sparsity.safetensors``, ``runner_cfg.json``); written to a temporary sibling and
            renamed when complete. ``None``: a temporary folder, removed afterwards.
        overwrite: replace an existing non-empty ``out_dir``.
        name: the dictionary's name (default from subject, hook, architecture, width, seed).
        progress: show SAE Lens's progress bar.

    Raises:
        ValueError: unknown hook, malformed tokens or hyperparameters, or ``out_dir`` in use.
    """
    from datasets import Dataset
    from sae_lens import (
        LanguageModelSAERunnerConfig,
        StandardTrainingSAEConfig,
        TopKTrainingSAEConfig,
    )
    from sae_lens.config import LoggingConfig

    check_tokens(subject, tokens, "tokens")
    shape = hook_trailing_shape(subject, hook_name)
    d_in = math.prod(shape)
    d_sae = 8 * d_in if d_sae is None else d_sae
    if d_sae < 1:
        raise ValueError(f"d_sae must be positive (got {d_sae})")
    if architecture not in ("topk", "standard"):
        raise ValueError(f"architecture must be 'topk' or 'standard' (got {architecture!r})")
    if architecture == "topk" and not 0 < k <= d_sae:
        raise ValueError(f"k must be in [1, d_sae={d_sae}] (got {k})")
    if batch_size < 1 or training_tokens < batch_size:
        raise ValueError(
            f"need 1 <= batch_size <= training_tokens (got {batch_size}, {training_tokens})"
        )
    if lr <= 0:
        raise ValueError(f"lr must be positive (got {lr})")
    ctx = int(tokens.shape[1])
    if skip_first_position and ctx < 2:
        raise ValueError("with skip_first_position=True, sequences need at least 2 tokens")

    train_tokens = tokens
    if eval_tokens is None:
        if not 0.0 <= held_out_fraction < 1.0:
            raise ValueError(f"held_out_fraction must be in [0, 1) (got {held_out_fraction})")
        n_held = round(tokens.shape[0] * held_out_fraction)
        if held_out_fraction > 0 and tokens.shape[0] >= 2:
            n_held = min(max(n_held, 1), tokens.shape[0] - 1)
        if n_held:
            train_tokens, eval_tokens = tokens[:-n_held], tokens[-n_held:]
    else:
        check_tokens(subject, eval_tokens, "eval_tokens")

    final_dir, work_dir, cleanup = _prepare_out_dir(out_dir, overwrite)
    dev = subject.device
    seqpos: tuple[int | None, ...] = (1, None) if skip_first_position else (None,)
    train_ctx = ctx - 1 if skip_first_position else ctx
    n_seq = int(train_tokens.shape[0])
    steps = training_tokens // batch_size
    dictionary_name = name or f"{subject.name}/{hook_name}/{architecture}-{d_sae}-s{seed}"

    sae_cfg: StandardTrainingSAEConfig | TopKTrainingSAEConfig
    common: dict[str, Any] = {
        "d_in": d_in,
        "d_sae": d_sae,
        "device": str(dev),
        "dtype": "float32",
        "normalize_activations": "expected_average_only_in",
    }
    if architecture == "topk":
        sae_cfg = TopKTrainingSAEConfig(k=k, **common)
    else:
        sae_cfg = StandardTrainingSAEConfig(l1_coefficient=l1_coefficient, **common)

    try:
        with _quiet_sae_lens(progress):
            cfg = LanguageModelSAERunnerConfig(
                sae=sae_cfg,
                model_name=subject.name,
                model_class_name="HookedTransformer",
                hook_name=hook_name,
                dataset_path="",
                is_dataset_tokenized=True,
                streaming=False,
                context_size=ctx,
                seqpos_slice=seqpos,
                prepend_bos=False,  # the tokens are used exactly as given
                model_from_pretrained_kwargs={},  # else every later load warns about them
                training_tokens=training_tokens,
                train_batch_size_tokens=batch_size,
                store_batch_size_prompts=max(1, min(32, n_seq)),
                # the mixing buffer holds n_batches_in_buffer * context tokens; keep >= 4 batches
                n_batches_in_buffer=max(20, math.ceil(4 * batch_size / train_ctx)),
                n_batches_for_norm_estimate=max(1, min(50, steps // 10)),
                lr=lr,
                lr_scheduler_name="constant",
                dead_feature_window=max(10, min(1000, steps // 10)),
                feature_sampling_window=max(20, min(2000, steps // 5)),
                device=str(dev),
                seed=seed,
                logger=LoggingConfig(log_to_wandb=False),
                n_checkpoints=0,
                checkpoint_path=None,
                save_final_checkpoint=False,
                output_path=str(work_dir),
                verbose=False,
            )
            dataset = Dataset.from_dict({"input_ids": train_tokens.cpu().numpy()})
            with _seeded(seed, dev):
                runner = _Runner(cfg, override_dataset=dataset, override_model=subject.model)
                runner.sae.cfg.metadata.workbench_subject_fingerprint = subject.fingerprint
                runner.sae.cfg.metadata.workbench_tokens_sha256 = state_dict_sha256(
                    {"tokens": train_tokens}
                )
                runner.sae.cfg.metadata.workbench_seed = seed
                runner.run()
        del runner
        if final_dir is not None:
            if final_dir.is_dir():
                shutil.rmtree(final_dir)
            elif final_dir.exists():
                final_dir.unlink()
            os.replace(work_dir, final_dir)
            work_dir = final_dir
        sae = SAE.load_from_disk(work_dir, device=str(dev))
        dictionary = make_dictionary(sae, name=dictionary_name, path=final_dir)
        stats = None
        if eval_tokens is not None and eval_tokens.shape[0] > 0:
            stats = evaluate_dictionary(
                subject, dictionary, eval_tokens, skip_first_position=skip_first_position
            )
        return dataclasses.replace(dictionary, stats=stats)
    finally:
        if cleanup is not None:
            shutil.rmtree(cleanup, ignore_errors=True)


def _prepare_out_dir(
    out_dir: str | Path | None, overwrite: bool
) -> tuple[Path | None, Path, Path | None]:
    """(final folder or None, folder the runner writes to, folder to delete at the end)."""
    if out_dir is None:
        tmp = Path(tempfile.mkdtemp(prefix="workbench-sae-"))
        return None, tmp / "sae", tmp
    final = Path(out_dir).expanduser().resolve()
    if final.exists() and (not final.is_dir() or any(final.iterdir())) and not overwrite:
        raise ValueError(
            f"out_dir {str(final)!r} exists and is not empty; pick a new folder or pass "
            "overwrite=True to replace it"
        )
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    return final, tmp / "sae", tmp


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's global RNG (SAE init, buffer shuffles) without disturbing the caller's.

    Gradients are switched on, so training also works when called under ``torch.no_grad()``.
    """
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.enable_grad():
        torch.manual_seed(seed)
        yield


_QUIET_WARNINGS = (
    r"The training dataset contains fewer samples",
    r"All samples in the training dataset have been exhausted",
    r"To copy construct from a tensor",  # the store re-wraps rows that are already tensors
)


@contextlib.contextmanager
def _quiet_sae_lens(progress: bool) -> Iterator[None]:
    """Silence SAE Lens's expected chatter (override notices, epoch warnings), bars optional."""
    from sae_lens import logger as sae_lens_logger
    from sae_lens.training import activation_scaler, sae_trainer

    level = sae_lens_logger.level
    sae_lens_logger.setLevel(logging.CRITICAL)  # incl. a logged-and-handled view() fallback
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(warnings.catch_warnings())
            for message in _QUIET_WARNINGS:
                warnings.filterwarnings("ignore", message=message)
            if not progress:
                for module in (sae_trainer, activation_scaler):
                    quiet = functools.partial(module.tqdm, disable=True)
                    stack.enter_context(mock.patch.object(module, "tqdm", quiet))
            yield
    finally:
        sae_lens_logger.setLevel(level)


class _Runner(LanguageModelSAETrainingRunner):
    """SAE Lens's runner without its SIGINT/SIGTERM handlers.

    The stock runner installs process-wide signal handlers around ``trainer.fit()`` (allowed only
    in the main thread, and left in place afterwards); with checkpoints off they would only
    re-raise the interrupt, so Ctrl-C keeps its usual ``KeyboardInterrupt`` here.
    """

    def run_trainer_with_interruption_handling(self, trainer: Any) -> Any:
        return trainer.fit()
