"""Content fingerprints (sha256) of weights, files and data.

Every artefact the workbench records (a subject's weights, a dictionary, a data set) is named by a
sha256 over its content, so a deployment record can be re-checked later against the files.
The weight fingerprint is independent of device and of the order parameters were registered in.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch


def _update_with_tensor(h: Any, name: str, t: torch.Tensor) -> None:
    shape = list(t.shape)
    flat = t.detach().to("cpu").contiguous().reshape(-1)  # 0-dim tensors cannot be viewed as bytes
    h.update(name.encode())
    h.update(str(t.dtype).encode())
    h.update(json.dumps(shape).encode())
    h.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")


def state_dict_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 over every tensor of a state dict (name, dtype, shape, bytes), sorted by name."""
    h = hashlib.sha256()
    for name in sorted(state):
        _update_with_tensor(h, name, state[name])
    return h.hexdigest()


def model_sha256(model: torch.nn.Module) -> str:
    """sha256 of a module's weights (parameters and buffers) as :func:`state_dict_sha256`."""
    return state_dict_sha256(model.state_dict())


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 of one file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def json_sha256(obj: Any) -> str:
    """sha256 of a JSON-able value in canonical form (sorted keys, no whitespace)."""
    return hashlib.sha256(
        json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def texts_sha256(texts: Iterable[str]) -> str:
    """sha256 of a sequence of texts (order matters), e.g. a prompt set or fine-tune data."""
    h = hashlib.sha256()
    for t in texts:
        b = t.encode()
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()
