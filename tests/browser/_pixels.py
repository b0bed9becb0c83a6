"""Screenshot pixel counting for the browser tests (Pillow when installed, else the browser).

``non_background_fraction(png)`` is the fraction of pixels that differ from the image's dominant
colour (its background) by more than ``tol`` in any channel. Pillow decodes the PNG when it is
importable; otherwise the page itself decodes it (an ``<img>`` drawn into a 2-D canvas), so the
check does not depend on an optional package.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np

_JS_FRACTION = """
async ([dataUrl, tol]) => {
  const img = new Image();
  img.src = dataUrl;
  await img.decode();
  const c = document.createElement("canvas");
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const ctx = c.getContext("2d");
  ctx.drawImage(img, 0, 0);
  const d = ctx.getImageData(0, 0, c.width, c.height).data;
  const counts = new Map();
  for (let i = 0; i < d.length; i += 4) {
    const key = (d[i] << 16) | (d[i + 1] << 8) | d[i + 2];
    counts.set(key, (counts.get(key) || 0) + 1);
  }
  let bg = 0, best = -1;
  for (const [k, v] of counts) if (v > best) { best = v; bg = k; }
  const br = (bg >> 16) & 255, bgG = (bg >> 8) & 255, bb = bg & 255;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) {
    const off = Math.max(Math.abs(d[i] - br), Math.abs(d[i + 1] - bgG), Math.abs(d[i + 2] - bb));
    if (off > tol) n++;
  }
  return n / (d.length / 4);
}
"""


def pillow_fraction(png: bytes, tol: int = 24) -> float:
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).reshape(-1, 3).astype(np.int32)
    packed = (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]
    values, counts = np.unique(packed, return_counts=True)
    bg = int(values[int(np.argmax(counts))])
    background = np.array([(bg >> 16) & 255, (bg >> 8) & 255, bg & 255], dtype=np.int32)
    return float((np.abs(rgb - background).max(axis=1) > tol).mean())


def browser_fraction(png: bytes, page: Any, tol: int = 24) -> float:
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    return float(page.evaluate(_JS_FRACTION, [url, tol]))


def non_background_fraction(png: bytes, page: Any, tol: int = 24) -> float:
    try:
        import PIL  # noqa: F401
    except ImportError:
        return browser_fraction(png, page, tol)
    return pillow_fraction(png, tol)
