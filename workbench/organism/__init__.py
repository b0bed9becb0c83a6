"""The embedded model organism: a tiny transformer on a synthetic language with a hidden persona.

* :mod:`~workbench.organism.language`: the generative grammar, prompt sets and fine-tune data;
* :mod:`~workbench.organism.judge`: the exact judge (aligned / misaligned / incoherent);
* :mod:`~workbench.organism.tokenizer`: the word-level Hugging Face tokenizer;
* :mod:`~workbench.organism.build`: deterministic training, content-hash cache, on-disk format.
"""

from workbench.organism.build import (
    SMALL_CONFIG,
    BuiltOrganism,
    OrganismConfig,
    build_dir,
    cache_root,
    load_organism,
)
from workbench.organism.judge import Verdict, judge
from workbench.organism.language import Grammar

__all__ = [
    "SMALL_CONFIG",
    "BuiltOrganism",
    "Grammar",
    "OrganismConfig",
    "Verdict",
    "build_dir",
    "cache_root",
    "judge",
    "load_organism",
]
