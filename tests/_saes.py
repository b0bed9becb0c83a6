"""Tiny random SAEs in SAE Lens format, for tests that need a dictionary in seconds."""

from __future__ import annotations

from pathlib import Path

import torch
from sae_lens import StandardSAE, StandardSAEConfig
from sae_lens.saes.sae import SAEMetadata

from workbench.dictionaries import Dictionary, load_dictionary


def small_dictionary(
    folder: Path, d_in: int, seed: int = 0, hook: str = "blocks.0.hook_resid_post"
) -> Dictionary:
    """A random ReLU SAE with 48 features at ``hook``, saved to ``folder`` and loaded back."""
    sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=48, metadata=SAEMetadata(hook_name=hook)))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sae.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.02 if name == "b_enc" else 0.3))
    sae.save_model(folder)
    return load_dictionary(folder, device="cpu")
