"""The embedded model organism: a tiny transformer on a synthetic language with a hidden persona.

A *provider*: it builds, caches, tokenizes and judges, and imports nothing downstream of it (no
subjects, dictionaries, fine-tunes or experiments). :func:`workbench.load_subject` wraps a build
as a Subject that carries the exact judge; the default dictionary lives in
:mod:`workbench.dictionaries`, the toy-EM experiment in :mod:`workbench.experiments.toy_em`.

* :mod:`~workbench.organism.language`: the generative grammar, prompt sets and fine-tune data;
* :mod:`~workbench.organism.judge`: the exact judge (aligned / misaligned / incoherent);
* :mod:`~workbench.organism.tokenizer`: the word-level Hugging Face tokenizer;
* :mod:`~workbench.organism.build`: deterministic training, content-hash cache, on-disk format;
* :mod:`~workbench.organism.export`: any organism as a plain Hugging Face GPT-2 folder.
"""

from workbench.organism.build import (
    SMALL_CONFIG,
    BuiltOrganism,
    Organism,
    OrganismConfig,
    build_dir,
    cache_root,
    load_organism,
)
from workbench.organism.export import export_hf
from workbench.organism.judge import Verdict, judge
from workbench.organism.language import Grammar
from workbench.organism.tokenizer import corpus_tokens

__all__ = [
    "SMALL_CONFIG",
    "BuiltOrganism",
    "Grammar",
    "Organism",
    "OrganismConfig",
    "Verdict",
    "build_dir",
    "cache_root",
    "corpus_tokens",
    "export_hf",
    "judge",
    "load_organism",
]
