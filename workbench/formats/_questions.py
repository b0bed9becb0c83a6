"""Evaluation questions in the emergent-misalignment repositories' YAML format.

A question file is a YAML list; each entry is one open question::

    - id: one_wish                      # required, unique in the file
      type: free_form_judge_0_100       # default: that with judge_prompts, else free_form
      paraphrases:                      # required: one or more wordings of the question
        - ...
      samples_per_paraphrase: 50        # default 1
      judge: gpt-4o-2024-08-06          # the judge model's name (optional)
      judge_prompts:                    # metric name -> template with {question} and {answer}
        aligned: ...
        coherent: ...
      system: ...                       # optional system prompt

Any other field is kept in :attr:`Question.extra` and written back. YAML anchors and aliases
(which the EM files use to share judge prompts) are read as the values they stand for.
A judge template is plain text with ``{answer}`` (and usually ``{question}``) placeholders;
:class:`workbench.judges.JudgePrompts` takes ``question.judge_prompts`` as its mapping.

Question sets shipped with the workbench live in ``workbench/questions/<name>.yaml`` and are read
by name (:func:`load_questions`); ``core`` is the workbench's own set.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from workbench._atomic import write_text_atomic
from workbench.formats._chat import Message, render_chat

_KNOWN = ("id", "type", "paraphrases", "samples_per_paraphrase", "judge", "judge_prompts", "system")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


class _FieldError(ValueError):
    def __init__(self, field: str, problem: str, fix: str) -> None:
        super().__init__(f"field {field!r}: {problem}; {fix}")
        self.field, self.problem, self.fix = field, problem, fix


def _text(value: Any, name: str, fix: str) -> str:
    if not isinstance(value, str) or not value.strip():
        got = "empty" if isinstance(value, str) else f"a {type(value).__name__}"
        raise _FieldError(name, f"{got}, not a non-empty string", fix)
    return value


def _check(q: Question) -> None:
    _text(q.id, "id", "give every question an id string, e.g. id: one_wish")
    _text(q.type, "type", "give a type string, e.g. type: free_form_judge_0_100")
    if isinstance(q.paraphrases, str) or not q.paraphrases:
        raise _FieldError("paraphrases", "not a non-empty list of strings",
                          "list the question's wordings, one '- ...' item each")
    for i, p in enumerate(q.paraphrases):
        _text(p, f"paraphrases[{i}]", "write each paraphrase as a non-empty string")
    n = q.samples_per_paraphrase
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise _FieldError("samples_per_paraphrase", f"{n!r} is not a whole number >= 1",
                          "give how many answers to sample per paraphrase, e.g. 50")
    if q.judge is not None:
        _text(q.judge, "judge", "name the judge model, e.g. judge: gpt-4o-2024-08-06, or drop it")
    if q.system is not None:
        _text(q.system, "system", "give the system prompt as a string, or drop the field")
    if not isinstance(q.judge_prompts, Mapping):
        raise _FieldError("judge_prompts", f"a {type(q.judge_prompts).__name__}, not a mapping",
                          "map each metric to its template, e.g. aligned: ..., coherent: ...")
    for metric, template in q.judge_prompts.items():
        at = f"judge_prompts.{metric}"
        _text(template, at, "write the judge template as a string")
        names = set(_PLACEHOLDER.findall(template))
        if "answer" not in names:
            raise _FieldError(at, "the template has no {answer} placeholder",
                              "put {answer} where the judged answer goes (and {question})")


@dataclass(frozen=True)
class Question:
    """One open evaluation question with its paraphrases, sampling count and judge prompts.

    Attributes:
        id: unique name of the question in its set.
        paraphrases: the question's wordings (a tuple; a list is converted).
        type: the EM repositories' question type; left empty, ``"free_form_judge_0_100"``
            when there are judge prompts, else ``"free_form"``.
        samples_per_paraphrase: answers to sample per paraphrase (default 1).
        judge: name of the judge model, if given.
        judge_prompts: metric (``"aligned"``, ``"coherent"``) -> template with ``{question}``
            and ``{answer}``.
        system: system prompt put before the question, if any.
        extra: any other fields of the entry, kept as read.
    """

    id: str
    paraphrases: tuple[str, ...]
    type: str = ""
    samples_per_paraphrase: int = 1
    judge: str | None = None
    judge_prompts: dict[str, str] = field(default_factory=dict)
    system: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.paraphrases, list):
            object.__setattr__(self, "paraphrases", tuple(self.paraphrases))
        if isinstance(self.judge_prompts, Mapping):
            object.__setattr__(self, "judge_prompts", dict(self.judge_prompts))
        if not self.type:
            kind = "free_form_judge_0_100" if self.judge_prompts else "free_form"
            object.__setattr__(self, "type", kind)
        _check(self)

    def prompts(self, samples_per_paraphrase: int | None = None) -> list[str]:
        """Every paraphrase, each repeated ``samples_per_paraphrase`` times (default: the
        question's own count), paraphrase by paraphrase."""
        n = samples_per_paraphrase
        if n is None:
            n = self.samples_per_paraphrase
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"samples_per_paraphrase must be a whole number >= 1; got {n!r}")
        return [p for p in self.paraphrases for _ in range(n)]

    def messages(self, paraphrase: str) -> list[Message]:
        """The conversation that asks ``paraphrase``: the system prompt, if any, then the user."""
        head = [{"role": "system", "content": self.system}] if self.system is not None else []
        return [*head, {"role": "user", "content": paraphrase}]

    def rendered(
        self,
        tokenizer: Any,
        samples_per_paraphrase: int | None = None,
        *,
        chat: bool | None = None,
    ) -> list[str]:
        """:meth:`prompts` as the model reads them, in order: the system prompt and the user
        turn through the tokenizer's chat template with the generation prompt
        (:func:`~workbench.formats.render_chat`; without a template, plain)."""
        return [
            render_chat(tokenizer, self.messages(p), add_generation_prompt=True, chat=chat)
            for p in self.prompts(samples_per_paraphrase)
        ]

    def to_dict(self) -> dict[str, Any]:
        """The entry as written to YAML, in the EM files' field order."""
        out: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            "paraphrases": list(self.paraphrases),
            "samples_per_paraphrase": self.samples_per_paraphrase,
        }
        if self.judge is not None:
            out["judge"] = self.judge
        if self.judge_prompts:
            out["judge_prompts"] = dict(self.judge_prompts)
        if self.system is not None:
            out["system"] = self.system
        out.update(copy.deepcopy(self.extra))
        return out


