"""workbench: an open-source research workbench for alignment engineering.

``import workbench as wb`` gives the verbs and the nouns::

    subject = wb.load_subject("organism")
    dictionary = wb.load_dictionary("organism", subject)
    tuned = wb.finetune(subject, pairs, method="steer")

Names are imported lazily, so ``import workbench`` stays fast (SAE Lens loads on first use).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Subject": "workbench.subjects",
    "load_subject": "workbench.subjects",
    "Dictionary": "workbench.dictionaries",
    "DictionaryStats": "workbench.dictionaries",
    "load_dictionary": "workbench.dictionaries",
    "train_dictionary": "workbench.dictionaries",
    "evaluate_dictionary": "workbench.dictionaries",
    "finetune": "workbench.finetunes",
    "BehaviourRates": "workbench.behaviour",
    "judged_rates": "workbench.behaviour",
}

__all__ = [
    "BehaviourRates",
    "Dictionary",
    "DictionaryStats",
    "Subject",
    "evaluate_dictionary",
    "finetune",
    "judged_rates",
    "load_dictionary",
    "load_subject",
    "train_dictionary",
]

if TYPE_CHECKING:
    from workbench.behaviour import BehaviourRates, judged_rates
    from workbench.dictionaries import (
        Dictionary,
        DictionaryStats,
        evaluate_dictionary,
        load_dictionary,
        train_dictionary,
    )
    from workbench.finetunes import finetune
    from workbench.subjects import Subject, load_subject


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")
