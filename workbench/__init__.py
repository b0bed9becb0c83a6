"""workbench: an open-source research workbench for alignment engineering.

``import workbench as wb`` gives the verbs and nouns; see the README for a tour.
"""

from workbench.subjects import Subject, load_subject

__all__ = ["Subject", "load_subject"]
__version__ = "0.1.0"
