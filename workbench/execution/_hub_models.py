"""TransformerLens model names (``"gpt2"``, ``"pythia-70m"``...) loaded from the Hugging Face hub.

Used by :func:`workbench.subjects.load_subject` for a spec that is not ``"organism"`` and not a
folder. The hub repo behind the name is resolved and the local cache checked first; without the
hub (``HF_HUB_OFFLINE=1`` or no answer to :func:`workbench._hub.probe_hub`) the load is
cache-only, and a name whose files are not cached fails at once with the fix
(:func:`workbench._hub.offline_error_text`).
"""

from __future__ import annotations

import contextlib
import difflib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from transformer_lens import HookedTransformer

from workbench._hub import hf_hub_cache, is_cached, offline_error_text, probe_hub
from workbench.execution._local_models import (
    PROCESSING,
    WEIGHT_FILES,
    quiet_hooked_transformer_deprecation,
    with_bos,
)

#: TransformerLens repos whose loader lists the repo's files on the hub (no offline load).
_HUB_ONLY_PREFIXES = ("NeelNanda/", "ArthurConmy/", "Baidicoot/")

#: What works without any download, the last sentence of the offline error.
_WITHOUT_DOWNLOAD = (
    "Without any download, load_subject('organism') gives the embedded model organism, and "
    "a local model folder (config.json + weights + tokenizer) loads without the hub."
)


def _missing_from_cache(official: str, cache_dir: Path) -> list[str]:
    """What a cache-only load of the hub repo ``official`` would miss (empty: all there)."""
    if official.startswith(_HUB_ONLY_PREFIXES):
        return ["(TransformerLens lists this repo's files on the hub: it has no cache-only load)"]
    missing = []
    if not is_cached(official, "config.json", cache_dir):
        missing.append("config.json")
    if not any(is_cached(official, f, cache_dir) for f in WEIGHT_FILES):
        missing.append("weights (" + " / ".join(WEIGHT_FILES) + ")")
    return missing


def _unknown_name_error(name: str) -> ValueError:
    """A ValueError for a spec that is neither a folder nor a TransformerLens model name."""
    from transformer_lens.supported_models import MODEL_ALIASES, OFFICIAL_MODEL_NAMES

    display: dict[str, str] = {}
    for official in OFFICIAL_MODEL_NAMES:
        display.setdefault(official.lower(), official)
        for alias in MODEL_ALIASES.get(official, []):
            display.setdefault(alias.lower(), alias)
    close = difflib.get_close_matches(name.lower(), list(display), n=5, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(display[c]) for c in close)}?" if close else ""
    looks_like_path = os.sep in name or "/" in name or name.startswith((".", "~"))
    what = (
        f"there is no folder {name!r}, and it is not a TransformerLens model name either."
        if looks_like_path
        else f"{name!r} is not a TransformerLens model name (nor an existing folder)."
    )
    return ValueError(
        f"{what}{hint} load_subject accepts "
        "'organism' (or 'organism:SEED') for the embedded model organism, a TransformerLens "
        "name such as 'gpt2' (list: transformer_lens.supported_models.OFFICIAL_MODEL_NAMES), or "
        "a local Hugging Face model folder (config.json + weights + tokenizer files)."
    )


@contextlib.contextmanager
def _hub_offline(offline: bool) -> Iterator[None]:
    """Put ``huggingface_hub`` in offline mode for the block when the hub is unreachable.

    ``local_files_only`` does not reach every lookup: with ``peft`` installed, transformers'
    ``AutoModel.from_pretrained`` asks the hub for an ``adapter_config.json`` without it, and
    retries for half a minute when nothing answers. Offline mode (read at call time from
    ``huggingface_hub.constants``) makes that lookup give up at once.
    """
    if not offline:
        yield
        return
    import huggingface_hub.constants as hub_constants

    old = hub_constants.HF_HUB_OFFLINE
    hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hub_constants.HF_HUB_OFFLINE = old


def load_transformer_lens(
    name: str, device: torch.device, dtype: torch.dtype = torch.float32
) -> tuple[HookedTransformer, Any]:
    """Load a TransformerLens model name (e.g. ``"gpt2"``): the model and its tokenizer.

    The hub repo behind the name is resolved first and the local Hugging Face cache checked for
    its config.json and weights; then the hub is probed once with a short timeout (not under
    ``HF_HUB_OFFLINE=1``). Missing files with an unreachable hub raise at once, instead of after
    ``huggingface_hub``'s half-minute of retries. With everything cached and the hub unreachable
    (or ``HF_HUB_OFFLINE=1``), the load is cache-only (``local_files_only``). Weights are loaded
    unprocessed (see ``PROCESSING``).

    Raises:
        ValueError: unknown name (with close matches), or weights missing offline (with the fix).
    """
    from transformer_lens.loading_from_pretrained import get_official_model_name

    try:
        official = get_official_model_name(name)
    except ValueError:
        raise _unknown_name_error(name) from None

    cache_dir = hf_hub_cache()
    missing = _missing_from_cache(official, cache_dir)
    access = probe_hub()

    def offline_error(absent: list[str], error: OSError | None = None) -> ValueError:
        return ValueError(
            offline_error_text(
                f"TransformerLens model {name!r} (Hugging Face repo {official!r})",
                access,
                cache_dir,
                repo_id=official,
                first_load=f"HookedTransformer.from_pretrained({name!r})",
                instead=_WITHOUT_DOWNLOAD,
                missing=absent,
                error=error,
            )
        )

    if access.offline and missing:
        raise offline_error(missing)

    from transformers import AutoTokenizer

    hub_kwargs: dict[str, Any] = {"cache_dir": str(cache_dir)}
    if access.offline:
        hub_kwargs["local_files_only"] = True
    try:
        with _hub_offline(access.offline):
            tokenizer = with_bos(
                lambda **extra: AutoTokenizer.from_pretrained(official, **hub_kwargs, **extra)
            )
            with quiet_hooked_transformer_deprecation():
                model = HookedTransformer.from_pretrained(
                    name,
                    device=str(device),
                    dtype=dtype,
                    tokenizer=tokenizer,
                    **PROCESSING,
                    **hub_kwargs,
                )
    except OSError as err:
        if not access.offline:
            raise
        raise offline_error([], err) from err
    return model, model.tokenizer or tokenizer
