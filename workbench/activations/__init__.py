"""Activations: stream a prompt set through a subject to one hook, and summarise the features.

Every function here runs the model **only as far as the hook it needs**
(:func:`workbench.execution.run_to_hook`: blocks ``0..L`` for a hook inside block ``L``), in
batches of right-padded prompts, so memory is bounded by the batch and not by the prompt set.

* :func:`collect` encodes every real token with a dictionary and accumulates per-feature
  statistics (:class:`FeatureStats`: mean, firing frequency, max, and a running top-k of the most
  activating contexts per feature), with the dense token x feature matrix only on request.
* :func:`hook_activations` and :func:`feature_activations` pool each prompt to one vector (mean
  over its tokens, or its last token): the raw hook activation or the dictionary's features. These
  feed :mod:`workbench.features` (contrasts between prompt sets).

Conventions:

* **Position 0 is skipped** by default (``skip_bos=True``): prompts start with ``<bos>``, whose
  residual activation is an attention-sink outlier, and the dictionaries are trained without it
  (see :mod:`workbench.dictionaries`). Padding is never counted.
* A feature **fires** on a token when its activation is ``> 0``.
* Positions count tokens of the encoded prompt, ``<bos>`` included (so the first word is 1).
* The model runs on the subject's device (CUDA when the subject lives there); results come back
  on the CPU. Organism-sized models run with one CPU thread (faster than two on small CPUs).
"""

from workbench.activations._collect import FeatureStats, TopContext, collect
from workbench.activations._pooled import feature_activations, hook_activations
from workbench.activations._stream import Batch, Pool, stop_layer, stream

__all__ = [
    "Batch",
    "FeatureStats",
    "Pool",
    "TopContext",
    "collect",
    "feature_activations",
    "hook_activations",
    "stop_layer",
    "stream",
]
