"""Tiny random SAEs in SAE Lens format, for tests that need a dictionary in seconds."""

from __future__ import annotations

from pathlib import Path

import torch
from sae_lens import StandardSAE, StandardSAEConfig
from sae_lens.saes.sae import SAEMetadata

from workbench.dictionaries import Dictionary, load_dictionary


def small_dictionary(
    folder: Path, d_in: int, seed: int = 0, hook: str = "blocks.0.hook_resid_post",
    d_sae: int = 48, *, normalize: str = "none", reshape: str = "none",
    head: int | None = None,
) -> Dictionary:
    """A random ReLU SAE (``d_sae`` features at ``hook``) saved to ``folder`` in SAE Lens format
    and opened through the workbench (so its settings survive SAE Lens's cfg.json): input
    normalisation ``normalize``, activation layout ``reshape`` (``"hook_z"``), one head
    ``head``."""
    meta = SAEMetadata(hook_name=hook, **({} if head is None else {"hook_head_index": head}))
    sae = StandardSAE(
        StandardSAEConfig(d_in=d_in, d_sae=d_sae, normalize_activations=normalize,
                          reshape_activations=reshape, metadata=meta)
    )
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sae.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.02 if name == "b_enc" else 0.3))
    sae.save_model(folder)
    return load_dictionary(folder, device="cpu")
