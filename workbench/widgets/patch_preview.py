"""PatchPreview: what a patch does to a few prompts, with a strength slider.

The front end (``patch_preview.js``) shows a metrics strip (each behaviour metric before ->
after, with the change), a slider for the patch's strength, and one row per prompt: the greedy
continuation before and after the patch token by token, changed tokens marked, and the watched
dictionary features' activations before vs after. Moving the slider makes Python recompute the
preview (:func:`workbench.patches.preview` with ``patch.with_strength(s)``) while ``busy`` dims
the table; a failed recompute shows ``error`` and keeps the last payload.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import traitlets

from workbench import patches
from workbench.dictionaries import Dictionary
from workbench.features import FeatureSet
from workbench.subjects import Subject
from workbench.widgets._buffers import json_safe, one_line
from workbench.widgets._fallback import StaticFallbackWidget, patch_preview_png
from workbench.widgets._static import BundleESM, bundle_path

__all__ = ["PAYLOAD_KEYS", "PatchPreview"]

Recompute = Callable[[float], Mapping[str, Any]]

PAYLOAD_KEYS = (
    "prompts",
    "before",
    "after",
    "before_tokens",
    "after_tokens",
    "changed",
    "features",
    "before_acts",
    "after_acts",
    "metrics_before",
    "metrics_after",
    "patch",
    "strength",
)
"""The keys of a payload (:meth:`workbench.patches.Preview.to_dict`)."""


def _payload(p: Mapping[str, Any] | patches.Preview) -> dict[str, Any]:
    d = p.to_dict() if isinstance(p, patches.Preview) else dict(p)
    missing = [k for k in PAYLOAD_KEYS if k not in d]
    if missing:
        raise ValueError(
            f"the payload lacks {', '.join(missing)}; pass workbench.patches.preview(...) or "
            "its to_dict()"
        )
    out = json_safe(d)
    assert isinstance(out, dict)
    return out


def _check_range(strength_range: Sequence[float]) -> list[float]:
    r = [float(x) for x in strength_range]
    if len(r) != 3 or not r[0] < r[1] or not r[2] > 0:
        raise ValueError(
            f"strength_range must be (min, max, step) with min < max and step > 0, got "
            f"{tuple(strength_range)}"
        )
    return r


class PatchPreview(StaticFallbackWidget):
    """Greedy answers, watched features and behaviour metrics before and after a patch.

    Shows the metrics (``task_loss``, and ``misaligned``/``incoherent`` with a judge or for the
    organism) before -> after, a strength slider, and per prompt the continuations token by
    token with the changed tokens marked, next to the watched features' activations.

    Args:
        subject, patch, prompts: what :func:`workbench.patches.preview` runs.
        dictionary, features: the features to watch (see :func:`~workbench.patches.preview`).
        strength_range: ``(min, max, step)`` of the slider, widened to hold the patch's own
            strength if it lies outside.
        **preview_kwargs: more arguments of :func:`~workbench.patches.preview`
            (``n_features``, ``max_new_tokens``, ``samples_per_prompt``, ``seed``, ``judge``).

    The slider's value is ``strength`` (the patch's own to start with); setting it, from the
    front end or from Python, recomputes the payload with ``patch.with_strength(strength)``.
    :meth:`from_payload` builds one from a precomputed payload instead.

    Raises:
        FrontEndNotBuiltError: the front end bundle is missing (the message says how to build it).
    """

    _esm = BundleESM("patch_preview")

    payload = traitlets.Dict(help="workbench.patches.Preview.to_dict()").tag(sync=True)
    strength = traitlets.Float(1.0, help="the patch's strength (slider)").tag(sync=True)
    strength_range = traitlets.List(
        traitlets.Float(), default_value=[0.0, 2.0, 0.1], minlen=3, maxlen=3
    ).tag(sync=True)
    busy = traitlets.Bool(False, help="true while Python recomputes").tag(sync=True)
    error = traitlets.Unicode("", help="a failed recompute's message").tag(sync=True)

    _png_traits = ("payload",)

    def __init__(
        self,
        subject: Subject,
        patch: patches.Patch,
        prompts: Sequence[str],
        *,
        dictionary: Dictionary | None = None,
        features: FeatureSet | None = None,
        strength_range: Sequence[float] = (0.0, 2.0, 0.1),
        **preview_kwargs: Any,
    ) -> None:
        bundle_path("patch_preview")
        prompts = list(prompts) if not isinstance(prompts, str) else prompts

        def recompute(strength: float) -> dict[str, Any]:
            return patches.preview(
                subject,
                patch.with_strength(strength),
                prompts,
                dictionary=dictionary,
                features=features,
                **preview_kwargs,
            ).to_dict()

        first = patches.preview(
            subject, patch, prompts, dictionary=dictionary, features=features, **preview_kwargs
        )
        self._setup(first, recompute, strength_range)

    def _setup(
        self,
        payload: Mapping[str, Any] | patches.Preview,
        recompute: Recompute | None,
        strength_range: Sequence[float],
        **kwargs: Any,
    ) -> None:
        data = _payload(payload)
        self._recompute = recompute
        self._ready = False  # the initial strength is the payload's own: nothing to recompute
        strength = float(data["strength"]) if data.get("strength") is not None else 1.0
        lo, hi, step = _check_range(strength_range)
        StaticFallbackWidget.__init__(
            self,
            payload=data,
            strength=strength,
            # widened to hold the starting strength, or the slider would clamp (and recompute) it
            strength_range=[min(lo, strength), max(hi, strength), step],
            **kwargs,
        )
        self._ready = True

    @classmethod
    def from_payload(
        cls,
        payload: Mapping[str, Any] | patches.Preview,
        recompute: Recompute | None = None,
        *,
        strength_range: Sequence[float] = (0.0, 2.0, 0.1),
        **kwargs: Any,
    ) -> PatchPreview:
        """A preview of a precomputed payload (a :class:`workbench.patches.Preview` or its
        ``to_dict()``). ``recompute(strength) -> payload dict`` serves the slider; without it
        the widget is static and a strength change only sets ``error``."""
        bundle_path("patch_preview")
        self = cls.__new__(cls)
        self._setup(payload, recompute, strength_range, **kwargs)
        return self

    @traitlets.observe("strength")
    def _on_strength(self, change: Any) -> None:
        if self._ready:
            self.recompute(float(change["new"]))

    def recompute(self, strength: float) -> bool:
        """Recompute the payload at ``strength`` (what a slider move does): ``busy`` while it
        runs, then the new ``payload`` and an empty ``error``; on failure ``error`` holds a
        one-line message and the old payload stays. Returns whether it succeeded."""
        if self._recompute is None:
            self.error = (
                "this preview is static (built from a payload without recompute=): "
                "the strength cannot change it"
            )
            return False
        self.busy = True
        try:
            payload = _payload(self._recompute(float(strength)))
        except Exception as err:
            self.error = one_line(err)
            self.log.error("patch preview at strength %s failed: %s", strength, err)
            return False
        else:
            with self.hold_sync():
                self.payload = payload
                self.error = ""
            return True
        finally:
            self.busy = False

    # ------------------------------------------------------------------ fallback

    def _render_png(self) -> bytes:
        return patch_preview_png(self.payload)

    def _summary(self) -> str:
        kind = (self.payload.get("patch") or {}).get("kind", "patch")
        n = len(self.payload.get("prompts") or [])
        changed = sum(any(row) for row in self.payload.get("changed") or [])
        return (
            f"PatchPreview: {kind} at strength {self.strength:g}, {changed} of {n} prompts "
            "answer differently"
        )
