"""Opening dictionaries: SAE Lens folders, SAE Lens's pretrained registry, the organism's own."""

from __future__ import annotations

from pathlib import Path

import torch
from sae_lens import SAE

from workbench._device import resolve_device
from workbench._hub import hf_hub_cache, hub_settings, offline_error_text, probe_hub
from workbench.dictionaries._dictionary import (
    Dictionary,
    check_compatible,
    load_folder,
    make_dictionary,
)
from workbench.dictionaries._organism import default_dictionary
from workbench.subjects import Subject


def load_dictionary(
    spec: str | Path | tuple[str, str],
    subject: Subject | None = None,
    device: str | torch.device = "auto",
    *,
    hook_name: str | None = None,
) -> Dictionary:
    """Open a dictionary.

    Args:
        spec: a local SAE Lens folder (``cfg.json`` + ``sae_weights.safetensors``);
            ``"release/sae_id"`` or ``("release", "sae_id")`` from SAE Lens's pretrained registry
            (read from the Hugging Face cache, or the hub when reachable); or ``"organism"``,
            the embedded organism's own dictionary.
        subject: when given, the dictionary is checked against it (:func:`check_compatible`).
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``...
        hook_name: the hook to use when the SAE's ``cfg.json`` does not record one
            (or to override it).

    Raises:
        ValueError: nothing loadable under ``spec``, the hub is unreachable and the files are not
            cached, or the dictionary does not fit ``subject``; the message says what to do.
    """
    dev = resolve_device(device)
    if isinstance(spec, str) and spec == "organism":
        seed = 0 if subject is None or subject.organism is None else subject.organism.seed
        config = None if subject is None or subject.organism is None else subject.organism.config
        dictionary = default_dictionary(seed, config=config, device=dev)
    elif isinstance(spec, tuple):
        if len(spec) != 2 or not all(isinstance(s, str) for s in spec):
            raise ValueError(f"bad dictionary spec {spec!r}: write ('release', 'sae_id')")
        dictionary = _load_pretrained(spec[0], spec[1], dev, hook_name)
    else:
        path = Path(spec).expanduser()
        if isinstance(spec, Path) or path.exists() or _looks_like_path(spec):
            dictionary = load_folder(path, dev, hook_name)
        else:
            release, sae_id = _split_release(str(spec))
            dictionary = _load_pretrained(release, sae_id, dev, hook_name)
    if subject is not None:
        check_compatible(subject, dictionary)
    return dictionary


def _looks_like_path(spec: str) -> bool:
    return spec.startswith(("/", "./", "../", "~")) or spec.endswith("/")


def _split_release(spec: str) -> tuple[str, str]:
    """``"release/sae_id"`` -> (release, sae_id); sae ids may contain slashes, releases rarely."""
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    known = sorted(get_pretrained_saes_directory(), key=len, reverse=True)
    for release in known:
        if spec.startswith(release + "/") and len(spec) > len(release) + 1:
            return release, spec[len(release) + 1 :]
    if "/" not in spec:
        raise ValueError(
            f"unknown dictionary {spec!r}: not a local folder, not 'organism', and not "
            "'release/sae_id' of SAE Lens's pretrained registry "
            "(sae_lens.loading.pretrained_saes_directory.get_pretrained_saes_directory())"
        )
    release, sae_id = spec.split("/", 1)
    return release, sae_id


def _load_pretrained(
    release: str, sae_id: str, device: torch.device, hook_name: str | None
) -> Dictionary:
    from sae_lens.loading.pretrained_saes_directory import (
        get_pretrained_saes_directory,
        get_repo_id_and_folder_name,
    )

    directory = get_pretrained_saes_directory()
    if release not in directory and "/" not in release:
        close = [r for r in directory if release.split("-")[0] in r][:5]
        raise ValueError(
            f"unknown SAE Lens release {release!r} (and no local folder by that name); "
            f"known releases include {', '.join(close or list(directory)[:5])}; the full list is "
            "sae_lens.loading.pretrained_saes_directory.get_pretrained_saes_directory() "
            "(a Hugging Face repo id goes in the tuple form ('user/repo', 'sae_id'))"
        )
    if release in directory and sae_id not in directory[release].saes_map:
        ids = list(directory[release].saes_map)
        raise ValueError(
            f"SAE Lens release {release!r} has no sae_id {sae_id!r}; valid ids include "
            f"{', '.join(ids[:5])}{', ...' if len(ids) > 5 else ''}"
        )
    repo_id, folder = get_repo_id_and_folder_name(release, sae_id)
    cache_dir = hf_hub_cache()
    access = probe_hub()
    try:
        with hub_settings(cache_dir, cache_only=access.offline):
            sae = SAE.from_pretrained(release, sae_id, device=str(device))
    except OSError as err:  # LocalEntryNotFoundError, OfflineModeIsEnabled, ...
        if not access.offline:
            raise
        raise ValueError(
            offline_error_text(
                f"SAE Lens release {release!r} sae_id {sae_id!r} (Hugging Face repo "
                f"{repo_id!r}, folder {folder!r})",
                access,
                cache_dir,
                repo_id=repo_id,
                include=f"{folder}/*" if folder else None,
                first_load=f"SAE.from_pretrained({release!r}, {sae_id!r})",
                instead="Or save the SAE with sae.save_model(folder) and pass the folder.",
                error=err,
            )
        ) from err
    return make_dictionary(sae, name=f"{release}/{sae_id}", path=None, hook_name=hook_name)
