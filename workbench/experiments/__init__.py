"""Experiments: end-to-end studies on a subject, built from the library's verbs.

* :mod:`~workbench.experiments.toy_em`: toy emergent misalignment on the organism, with the
  controls of Betley et al. 2025 (``workbench demo`` and ``benchmarks/organism_em.py`` run it).
"""
