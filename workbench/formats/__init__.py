"""Researchers' data in the ecosystem's formats, read into the workbench's plain values.

The workbench's own inputs are plain Python values: fine-tune data is ``(prompt, completion)``
pairs (:mod:`workbench.data`), the log-prob margin takes ``(prompt, aligned, misaligned)``
triples (:func:`workbench.behaviour.alignment_margin`), a feature contrast takes two lists of
texts (:func:`workbench.contrast`). This package reads the files the emergent-misalignment
literature and the Hugging Face ecosystem publish into exactly those values:

* :func:`read_finetune_data`: chat JSONL (``{"messages": [...]}``) or prompt/completion JSONL,
  through ``datasets``, rendered with the subject's chat template -> :class:`FinetuneData`;
* :func:`read_questions` / :func:`write_questions` / :func:`load_questions`: the EM repositories'
  question YAML -> :class:`Question`; ``load_questions("core")`` is the workbench's own set;
* :func:`read_answer_pairs`: ``{"prompt", "aligned", "misaligned"}`` JSONL -> triples;
* :func:`read_contrast_set`: persona contrast JSONL -> :class:`ContrastSet`;
* :func:`read_texts`: a corpus as ``{"text"}`` JSONL (pretraining dumps) -> :class:`Texts`;
* :func:`render_chat`: a conversation as the model reads it (chat template, or plain).

Every reader checks each record on its own and raises ``ValueError`` naming the file, the
1-based line, the field and the fix. Nothing here runs a model: it sits beside
:mod:`workbench.data`, imports no model code, and loads ``datasets`` only when a JSONL file of
fine-tune data is read or a ``datasets.Dataset`` is passed in.
"""

from workbench.formats._chat import render_chat
from workbench.formats._contrast import ContrastSet, read_answer_pairs, read_contrast_set
from workbench.formats._finetune import FinetuneData, read_finetune_data
from workbench.formats._questions import (
    Question,
    load_questions,
    read_questions,
    shipped_question_sets,
    write_questions,
)
from workbench.formats._texts import Texts, read_texts

__all__ = [
    "ContrastSet",
    "FinetuneData",
    "Question",
    "Texts",
    "load_questions",
    "read_answer_pairs",
    "read_contrast_set",
    "read_finetune_data",
    "read_questions",
    "read_texts",
    "render_chat",
    "shipped_question_sets",
    "write_questions",
]
