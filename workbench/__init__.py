"""workbench: an open-source research workbench for alignment engineering.

``import workbench as wb`` gives the verbs and the nouns::

    subject = wb.load_subject("organism")            # or wb.Organism(seed=3, config=...)
    dictionary = wb.load_dictionary("organism", subject)
    spec = wb.SteeringVector(layer=0)                # or wb.LoRA(rank=1), wb.Full()
    risk = wb.forecast(subject, dictionary, pairs, spec=spec, watch=features, eval_prompts=prompts)
    tuned = wb.finetune(subject, pairs, spec)
    report = wb.audit(subject, tuned, dictionary, prompts, risk)
    with wb.Ablate(wb.mean_difference(tuned, bad, good, hook)).applied(tuned) as patched: ...

The layers, bottom up (each imports only those below it; ``tests/test_imports.py`` checks):
``execution`` (every TransformerLens call) and ``organism`` (the embedded model, a provider);
``subjects``; ``dictionaries``; ``data`` and ``specs``; ``activations``, ``geometry``,
``features``, ``neighborhoods``; ``behaviour``; ``forecasts``, ``finetunes``, ``audits``;
``patches``, ``context``, ``experiments``, ``analysis``; ``record``, ``widgets``; ``runs``,
``reports``, ``server``, ``cli``.

Names are imported lazily, so ``import workbench`` stays fast (SAE Lens loads on first use).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Subject": "workbench.subjects",
    "load_subject": "workbench.subjects",
    "load_tuned": "workbench.subjects",
    "Organism": "workbench.organism",
    "SteeringVector": "workbench.specs",
    "LoRA": "workbench.specs",
    "Full": "workbench.specs",
    "Dictionary": "workbench.dictionaries",
    "DictionaryStats": "workbench.dictionaries",
    "load_dictionary": "workbench.dictionaries",
    "train_dictionary": "workbench.dictionaries",
    "evaluate_dictionary": "workbench.dictionaries",
    "finetune": "workbench.finetunes",
    "BehaviourRates": "workbench.behaviour",
    "judged_rates": "workbench.behaviour",
    "FeatureStats": "workbench.activations",
    "collect": "workbench.activations",
    "feature_activations": "workbench.activations",
    "hook_activations": "workbench.activations",
    "Neighbors": "workbench.geometry",
    "neighbors": "workbench.geometry",
    "project": "workbench.geometry",
    "feature_dimensionality": "workbench.geometry",
    "interference": "workbench.geometry",
    "FeatureSet": "workbench.features",
    "contrast": "workbench.features",
    "FeatureNeighborhood": "workbench.neighborhoods",
    "neighborhood": "workbench.neighborhoods",
    "alignment_margin": "workbench.behaviour",
    "Forecast": "workbench.forecasts",
    "forecast": "workbench.forecasts",
    "RateReadout": "workbench.rate_forecasts",
    "RateForecast": "workbench.rate_forecasts",
    "rate_readout": "workbench.rate_forecasts",
    "rate_forecast": "workbench.rate_forecasts",
    "Audit": "workbench.audits",
    "audit": "workbench.audits",
    "Direction": "workbench.patches",
    "Steer": "workbench.patches",
    "Ablate": "workbench.patches",
    "AblateUpdate": "workbench.patches",
    "Orthogonalize": "workbench.patches",
    "ResidualMap": "workbench.patches",
    "Preview": "workbench.patches",
    "mean_difference": "workbench.patches",
    "from_features": "workbench.patches",
    "from_responses": "workbench.patches",
    "derive_directions": "workbench.patches",
    "select_direction": "workbench.patches",
    "choose_patches": "workbench.patches",
    "PatchChoice": "workbench.patches",
    "orthogonal_to": "workbench.patches",
    "tradeoff": "workbench.patches",
    "random_direction": "workbench.patches",
    "fit_map": "workbench.patches",
    "transfer": "workbench.patches",
    "preview": "workbench.patches",
    "PatchEfficacy": "workbench.patches",
    "TransferEfficacy": "workbench.patches",
    "patch_efficacy": "workbench.patches",
    "transfer_efficacy": "workbench.patches",
    "ContextAudit": "workbench.context",
    "Framing": "workbench.context",
    "context_audit": "workbench.context",
    "Setup": "workbench.analysis",
    "setup": "workbench.analysis",
    "Calibration": "workbench.calibration",
    "Expected": "workbench.calibration",
    "Prediction": "workbench.predictors",
    "predict": "workbench.predictors",
    "reference_calibration": "workbench.experiments.family",
}

__all__ = [
    "Ablate",
    "AblateUpdate",
    "Audit",
    "BehaviourRates",
    "Calibration",
    "ContextAudit",
    "Dictionary",
    "DictionaryStats",
    "Direction",
    "Expected",
    "FeatureNeighborhood",
    "FeatureSet",
    "FeatureStats",
    "Forecast",
    "Framing",
    "Full",
    "LoRA",
    "Neighbors",
    "Organism",
    "Orthogonalize",
    "PatchChoice",
    "PatchEfficacy",
    "Prediction",
    "Preview",
    "RateForecast",
    "RateReadout",
    "ResidualMap",
    "Setup",
    "Steer",
    "SteeringVector",
    "Subject",
    "TransferEfficacy",
    "alignment_margin",
    "audit",
    "choose_patches",
    "collect",
    "context_audit",
    "contrast",
    "derive_directions",
    "evaluate_dictionary",
    "feature_activations",
    "feature_dimensionality",
    "finetune",
    "fit_map",
    "forecast",
    "from_features",
    "from_responses",
    "hook_activations",
    "interference",
    "judged_rates",
    "load_dictionary",
    "load_subject",
    "load_tuned",
    "mean_difference",
    "neighborhood",
    "neighbors",
    "orthogonal_to",
    "patch_efficacy",
    "predict",
    "preview",
    "project",
    "random_direction",
    "rate_forecast",
    "rate_readout",
    "reference_calibration",
    "select_direction",
    "setup",
    "tradeoff",
    "train_dictionary",
    "transfer",
    "transfer_efficacy",
]

if TYPE_CHECKING:
    from workbench.activations import (
        FeatureStats,
        collect,
        feature_activations,
        hook_activations,
    )
    from workbench.analysis import Setup, setup
    from workbench.audits import Audit, audit
    from workbench.behaviour import BehaviourRates, alignment_margin, judged_rates
    from workbench.calibration import Calibration, Expected
    from workbench.context import ContextAudit, Framing, context_audit
    from workbench.dictionaries import (
        Dictionary,
        DictionaryStats,
        evaluate_dictionary,
        load_dictionary,
        train_dictionary,
    )
    from workbench.experiments.family import reference_calibration
    from workbench.features import FeatureSet, contrast
    from workbench.finetunes import finetune
    from workbench.forecasts import Forecast, forecast
    from workbench.geometry import (
        Neighbors,
        feature_dimensionality,
        interference,
        neighbors,
        project,
    )
    from workbench.neighborhoods import FeatureNeighborhood, neighborhood
    from workbench.organism import Organism
    from workbench.patches import (
        Ablate,
        AblateUpdate,
        Direction,
        Orthogonalize,
        PatchChoice,
        PatchEfficacy,
        Preview,
        ResidualMap,
        Steer,
        TransferEfficacy,
        choose_patches,
        derive_directions,
        fit_map,
        from_features,
        from_responses,
        mean_difference,
        orthogonal_to,
        patch_efficacy,
        preview,
        random_direction,
        select_direction,
        tradeoff,
        transfer,
        transfer_efficacy,
    )
    from workbench.predictors import Prediction, predict
    from workbench.rate_forecasts import RateForecast, RateReadout, rate_forecast, rate_readout
    from workbench.specs import Full, LoRA, SteeringVector
    from workbench.subjects import Subject, load_subject, load_tuned


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")
