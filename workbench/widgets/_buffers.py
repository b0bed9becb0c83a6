"""Binary buffers for the widgets: arrays become little-endian float32 bytes.

The widget contract sends large arrays as ``traitlets.Bytes`` (ipywidgets ships them as binary
buffers, never as JSON lists). :func:`encode_points` turns ``[n, 2]`` coordinates into
interleaved ``x0, y0, x1, y1, ...`` float32 normalised into ``[-1, 1]`` with the aspect ratio kept;
:func:`encode_values` turns an ``[n]`` colour column into float32 (``NaN`` = missing), and
:func:`value_range` picks the robust ``[lo, hi]`` the front end maps onto the colour map.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "as_numpy",
    "encode_points",
    "encode_values",
    "normalise_points",
    "value_range",
]

_LE_FLOAT32 = np.dtype("<f4")


def as_numpy(x: Any, name: str) -> np.ndarray:
    """``x`` (a numpy array, torch tensor or nested sequence) as a float64 numpy array."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"{name} must be numeric (a numpy array, torch tensor or list of numbers), got "
            f"{type(x).__name__}"
        ) from err
    return arr


def normalise_points(coords: Any, name: str = "coords") -> np.ndarray:
    """``[n, 2]`` coordinates scaled into ``[-1, 1]``, aspect ratio kept, as float32.

    The midpoint of the bounding box goes to the origin and both axes are divided by half the
    larger extent, so the longer side spans exactly ``[-1, 1]`` and the shorter one is centred
    inside it. A single point, or points that all coincide, map to ``0``.

    Raises:
        ValueError: not an ``[n, 2]`` array, or NaN / infinite coordinates.
    """
    xy = as_numpy(coords, name)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(
            f"{name} must have shape [n, 2] (one x, y row per feature), got {tuple(xy.shape)}; "
            "project a decoder first, e.g. workbench.geometry.project(W_dec)"
        )
    bad = ~np.isfinite(xy).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(
            f"{name} has NaN or infinite coordinates in {len(rows)} rows (first: "
            f"{rows[:5].tolist()}); drop or fix those rows before plotting"
        )
    if xy.shape[0] == 0:
        return np.zeros((0, 2), dtype=np.float32)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    centre = (lo + hi) / 2.0
    half = float((hi - lo).max()) / 2.0
    if half <= 0.0:
        return np.zeros(xy.shape, dtype=np.float32)
    out = (xy - centre) / half
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def encode_points(coords: Any, name: str = "coords") -> bytes:
    """Normalised coordinates (:func:`normalise_points`) as interleaved little-endian float32
    bytes, ``8 n`` long."""
    return points_bytes(normalise_points(coords, name))


def points_bytes(normalised: np.ndarray) -> bytes:
    """Already-normalised ``[n, 2]`` points as interleaved little-endian float32 bytes."""
    return np.ascontiguousarray(normalised, dtype=_LE_FLOAT32).tobytes()


def encode_values(values: Any, name: str = "values") -> bytes:
    """An ``[n]`` column as little-endian float32 bytes, ``4 n`` long (NaN kept: missing)."""
    v = as_numpy(values, name)
    if v.ndim != 1:
        raise ValueError(f"{name} must be one value per feature, shape [n], got {tuple(v.shape)}")
    with np.errstate(over="ignore"):
        return np.ascontiguousarray(v, dtype=_LE_FLOAT32).tobytes()


def value_range(values: Any, lower: float = 1.0, upper: float = 99.0) -> list[float]:
    """Robust ``[lo, hi]`` of a colour column, with ``lo < hi`` guaranteed.

    The ``lower``/``upper`` percentiles of the finite values (1st and 99th by default); if they
    coincide, the finite min and max; if those coincide too (one distinct value ``v``),
    ``[v - 0.5, v + 0.5]``; with no finite value at all, ``[0, 1]``.
    """
    v = as_numpy(values, "values").ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return [0.0, 1.0]
    lo, hi = (float(x) for x in np.percentile(v, [lower, upper]))
    if lo < hi:
        return [lo, hi]
    lo, hi = float(v.min()), float(v.max())
    if lo < hi:
        return [lo, hi]
    return [lo - 0.5, lo + 0.5]


def json_float(x: float | None) -> float | None:
    """``x`` as a JSON-safe float: ``None`` for ``None``, NaN or infinities."""
    if x is None:
        return None
    f = float(x)
    return f if math.isfinite(f) else None


def json_safe(obj: Any) -> Any:
    """A copy of a JSON-like structure with non-finite floats replaced by ``None`` and tuples
    turned into lists (what ipywidgets can serialise without producing invalid JSON)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, bool | int | str) or obj is None:
        return obj
    if isinstance(obj, float | np.floating):
        return json_float(float(obj))
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.ndarray | torch.Tensor):
        return json_safe(as_numpy(obj, "array").tolist())
    return obj


def one_line(err: BaseException, limit: int = 300) -> str:
    """``"Type: first line of the message"``, at most ``limit`` characters."""
    text = str(err).strip().splitlines()
    msg = f"{type(err).__name__}: {text[0]}" if text else type(err).__name__
    return msg if len(msg) <= limit else msg[: limit - 1] + "…"


def as_index_list(indices: Sequence[Any] | np.ndarray | torch.Tensor, name: str) -> list[int]:
    """A sequence of integer-valued indices as a list of Python ints."""
    if isinstance(indices, torch.Tensor):
        indices = indices.detach().cpu().numpy()
    out = []
    for i in np.asarray(indices).ravel().tolist():
        if isinstance(i, bool) or not float(i).is_integer():
            raise ValueError(f"{name} must hold integer feature indices, got {i!r}")
        out.append(int(i))
    return out
