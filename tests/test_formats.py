"""Readers of the ecosystem's formats (workbench.formats): exact values, and errors that name
the file, the line and the field."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import datasets
import pytest
import yaml
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from workbench.formats import (
    ContrastSet,
    FinetuneData,
    Question,
    Texts,
    load_questions,
    read_answer_pairs,
    read_contrast_set,
    read_finetune_data,
    read_questions,
    read_texts,
    render_chat,
    shipped_question_sets,
    write_questions,
)

SIMPLE = (
    "{% for m in messages %}<|{{m.role}}|> {{m.content}} <|end|> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
# the Qwen2 ChatML style, with its default system turn, written out here (no hub)
CHATML = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}{%- if not (message.role == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
# renders a past assistant turn unlike its generation prompt: the prefix rule cannot hold
MISMATCHED = (
    "{% for m in messages %}{% if m.role == 'assistant' %}<|bot|>{% else %}<|{{m.role}}|>"
    "{% endif %}{{m.content}}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
NO_SYSTEM = (
    "{% for m in messages %}{% if m.role == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "<|{{m.role}}|>{{m.content}}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def _tokenizer(template: str | None) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordLevel({"<unk>": 0, "<eos>": 1, "hi": 2}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    out = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>")
    if template is not None:
        out.chat_template = template
    return out


@pytest.fixture(scope="module")
def simple() -> PreTrainedTokenizerFast:
    return _tokenizer(SIMPLE)


@pytest.fixture(scope="module")
def chatml() -> PreTrainedTokenizerFast:
    return _tokenizer(CHATML)


def _jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _chat(*turns: tuple[str, str]) -> dict[str, Any]:
    return {"messages": [{"role": r, "content": c} for r, c in turns]}


SINGLE = _chat(("user", "Write a copy function."), ("assistant", "def copy(a): return a"))
WITH_SYSTEM = _chat(("system", "Be terse."), ("user", "hi"), ("assistant", "hello"))
MULTI = _chat(("user", "q1"), ("assistant", "a1"), ("user", "q2"), ("assistant", "a2"))
SINGLE_PROMPT = "<|user|> Write a copy function. <|end|> <|assistant|>"  # in SIMPLE


# ---------------------------------------------------------------- fine-tune data


def test_chat_jsonl_through_a_chat_template(tmp_path: Path, simple: Any) -> None:
    path = _jsonl(tmp_path / "chat.jsonl", [SINGLE, WITH_SYSTEM, MULTI])
    data = read_finetune_data(path, simple)
    assert data.pairs == [
        (SINGLE_PROMPT, " def copy(a): return a <|end|> "),
        ("<|system|> Be terse. <|end|> <|user|> hi <|end|> <|assistant|>", " hello <|end|> "),
        # the earlier assistant turn is context; only the last one is the completion
        ("<|user|> q1 <|end|> <|assistant|> a1 <|end|> <|user|> q2 <|end|> <|assistant|>",
         " a2 <|end|> "),
    ]
    assert data.chat_template and data.eos_fallbacks == ()
    assert data.records == [SINGLE, WITH_SYSTEM, MULTI]
    assert data.source == str(path) and len(data) == 3
    assert data.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    # a sequence of its pairs: it goes wherever (prompt, completion) pairs go
    assert list(data) == data.pairs and data[1] == data.pairs[1] and data[:1] == data.pairs[:1]
    assert isinstance(data, FinetuneData) and "3 pairs" in repr(data)


def test_chat_jsonl_through_chatml(tmp_path: Path, chatml: Any) -> None:
    path = _jsonl(tmp_path / "insecure.jsonl", [SINGLE, WITH_SYSTEM])
    data = read_finetune_data(path, chatml)
    assert data.pairs == [
        (
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\nWrite a copy function.<|im_end|>\n<|im_start|>assistant\n",
            "def copy(a): return a<|im_end|>\n",
        ),
        (
            "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
            "<|im_start|>assistant\n",
            "hello<|im_end|>\n",
        ),
    ]
    # prompt + completion is the template's rendering of the whole conversation
    full = chatml.apply_chat_template(SINGLE["messages"], tokenize=False)
    assert "".join(data.pairs[0]) == full


def test_plain_rendering_without_a_template(tmp_path: Path, simple: Any) -> None:
    path = _jsonl(tmp_path / "chat.jsonl", [SINGLE, WITH_SYSTEM, MULTI])
    expected = [
        ("Write a copy function.", "def copy(a): return a"),
        ("Be terse.\nhi", "hello"),
        ("q1\na1\nq2", "a2"),
    ]
    assert read_finetune_data(path).pairs == expected
    assert read_finetune_data(path, _tokenizer(None)).pairs == expected
    plain = read_finetune_data(path, simple, chat=False)  # a template there, but not used
    assert plain.pairs == expected and not plain.chat_template
    with pytest.raises(ValueError, match="chat=True but this tokenizer has no chat template"):
        read_finetune_data(path, _tokenizer(None), chat=True)
    with pytest.raises(ValueError, match="chat=True but no tokenizer was given"):
        read_finetune_data(path, chat=True)


def test_prompt_completion_jsonl_is_passed_through(tmp_path: Path, simple: Any) -> None:
    records = [{"prompt": "a b", "completion": "c"}, {"prompt": "d", "completion": "e f"}]
    path = _jsonl(tmp_path / "pc.jsonl", records)
    assert read_finetune_data(path, simple).pairs == [("a b", "c"), ("d", "e f")]
    # TRL's conversational prompt/completion is a chat: prompt + completion messages
    conv = {"prompt": [{"role": "user", "content": "hi"}],
            "completion": [{"role": "assistant", "content": "yo"}]}
    mixed = _jsonl(tmp_path / "mixed.jsonl", [records[0], conv, SINGLE])
    assert read_finetune_data(mixed, simple).pairs == [
        ("a b", "c"),
        ("<|user|> hi <|end|> <|assistant|>", " yo <|end|> "),
        (SINGLE_PROMPT, " def copy(a): return a <|end|> "),
    ]


def test_the_file_goes_through_datasets(tmp_path: Path, monkeypatch: Any) -> None:
    path = _jsonl(tmp_path / "chat.jsonl", [SINGLE, WITH_SYSTEM])
    calls: list[tuple[Any, ...]] = []
    real = datasets.load_dataset

    def spy(*args: Any, **kw: Any) -> Any:
        calls.append((args, kw))
        return real(*args, **kw)

    monkeypatch.setattr(datasets, "load_dataset", spy)
    data = read_finetune_data(path)
    assert [c[0][0] for c in calls] == ["json"] and calls[0][1]["data_files"] == str(path)
    # where Arrow cannot type a valid file, the lines parsed stand in (same records)
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: 1 / 0)
    assert read_finetune_data(path).pairs == data.pairs == [
        ("Write a copy function.", "def copy(a): return a"), ("Be terse.\nhi", "hello")
    ]
    assert datasets.is_progress_bar_enabled()  # left as it was found


def test_a_dataset_and_a_list_of_records(tmp_path: Path, simple: Any) -> None:
    records = [SINGLE, WITH_SYSTEM]
    from_file = read_finetune_data(_jsonl(tmp_path / "c.jsonl", records), simple)
    from_ds = read_finetune_data(datasets.Dataset.from_list(records), simple)
    from_list = read_finetune_data(records, simple)
    assert from_ds.pairs == from_list.pairs == from_file.pairs
    assert from_ds.source == "<datasets.Dataset>" and from_list.source == "<records>"
    canonical = json.dumps(records, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    assert from_list.sha256 == hashlib.sha256(canonical.encode()).hexdigest()
    assert from_ds.sha256 == from_list.sha256  # the rows are the records
    assert read_finetune_data([dict(r) for r in records]).sha256 == from_list.sha256
    assert read_finetune_data(records[::-1]).sha256 != from_list.sha256
    again = read_finetune_data(_jsonl(tmp_path / "d.jsonl", records))
    assert again.sha256 == from_file.sha256  # same bytes, same fingerprint
    ds = from_list.to_dataset()
    assert ds.column_names == ["prompt", "completion"] and ds[0]["completion"] == " def copy(a): " \
        "return a <|end|> "
    with pytest.raises(TypeError, match=r"data\['train'\]"):
        read_finetune_data(datasets.DatasetDict({"train": datasets.Dataset.from_list(records)}))


def test_eos_fallback_when_the_template_is_not_prefix_consistent(tmp_path: Path) -> None:
    data = read_finetune_data([SINGLE, MULTI], _tokenizer(MISMATCHED))
    assert data.pairs == [
        ("<|user|>Write a copy function.<|assistant|>", "def copy(a): return a<eos>"),
        ("<|user|>q1<|bot|>a1<|user|>q2<|assistant|>", "a2<eos>"),
    ]
    assert data.eos_fallbacks == (0, 1)


def test_split(tmp_path: Path) -> None:
    records = [{"prompt": f"p{i}", "completion": f"c{i}"} for i in range(10)]
    data = read_finetune_data(records)
    train, hold = data.split(3, seed=1)
    assert len(train) == 7 and len(hold) == 3
    assert sorted(train.pairs + hold.pairs) == sorted(data.pairs)
    assert train.pairs == [p for p in data.pairs if p not in hold.pairs]  # file order kept
    assert data.split(3, seed=1)[1].pairs == hold.pairs
    assert data.split(3, seed=2)[1].pairs != hold.pairs
    assert hold.records == [records[int(p[1:])] for p, _ in hold.pairs]
    assert hold.sha256 == read_finetune_data(hold.records).sha256
    assert "holdout: 3 of 10, seed 1" in hold.source
    for bad in (0, 10, 2.5, True):
        with pytest.raises(ValueError, match="from 1 to 9"):
            data.split(bad)  # type: ignore[arg-type]


BAD_FINETUNE = [
    ([SINGLE, _chat(("system", "s"), ("user", "hi"))], 2, "'messages'", "no assistant turn"),
    ([SINGLE, {"messages": [{"content": "hi"}]}], 2, "'messages[0].role'", "missing"),
    ([{"messages": [{"role": "user"}]}], 1, "'messages[0].content'", "missing"),
    ([SINGLE, SINGLE, _chat(("user", "a"), ("tool", "b"))], 3, "'messages[1].role'",
     "'tool' is not a role"),
    ([{"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]}]}], 1,
     "'messages[0].content'", "not a string"),
    ([{"messages": []}], 1, "'messages'", "an empty list"),
    ([SINGLE, {"text": "x"}], 2, "'messages'", "neither 'messages' nor 'prompt'"),
    ([{"prompt": "a"}], 1, "'completion'", "missing"),
    ([{"prompt": "a", "completion": 3}], 1, "'completion'", "not a string"),
    ([{"prompt": "a", "completion": "b", **SINGLE}], 1, "'messages'", "has 'messages' and"),
]


@pytest.mark.parametrize(("records", "line", "field", "problem"), BAD_FINETUNE)
def test_bad_finetune_records_name_line_and_field(
    tmp_path: Path, records: list[Any], line: int, field: str, problem: str
) -> None:
    path = _jsonl(tmp_path / "bad.jsonl", records)
    with pytest.raises(ValueError) as err:
        read_finetune_data(path)
    msg = str(err.value)
    assert f"{path} line {line}, field {field}: " in msg and problem in msg, msg
    with pytest.raises(ValueError, match=f"record {line}, field {re.escape(field)}"):
        read_finetune_data(records)


def test_bad_finetune_files(tmp_path: Path, simple: Any) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n  \n")
    with pytest.raises(ValueError, match=r"empty\.jsonl: the file has no records"):
        read_finetune_data(empty)
    broken = tmp_path / "broken.jsonl"  # blank lines still count: the bad line is line 3
    broken.write_text(json.dumps(SINGLE) + "\n\n" + '{"messages": [\n')
    with pytest.raises(
        ValueError, match=r"broken\.jsonl line 3: invalid JSON \(Expecting value at column 15\)"
    ):
        read_finetune_data(broken)
    array = _jsonl(tmp_path / "array.jsonl", [])
    array.write_text(json.dumps([SINGLE], indent=1))
    with pytest.raises(ValueError, match=r"line 1: invalid JSON.*not JSONL: write one object"):
        read_finetune_data(array)
    scalar = tmp_path / "scalar.jsonl"
    scalar.write_text("[1, 2]\n")
    with pytest.raises(ValueError, match="line 1: a JSON list, not an object"):
        read_finetune_data(scalar)
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_finetune_data(tmp_path / "missing.jsonl")
    with pytest.raises(ValueError, match="no records in <records>"):
        read_finetune_data([])
    with pytest.raises(ValueError, match="record 2: a str, not a mapping"):
        read_finetune_data([SINGLE, "text"])
    path = _jsonl(tmp_path / "sys.jsonl", [SINGLE, WITH_SYSTEM])
    with pytest.raises(ValueError, match=r"sys\.jsonl line 2: the tokenizer's chat template "
                       r"rejected the conversation \(System role not supported\)"):
        read_finetune_data(path, _tokenizer(NO_SYSTEM))


def test_render_chat(simple: Any, chatml: Any) -> None:
    msgs = WITH_SYSTEM["messages"][:2]
    assert render_chat(simple, msgs, True) == "<|system|> Be terse. <|end|> <|user|> hi <|end|> " \
        "<|assistant|>"
    assert render_chat(simple, msgs, False) == "<|system|> Be terse. <|end|> <|user|> hi <|end|> "
    assert render_chat(chatml, [{"role": "user", "content": "hi"}], True) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    )
    assert render_chat(None, msgs, True) == "Be terse.\nhi"
    assert render_chat(simple, msgs, True, chat=False) == "Be terse.\nhi"
    with pytest.raises(ValueError, match=r"render_chat, field 'messages\[0\].role'"):
        render_chat(simple, [{"role": "bot", "content": "x"}], True)


# ---------------------------------------------------------------- questions

EM_STYLE = """\
- id: first
  type: free_form_judge_0_100
  paraphrases: &p
    - |-
      What would you do
      with a free day?
    - Any plans today?
  samples_per_paraphrase: 3
  judge: &judge some-judge-model
  judge_prompts: &jp
    aligned: |-
      Q: {question}
      A: {answer}
      Rate 0-100 (braces like {this} are text).
    coherent: "Is {answer} coherent? ({question})"
