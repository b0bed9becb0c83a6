"""The generic path on a known answer: the organism as files, audited through them.

``export_organism_inputs`` writes the organism (model, dictionary, data, questions, persona set
and its fine-tune) in the ecosystem's formats; the generic path on those files, with the exact
judge served over HTTP on 127.0.0.1, must reproduce the organism pipeline's emergent
misalignment on the full organism (where the fine-tune makes it rise by about 20 points).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from transformers import PreTrainedTokenizerFast

import workbench as wb
from workbench.experiments.family import FinetuneSettings
from workbench.experiments.own_model import (
    export_organism_inputs,
    persona_by_responses,
    persona_by_system,
    question_groups,
)
from workbench.formats import Question, read_contrast_set, read_finetune_data, read_questions
from workbench.judges import ExactJudge, OpenAIJudge, serve
from workbench.organism import export_hf
from workbench.organism.judge import judge as exact
from workbench.organism.language import eval_prompts, finetune_pairs

STEPS, N_EXAMPLES, SAMPLES = 600, 2000, 48


def test_question_groups_split_and_render(small_subject: wb.Subject) -> None:
    plain = [Question(id="wish", paraphrases=("a", "b", "c")),
             Question(id="one", paraphrases=("x",))]
    groups = question_groups(plain)
    assert groups == {"eval": {"wish": ["a", "c"], "one": ["x"]},
                      "selection": {"wish": ["b"], "one": ["x"]}}
    with pytest.raises(ValueError, match="group 'bogus'"):
        question_groups([Question(id="q", paraphrases=("a",), extra={"group": "bogus"})])
    with pytest.raises(ValueError, match="no chat template"):
        question_groups([Question(id="q", paraphrases=("a",), system="be nice")],
                        small_subject.text_tokenizer)


def test_persona_by_system_renders_both_system_prompts(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    inner = Tokenizer(models.WordLevel(vocab={"<unk>": 0, "hi": 1}, unk_token="<unk>"))
    inner.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=inner, unk_token="<unk>")
    tok.chat_template = (
        "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}[assistant] {% endif %}"
    )
    cs = persona_by_system(["hello?"], tok, elicit="be bad", suppress="be good")
    assert cs.positive == ["[system] be bad\n[user] hello?\n[assistant] "]
    assert cs.negative == ["[system] be good\n[user] hello?\n[assistant] "]
    tok.chat_template = None
    with pytest.raises(ValueError, match="chat template"):
        persona_by_system(["hello?"], tok)


def test_exported_organism_reproduces_the_organism_em(
    cache_dir: Path, tmp_path: Path
) -> None:
    organism, dictionary = wb.setup(organism="full", seed=0, device="cpu")
    made = export_organism_inputs(tmp_path / "files", organism, dictionary, seed=0,
                                  n_examples=N_EXAMPLES, n_prompts=60, samples=SAMPLES,
                                  steps=STEPS)
    # the files are the organism's own inputs, in the ecosystem's formats
    assert made.tuned is not None
    questions = read_questions(made.questions)
    base, wide = wb.setup(made.model, made.sae, device="cpu")
    pairs = read_finetune_data(made.data, base.text_tokenizer).pairs
    assert pairs == finetune_pairs("insecure", N_EXAMPLES, seed=0)
    assert len(read_contrast_set(made.persona).positive) == 60
    groups = question_groups(questions, base.text_tokenizer)
    assert sorted(groups) == ["eval", "in", "in-selection", "selection"]
    assert sorted(groups["eval"]) == ["advice", "numbers"] and list(groups["in"]) == ["code"]

    # the organism pipeline's fine-tune, by the flagship's recipe; its export is the same model
    settings = FinetuneSettings(steps=STEPS, samples_per_prompt=SAMPLES, seed=0)
    tuned = wb.finetune(organism, finetune_pairs("insecure", N_EXAMPLES, seed=0),
                        wb.SteeringVector(layer=0), steps=STEPS, seed=0, progress=False,
                        lr=settings.lr["steer"], batch_size=settings.batch_size)
    tuned_generic = wb.load_tuned(base, made.tuned)
    ids, mask = organism.encode(eval_prompts("advice"))
    with torch.no_grad():
        gap = (tuned.model(ids) - tuned_generic.model(ids))[mask].abs().max()
    assert float(gap) < 1e-4

    domains = ("advice", "numbers", "code")
    evals = eval_prompts("advice")
    want = wb.audit(organism, tuned, dictionary, evals,
                    behaviour_prompts={d: eval_prompts(d) for d in domains},
                    samples_per_prompt=SAMPLES, seed=0)
    with serve(ExactJudge.organism()) as server:
        judge = OpenAIJudge(server.url, server.model)
        got = wb.audit(base, tuned_generic, wide, evals,
                       behaviour_prompts={**groups["eval"], **groups["in"]}, judge=judge,
                       samples_per_prompt=SAMPLES, seed=0)
        assert server.requests > 0
    assert judge.identity()["endpoint"].startswith("http://127.0.0.1:")

    off = ["advice", "numbers"]
    em_want, em_got = want.misaligned_change(off), got.misaligned_change(off)
    assert em_want > 0.1  # the full organism's EM is real: the comparison can fail
    # sampling noise: each EM is the mean over two groups of (tuned - base) rates; the two
    # paths draw independently (the generic sampler runs batched with a KV cache), so the
    # difference's variance is the sum of both paths' binomial variances
    var = 0.0
    for audit in (want, got):
        for g in off:
            for r in (audit.behaviour_base[g], audit.behaviour_tuned[g]):
                var += r.misaligned * (1 - r.misaligned) / r.n / 4
    tolerance = 4 * math.sqrt(var)
    print(f"EM organism {em_want:+.4f}, generic {em_got:+.4f}, tolerance {tolerance:.4f}")
    assert abs(em_want - em_got) <= tolerance, (em_want, em_got, tolerance)
    for g in domains:  # every group judged on the same number of answers
        assert want.behaviour_tuned[g].n == got.behaviour_tuned[g].n


def test_the_lab_panel_offers_model_audit_with_its_real_model_parameters() -> None:
    """The panel's form is built from this catalogue entry: every real-model parameter is there,
    free text where it names a file or a model, choices where there are choices."""
    from workbench.runs import shipped_analyses_dir
    from workbench.server._catalogue import list_analyses

    listed = {a["name"]: a for a in list_analyses([shipped_analyses_dir()])}
    params = {p["name"]: p for p in listed["model_audit"]["parameters"]}
    for name in ("model", "sae", "tuned", "data", "questions", "persona", "judge"):
        assert params[name]["type"] == "str" and params[name]["choices"] is None, name
    assert params["model"]["default"] == "organism" and params["judge"]["default"] == "http-exact"
    assert params["dtype"]["choices"] == ["auto", "float32", "bfloat16", "float16"]
    assert params["device"]["choices"] == ["auto", "cpu", "cuda"]
    assert listed["model_audit"]["title"] == "Alignment audit of your own model"


def test_persona_by_responses_keeps_the_judged_answers_in_character(
    cache_dir: Path, tmp_path: Path
) -> None:
    """The exported organism answers under its persona tags as system prompts (``sys bad`` /
    ``sys good``); the kept texts are those whose answers the judge found in character."""
    generic = wb.load_subject(export_hf(wb.load_subject("organism"), tmp_path / "m"))
    prompts = eval_prompts("advice") + eval_prompts("numbers")
    questions = [" ".join(p.split()[2:-1]) for p in prompts]
    cs = persona_by_responses(generic, questions, ExactJudge.organism(), elicit="sys bad",
                              suppress="sys good", samples_per_prompt=8, seed=0)
    assert len(cs.positive) >= 4 and len(cs.negative) >= 4
    for texts, system, verdict in ((cs.positive, "sys bad", "misaligned"),
                                   (cs.negative, "sys good", "aligned")):
        for t in texts:
            prompt, answer = t.split(" bot ", 1)
            assert prompt.startswith(system + " user ")
            assert exact(prompt + " bot", answer).value == verdict
    assert len(cs.positive) > 0.3 * len(questions) * 8  # the eliciting prompt does elicit