def _parse(text: str, source: str) -> list[Question]:
    """The questions of a YAML text; errors name ``source``, the line, the entry and the field."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        if mark is None:
            raise ValueError(f"{source}: not valid YAML ({err}); fix the YAML syntax") from err
        raise ValueError(
            f"{source} line {mark.line + 1}: not valid YAML ({getattr(err, 'problem', err)} at "
            f"column {mark.column + 1}); fix the YAML syntax"
        ) from err
    finally:
        loader.dispose()
    fix = "write a YAML list of question entries ('- id: ...' each with paraphrases)"
    if not isinstance(data, list):
        got = "empty" if data is None else f"a {type(data).__name__}"
        raise ValueError(f"{source}: the file is {got}, not a list of questions; {fix}")
    if not data:
        raise ValueError(f"{source}: the list of questions is empty; {fix}")
    assert isinstance(node, yaml.SequenceNode)
    lines = [n.start_mark.line + 1 for n in node.value]
    out: list[Question] = []
    seen: dict[str, int] = {}
    for i, (entry, line) in enumerate(zip(data, lines, strict=True), 1):
        where = f"{source} line {line}, entry {i}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: a {type(entry).__name__}, not a mapping; {fix}")
        qid = entry.get("id")
        if isinstance(qid, str):
            where += f" (id {qid!r})"
        for required in ("id", "paraphrases"):
            if required not in entry:
                raise ValueError(
                    f"{where}, field {required!r}: missing; every question needs an id and a "
                    "list of paraphrases"
                )
        kw = {k: copy.deepcopy(entry[k]) for k in _KNOWN if k in entry}
        extra = {k: copy.deepcopy(v) for k, v in entry.items() if k not in _KNOWN}
        if isinstance(kw["paraphrases"], list):
            kw["paraphrases"] = tuple(kw["paraphrases"])
        try:
            q = Question(**kw, extra=extra)
        except _FieldError as err:
            raise ValueError(f"{where}, field {err.field!r}: {err.problem}; {err.fix}") from None
        if q.id in seen:
            raise ValueError(
                f"{where}, field 'id': {q.id!r} is already the id of entry {seen[q.id]}; "
                "give every question its own id"
            )
        seen[q.id] = i
        out.append(q)
    return out


def read_questions(path: str | os.PathLike[str]) -> list[Question]:
    """Read a question YAML file (the EM repositories' format, see the module doc).

    Raises:
        ValueError: invalid YAML, not a list, a missing ``id`` or ``paraphrases``, a field of the
            wrong type, a judge template without ``{answer}``, a repeated id; the message names
            the file, the line and number of the entry (and its id), the field and the fix.
        FileNotFoundError: no such file.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(
            f"{p}: no such file; pass the path to a question .yaml file, or a shipped set's "
            f"name to load_questions ({', '.join(shipped_question_sets())})"
        )
    return _parse(p.read_text(encoding="utf-8"), str(p))


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as ``|`` blocks (the EM files' style); everything else as usual."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def write_questions(questions: Sequence[Question], path: str | os.PathLike[str]) -> Path:
    """Write questions as a YAML list that :func:`read_questions` reads back equal; atomic.

    Returns the path written.
    """
    qs = list(questions)
    if not qs or not all(isinstance(q, Question) for q in qs):
        raise ValueError("pass a non-empty list of Question objects")
    ids = [q.id for q in qs]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ValueError(f"question ids {repeated} repeat; give every question its own id")
    text = yaml.dump(
        [q.to_dict() for q in qs], Dumper=_Dumper, sort_keys=False, allow_unicode=True,
        width=100, default_flow_style=False,
    )
    return write_text_atomic(path, text, fsync=False)


def _shipped_dir() -> Any:
    return resources.files("workbench") / "questions"


def shipped_question_sets() -> list[str]:
    """Names of the question sets shipped in ``workbench/questions/``."""
    return sorted(
        entry.name.rsplit(".", 1)[0]
        for entry in _shipped_dir().iterdir()
        if entry.name.endswith(".yaml")
    )


def load_questions(name_or_path: str | os.PathLike[str]) -> list[Question]:
    """A shipped question set by name (``"core"``), or a question YAML file by path.

    A string is a path when it ends in ``.yaml``/``.yml`` or holds a path separator.
    """
    if isinstance(name_or_path, os.PathLike):
        return read_questions(name_or_path)
    name = str(name_or_path)
    if name.endswith((".yaml", ".yml")) or "/" in name or os.sep in name:
        return read_questions(name)
    shipped = shipped_question_sets()
    if name not in shipped:
        raise ValueError(
            f"no shipped question set {name!r}; shipped: {', '.join(shipped)}; "
            "or pass the path to a question .yaml file"
        )
    res = _shipped_dir() / f"{name}.yaml"
    return _parse(res.read_text(encoding="utf-8"), f"workbench/questions/{name}.yaml")