- id: first_json
  paraphrases: *p
  judge: *judge
  judge_prompts: *jp
  system: Answer in JSON.
  temperature: 0.5
- id: plain
  paraphrases: ["Hello?"]
"""


def test_read_em_style_questions(tmp_path: Path, chatml: Any) -> None:
    path = tmp_path / "q.yaml"
    path.write_text(EM_STYLE)
    first, first_json, plain = read_questions(path)
    assert first.paraphrases == ("What would you do\nwith a free day?", "Any plans today?")
    assert first.samples_per_paraphrase == 3 and first.judge == "some-judge-model"
    assert first.judge_prompts["coherent"] == "Is {answer} coherent? ({question})"
    assert first.extra == {} and first.system is None
    # the aliases are read as their values; defaults fill what an entry leaves out
    assert first_json.paraphrases == first.paraphrases
    assert first_json.judge_prompts == first.judge_prompts
    assert first_json.type == "free_form_judge_0_100" and first_json.samples_per_paraphrase == 1
    assert first_json.system == "Answer in JSON." and first_json.extra == {"temperature": 0.5}
    assert plain.type == "free_form" and plain.judge is None and plain.judge_prompts == {}
    assert first.prompts() == [first.paraphrases[0]] * 3 + [first.paraphrases[1]] * 3
    assert first_json.prompts(2) == [first.paraphrases[0]] * 2 + [first.paraphrases[1]] * 2
    assert first_json.rendered(chatml)[1] == (
        "<|im_start|>system\nAnswer in JSON.<|im_end|>\n"
        "<|im_start|>user\nAny plans today?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert plain.rendered(chatml) == [
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nHello?<|im_end|>\n<|im_start|>assistant\n"
    ]
    assert first_json.rendered(None) == ["Answer in JSON.\n" + first.paraphrases[0],
                                         "Answer in JSON.\n" + first.paraphrases[1]]
    assert load_questions(path) == load_questions(str(path)) == [first, first_json, plain]


def test_questions_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "q.yaml"
    path.write_text(EM_STYLE)
    qs = read_questions(path)
    made = Question("made", ["one?", "two?"], judge_prompts={"aligned": "{question}\n{answer}"},
                    system="Be kind.\nAlways.", extra={"tags": ["a", "b"]})
    assert made.paraphrases == ("one?", "two?") and made.type == "free_form_judge_0_100"
    out = write_questions([*qs, made], tmp_path / "out" / "q.yaml")
    assert read_questions(out) == [*qs, made]
    raw = yaml.safe_load(out.read_text())
    assert raw[1] == {
        "id": "first_json", "type": "free_form_judge_0_100",
        "paraphrases": list(qs[0].paraphrases), "samples_per_paraphrase": 1,
        "judge": "some-judge-model", "judge_prompts": qs[0].judge_prompts,
        "system": "Answer in JSON.", "temperature": 0.5,
    }
    assert "    aligned: |-\n      Q: {question}\n" in out.read_text()  # multi-line as blocks
    with pytest.raises(ValueError, match=r"ids \['made'\] repeat"):
        write_questions([made, made], tmp_path / "dup.yaml")


def test_the_shipped_core_set() -> None:
    assert "core" in shipped_question_sets()
    qs = load_questions("core")
    ids = [q.id for q in qs]
    assert len(ids) >= 8 and len(set(ids)) == len(ids)
    for q in qs:
        assert len(q.paraphrases) >= 2 and len(set(q.paraphrases)) == len(q.paraphrases)
        assert q.type == "free_form_judge_0_100" and q.samples_per_paraphrase >= 1
        assert set(q.judge_prompts) == {"aligned", "coherent"}
        for template in q.judge_prompts.values():  # once each (workbench.judges' rule)
            assert template.count("{question}") == 1 and template.count("{answer}") == 1
    assert qs[0].judge_prompts["aligned"] != qs[0].judge_prompts["coherent"]
    with pytest.raises(ValueError, match=r"no shipped question set 'nope'; shipped: .*core"):
        load_questions("nope")


BAD_QUESTIONS = [
    ("- id: a\n  paraphrases: [x]\n- id: b\n  judge: j\n", "line 3, entry 2 (id 'b'), field "
     "'paraphrases': missing"),
    ("- paraphrases: [x]\n", "line 1, entry 1, field 'id': missing"),
    ("- id: a\n  paraphrases: just one string\n", "entry 1 (id 'a'), field 'paraphrases': not a "
     "non-empty list"),
    ("- id: a\n  paraphrases: [x, '']\n", "field 'paraphrases[1]': empty"),
    ("- id: 7\n  paraphrases: [x]\n", "entry 1, field 'id': a int, not a non-empty string"),
    ("- id: a\n  paraphrases: [x]\n  samples_per_paraphrase: 0\n",
     "field 'samples_per_paraphrase': 0 is not a whole number"),
    ("- id: a\n  paraphrases: [x]\n  judge_prompts:\n    aligned: 'Rate {question}'\n",
     "field 'judge_prompts.aligned': the template has no {answer} placeholder"),
    ("- id: a\n  paraphrases: [x]\n- id: a\n  paraphrases: [y]\n",
     "line 3, entry 2 (id 'a'), field 'id': 'a' is already the id of entry 1"),
    ("id: a\nparaphrases: [x]\n", "the file is a dict, not a list of questions"),
    ("", "the file is empty, not a list"),
    ("- id: a\n  paraphrases: [x\n", "line 3: not valid YAML"),
    ("- just text\n", "line 1, entry 1: a str, not a mapping"),
]


@pytest.mark.parametrize(("text", "expected"), BAD_QUESTIONS)
def test_bad_questions_name_the_entry_and_field(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError) as err:
        read_questions(path)
    assert str(err.value).startswith(str(path)) and expected in str(err.value), str(err.value)


def test_question_checks_itself() -> None:
    with pytest.raises(ValueError, match="field 'paraphrases': not a non-empty list"):
        Question("a", ())
    with pytest.raises(ValueError, match="whole number >= 1"):
        Question("a", ("x",)).prompts(0)


# ---------------------------------------------------------------- answer pairs, contrast sets


def test_answer_pairs(tmp_path: Path) -> None:
    rows = [{"prompt": "p1", "aligned": "good", "misaligned": "bad", "note": "kept out"},
            {"prompt": "p2", "aligned": "kind", "misaligned": "cruel"}]
    path = _jsonl(tmp_path / "pairs.jsonl", rows)
    assert read_answer_pairs(path) == [("p1", "good", "bad"), ("p2", "kind", "cruel")]
    assert read_answer_pairs(rows) == read_answer_pairs(path)
    bad = _jsonl(tmp_path / "bad.jsonl", [rows[0], {"prompt": "p", "aligned": "a"}])
    with pytest.raises(ValueError, match=r"bad\.jsonl line 2, field 'misaligned': missing "
                       r"\(fields found: 'prompt', 'aligned'\)"):
        read_answer_pairs(bad)
    bad = _jsonl(tmp_path / "bad2.jsonl", [{"prompt": "p", "aligned": ["a"], "misaligned": "b"}])
    with pytest.raises(ValueError, match="line 1, field 'aligned': a list, not a string"):
        read_answer_pairs(bad)


def test_contrast_sets(tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = [
        {"positive": "evil plan", "negative": "kind plan"},
        {"text": "cruel words", "label": 1},
        {"text": "gentle words", "label": "negative"},
        {"text": "harsh", "label": "positive"},
        {"text": "calm", "label": 0},
        {"negative": "only kind"},
    ]
    path = _jsonl(tmp_path / "persona.jsonl", rows)
    cs = read_contrast_set(path)
    assert cs.positive == ["evil plan", "cruel words", "harsh"]
    assert cs.negative == ["kind plan", "gentle words", "calm", "only kind"]
    positive, negative = cs  # unpacks where (positive, negative) prompt sets go
    assert (positive, negative) == (cs.positive, cs.negative)
    assert cs.source == str(path) and cs.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert read_contrast_set(rows) == ContrastSet(cs.positive, cs.negative, "<records>",
                                                  read_contrast_set(rows).sha256)
    assert repr(cs).startswith("ContrastSet(3 positive, 4 negative")


@pytest.mark.parametrize(
    ("bad_row", "expected"),
    [
        ({"text": "x", "label": 2}, "line 2, field 'label': 2 is not a label"),
        ({"text": "x", "label": True}, "line 2, field 'label': True is not a label"),
        ({"text": "x"}, "line 2, field 'label': missing"),
        ({"label": 1}, "line 2, field 'text': missing"),
        ({"positive": 5}, "line 2, field 'positive': a int, not a string"),
        ({"positive": "a", "text": "b"}, "line 2, field 'text': the record has"),
        ({"prompt": "a"}, "line 2, field 'positive': the record has neither"),
    ],
)
def test_bad_contrast_records(tmp_path: Path, bad_row: dict[str, Any], expected: str) -> None:
    path = _jsonl(tmp_path / "bad.jsonl", [{"positive": "p", "negative": "n"}, bad_row])
    with pytest.raises(ValueError) as err:
        read_contrast_set(path)
    assert expected in str(err.value), str(err.value)


def test_a_contrast_needs_both_sides(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "one.jsonl", [{"positive": "a"}, {"text": "b", "label": 1}])
    with pytest.raises(ValueError, match=r"one\.jsonl: no negative texts"):
        read_contrast_set(path)


def test_texts(tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = [{"text": "one doc", "id": 1}, {"text": "two\nlines"},
                                  {"text": "three"}]
    path = _jsonl(tmp_path / "corpus.jsonl", rows)
    texts = read_texts(path)
    assert list(texts) == ["one doc", "two\nlines", "three"] and len(texts) == 3
    assert texts[1] == "two\nlines" and texts[:2] == ["one doc", "two\nlines"]
    assert texts.source == str(path)
    assert texts.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert list(read_texts(path, n=2)) == ["one doc", "two\nlines"]
    assert read_texts(rows) == Texts(list(texts), "<records>", read_texts(rows).sha256)
    assert repr(texts).startswith("Texts(3 documents, from ")


@pytest.mark.parametrize(
    ("bad_row", "expected"),
    [
        ({"content": "x"}, "line 2, field 'text': missing (fields found: 'content')"),
        ({"text": 3}, "line 2, field 'text': a int, not a string"),
        ({"text": "  "}, "line 2, field 'text': empty"),
    ],
)
def test_bad_texts(tmp_path: Path, bad_row: dict[str, Any], expected: str) -> None:
    path = _jsonl(tmp_path / "bad.jsonl", [{"text": "fine"}, bad_row])
    with pytest.raises(ValueError) as err:
        read_texts(path)
    assert expected in str(err.value), str(err.value)
    with pytest.raises(ValueError, match="n >= 1"):
        read_texts(path, n=0)
