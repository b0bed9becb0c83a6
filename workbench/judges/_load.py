"""``load_judge``: a judge from the one-string parameter a notebook or the CLI takes.

Accepted forms:

* ``"exact"`` or ``"organism"``: the organism's exact grammar judge (:meth:`ExactJudge.organism`);
* ``"openai:MODEL@URL"``: an OpenAI-compatible endpoint, e.g.
  ``"openai:gpt-4o-2024-08-06@https://api.openai.com/v1"`` or
  ``"openai:organism-exact@http://127.0.0.1:8000/v1"``; ``"openai:MODEL"`` alone uses
  ``https://api.openai.com/v1``. The model ends at the last ``@`` before ``http://`` or
  ``https://``;
* a path to a local folder written by ``save_pretrained``: a local model (:class:`HFJudge`);
  ``"hf:NAME_OR_FOLDER"`` says so explicitly (and allows a hub name);
* a :class:`Judge` instance: returned as it is.

Keyword options go to the judge's constructor (``cache_dir=``, ``max_requests_per_second=``,
``device=``, thresholds...).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from workbench.judges._exact import ExactJudge
from workbench.judges._hf import HFJudge
from workbench.judges._openai import OpenAIJudge
from workbench.judges._protocol import Judge

#: The endpoint of ``"openai:MODEL"`` with no ``@URL``.
OPENAI_URL = "https://api.openai.com/v1"

FORMS = (
    "'exact' (or 'organism'), 'openai:MODEL@URL' (e.g. "
    "'openai:gpt-4o@https://api.openai.com/v1'), 'openai:MODEL', a local model folder, "
    "'hf:NAME_OR_FOLDER', or a Judge instance"
)

_OPENAI = re.compile(r"openai:(?P<model>.+?)(?:@(?P<url>https?://\S+))?", re.DOTALL)


def load_judge(spec: Judge | str | os.PathLike[str], **options: Any) -> Judge:
    """The judge ``spec`` names (see the module docstring for the forms).

    Raises:
        ValueError: ``spec`` is none of the forms (the message lists them).
    """
    if isinstance(spec, Judge) and not isinstance(spec, str):
        if options:
            raise ValueError(
                f"options {sorted(options)} apply only when the judge is named by a string; "
                "configure the Judge instance itself"
            )
        return spec
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str):
        raise TypeError(f"a judge is named by a string or given as a Judge; got "
                        f"{type(spec).__name__}. Accepted: {FORMS}")
    text = spec.strip()
    if text.lower() in ("exact", "organism", "organism-exact"):
        return ExactJudge.organism(**options)
    if text.startswith("openai:"):
        m = _OPENAI.fullmatch(text)
        model = m.group("model").strip() if m else ""
        if not m or not model or "@http" in model:
            raise ValueError(f"cannot read judge {spec!r}: write 'openai:MODEL@URL', e.g. "
                             "'openai:gpt-4o@https://api.openai.com/v1'")
        return OpenAIJudge(m.group("url") or OPENAI_URL, model, **options)
    if text.startswith("hf:") and text[3:].strip():
        return HFJudge(text[3:].strip(), **options)
    if text and Path(text).expanduser().is_dir():
        return HFJudge(text, **options)
    raise ValueError(f"unknown judge {spec!r}; accepted: {FORMS}")
