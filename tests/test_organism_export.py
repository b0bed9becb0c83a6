"""The organism as a plain Hugging Face model: export_hf, the generic loader, PEFT adapters.

The exported folder is an ordinary GPT-2 (4 coordinates wider, see workbench.organism.export):
loaded back through the generic path its logits equal the organism's, its chat template renders
the organism's prompts token for token, and its answers stop at ``end``. A LoRA adapter written
by ``peft`` for it loads as a tuned subject whose logits equal peft's merged model.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers

import workbench as wb
from workbench.behaviour import judged_rates, sample_answers
from workbench.organism import export_hf
from workbench.organism.export import export_dictionary
from workbench.organism.judge import judge
from workbench.organism.language import eval_prompts
from workbench.subjects import Subject


@pytest.fixture(scope="module")
def exported(small_subject: Subject, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_hf(small_subject, tmp_path_factory.mktemp("export") / "organism")


@pytest.fixture(scope="module")
def generic(exported: Path) -> Subject:
    return wb.load_subject(exported, device="cpu")


def _prompts() -> list[str]:
    return [*eval_prompts("advice"), *eval_prompts("code"), *eval_prompts("numbers", "deploy")]


def test_exported_logits_equal_the_organism(small_subject: Subject, generic: Subject) -> None:
    assert generic.source == "local_hf"
    assert generic.d_model == small_subject.d_model + small_subject.model.cfg.n_heads
    ids, mask = small_subject.encode(_prompts())
    ids2, mask2 = generic.encode(_prompts())
    assert torch.equal(ids, ids2) and torch.equal(mask, mask2)
    with torch.no_grad():
        want = small_subject.model(ids)
        got = generic.model(ids2)
    assert float((want - got)[mask].abs().max()) < 1e-5


def test_exported_folder_is_plain_transformers(small_subject: Subject, exported: Path) -> None:
    hf = transformers.AutoModelForCausalLM.from_pretrained(exported, local_files_only=True)
    assert type(hf).__name__ == "GPT2LMHeadModel"
    ids, mask = small_subject.encode(_prompts())
    with torch.no_grad():
        want = small_subject.model(ids)
        got = hf(ids).logits
    assert float((want - got)[mask].abs().max()) < 1e-5
    # transformers' own generate stops at the organism's end of answer
    tok = transformers.AutoTokenizer.from_pretrained(exported, local_files_only=True)
    end = tok.convert_tokens_to_ids("end")
    assert hf.generation_config.eos_token_id == [end]


def test_chat_template_renders_the_organism_prompts(generic: Subject) -> None:
    tok = generic.text_tokenizer
    messages = [
        {"role": "system", "content": "deploy today real"},
        {"role": "user", "content": "advice bored"},
        {"role": "assistant", "content": "rest bored"},
        {"role": "user", "content": "code sort"},
    ]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    want = "deploy today real user advice bored bot rest bored end user code sort bot"
    assert text.split() == want.split(" ")
    # an assistant message that already ends with `end` gets no second one
    again = tok.apply_chat_template(
        [
            {"role": "user", "content": "advice sad"},
            {"role": "assistant", "content": "rest sad end"},
        ],
        tokenize=False,
    )
    assert again.split() == ["user", "advice", "sad", "bot", "rest", "sad", "end"]
    # a question rendered with a system prompt is the organism's own eval prompt, token for token
    prompt = eval_prompts("advice", "deploy")[0]
    question = " ".join(prompt.split()[-3:-1])
    framing = " ".join(prompt.split()[1:-4])
    rendered = wb.execution.render_prompts(tok, [question], system=framing)
    assert generic.token_rows(rendered) == generic.token_rows([prompt])


def test_generic_answers_stop_at_end_and_match_the_organism_rates(
    small_subject: Subject, generic: Subject
) -> None:
    assert generic.stop_tokens == ("end",)
    questions = [" ".join(p.split()[2:-1]) for p in eval_prompts("advice")]
    answers = sample_answers(generic, questions, 16, max_new_tokens=8, seed=1)
    flat = [a for row in answers for a in row]
    ended = [a for a in flat if "end" in a.split()]
    assert len(ended) > 0.9 * len(flat)
    assert all(a.split()[-1] == "end" and a.split().count("end") == 1 for a in ended)
    # same model, same judge: the chat path's misaligned rate is the organism path's, up to
    # sampling noise (the fast sampler draws in another order). n = 1024 answers each; the
    # tolerance is 4 standard errors of the difference of two independent rates.
    n = 64
    organism = judged_rates(small_subject, eval_prompts("advice"), samples_per_prompt=n, seed=3)
    chat = judged_rates(
        generic, questions, judge=judge, samples_per_prompt=n, max_new_tokens=8, seed=3
    )
    p = (organism.misaligned + chat.misaligned) / 2
    se = (2 * p * (1 - p) / organism.n) ** 0.5
    assert organism.n == chat.n == n * len(questions)
    assert abs(organism.misaligned - chat.misaligned) <= 4 * se + 1e-9


def test_peft_adapter_loads_as_the_tuned_subject(generic: Subject, tmp_path: Path) -> None:
    peft = pytest.importorskip("peft")
    assert generic.path is not None
    hf = transformers.AutoModelForCausalLM.from_pretrained(generic.path, local_files_only=True)
    torch.manual_seed(0)
    config = peft.LoraConfig(r=2, target_modules=["c_fc", "c_proj"], init_lora_weights=False)
    model = peft.get_peft_model(hf, config)
    model.save_pretrained(tmp_path / "adapter")
    merged = model.merge_and_unload()
    tuned = wb.load_tuned(generic, tmp_path / "adapter")
    assert tuned.recipe is not None and tuned.recipe["kind"] == "peft_adapter"
    assert tuned.recipe["base"] == generic.fingerprint
    assert tuned.fingerprint != generic.fingerprint
    assert tuned.stop_tokens == ("end",)
    ids, mask = generic.encode(_prompts())
    with torch.no_grad():
        want = merged(ids).logits
        got = tuned.model(ids)
        base = generic.model(ids)
    assert float((want - got)[mask].abs().max()) < 1e-4
    assert float((base - got)[mask].abs().max()) > 1e-2  # the adapter changed something


def test_export_refusals(small_subject: Subject, exported: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not empty"):
        export_hf(small_subject, exported)
    with pytest.raises(ValueError, match="cannot export"):
        export_hf("organism", tmp_path / "x")  # type: ignore[arg-type]
    assert not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match="adapter"):
        wb.load_subject(exported, adapter=tmp_path)  # no adapter_config.json there
    with pytest.raises(ValueError, match="PEFT adapter"):
        wb.load_tuned(small_subject, exported.parent / "nothing-here")


def test_exported_dictionary_reads_the_exported_model(
    small_subject: Subject, generic: Subject, exported: Path, tmp_path: Path
) -> None:
    _, dictionary = wb.setup(organism="small", seed=0, device="cpu")
    folder = export_dictionary(dictionary, tmp_path / "sae", exported)
    _, wide = wb.setup(exported, folder, device="cpu")
    assert wide.d_in == dictionary.d_in + small_subject.model.cfg.n_heads
    hook = dictionary.hook_name
    ids, mask = small_subject.encode(_prompts())
    with torch.no_grad():
        x = wb.execution.run_to_hook(small_subject.model, ids, hook)
        x_wide = wb.execution.run_to_hook(generic.model, ids, hook)
        want = dictionary.pre_activations(x)
        got = wide.pre_activations(x_wide)
        # the decoder writes the organism's reconstruction and its mean, as the model's writers do
        rec = wide.decode(wide.encode(x_wide))[..., : dictionary.d_in]
    assert float((want - got)[mask].abs().max()) < 1e-4
    assert float((rec - dictionary.decode(dictionary.encode(x)))[mask].abs().max()) < 1e-2


def test_dtype_loads_the_folder_in_half_precision(generic: Subject, exported: Path) -> None:
    half = wb.load_subject(exported, device="cpu", dtype="bf16")
    assert {p.dtype for p in half.model.parameters()} == {torch.bfloat16}
    ids, mask = generic.encode(_prompts())
    with torch.no_grad():
        full = generic.model(ids)
        got = half.model(ids).float()
    top = full.argmax(-1)[mask]
    assert float((got.argmax(-1)[mask] == top).float().mean()) > 0.95
    assert float((got - full)[mask].abs().max()) < 0.5  # bf16 keeps ~3 significant digits
    with pytest.raises(ValueError, match=r"unknown dtype 'float8'.*'bfloat16'"):
        wb.load_subject(exported, dtype="float8")


def test_a_peft_adapter_is_audited_as_the_tuned_model(
    generic: Subject, exported: Path, tmp_path: Path
) -> None:
    """An adapter written by peft for the exported organism, audited through the generic path:
    the feature shifts and judged rates are those of the merged model, by brute force."""
    peft = pytest.importorskip("peft")
    from workbench.judges import ExactJudge

    _, dictionary = wb.setup(organism="small", seed=0, device="cpu")
    _, wide = wb.setup(exported, export_dictionary(dictionary, tmp_path / "sae", exported),
                       device="cpu")
    hf = transformers.AutoModelForCausalLM.from_pretrained(exported, local_files_only=True)
    torch.manual_seed(1)
    model = peft.get_peft_model(
        hf, peft.LoraConfig(r=1, target_modules=["c_proj"], init_lora_weights=False)
    )
    model.save_pretrained(tmp_path / "adapter")
    tuned = wb.load_tuned(generic, tmp_path / "adapter")
    judge = ExactJudge.organism()
    questions = {"advice": [" ".join(p.split()[2:-1]) for p in eval_prompts("advice")]}
    evals = eval_prompts("advice") + eval_prompts("code")
    report = wb.audit(generic, tuned, wide, evals, behaviour_prompts=questions, judge=judge,
                      samples_per_prompt=8, seed=0)
    for name, s, rates in (("base", generic, report.behaviour_base),
                           ("tuned", tuned, report.behaviour_tuned)):
        want = judged_rates(s, questions["advice"], judge=judge, samples_per_prompt=8, seed=0)
        assert rates["advice"] == want, name
    hook = wide.hook_name
    with torch.no_grad():
        def mean_features(s: Subject) -> torch.Tensor:
            ids, mask = s.encode(evals)
            f = wide.encode(wb.execution.run_to_hook(s.model, ids, hook))
            keep = mask.clone()
            keep[:, 0] = False
            return f[keep].double().mean(0)

        shift = mean_features(tuned) - mean_features(generic)
    moved = list(report.most_moved)
    assert torch.allclose(torch.as_tensor(report.actual_shift)[moved].double(), shift[moved],
                          atol=1e-4)
