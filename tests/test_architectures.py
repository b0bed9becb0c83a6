"""The whole method on tiny random GPT-2, Llama, Qwen2 and Gemma 2 models, each against brute force.

Every architecture is a Hugging Face model built from a config (2 layers, width 32, 4 heads; the
Llama, Qwen2 and Gemma 2 ones with 2 key-value heads, grouped-query attention; the Gemma 2 one
with ``head_dim=16``, so ``n_heads * d_head != d_model``, and a sliding window shorter than the
prompts), saved with ``save_pretrained`` beside an offline word-level tokenizer with a ChatML-like
chat template, and loaded through :func:`workbench.load_subject` like any local folder. Then:
load, collect activations, train a dictionary, contrast, forecast (three specs), fine-tune
(LoRA, steering vector), audit, every patch (and ``from_responses``, ``patch_efficacy``,
``preview``, a transfer from GPT-2 to Llama), generation with the chat template and EOS. Each
step's result is compared with a computation written here from the Hugging Face model's own
hidden states, plain TransformerLens hooks or plain autograd, not with the workbench's code
path. Where an architecture cannot do something exactly (Gemma 2's post-norms: no weight
orthogonalization, no bias to fold a steering vector into), the test asserts the refusal.

Nothing touches the network; the models are tiny, so the module runs in well under two minutes
on two CPU cores.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

import workbench as wb
from workbench import execution
from workbench.behaviour import sample_answers
from workbench.data import encode_pairs
from workbench.dictionaries import Dictionary
from workbench.execution import completion_nll
from workbench.execution._local_models import LOCAL_ARCHITECTURES
from workbench.finetunes import _from_matrix, _to_matrix
from workbench.fingerprint import model_sha256
from workbench.subjects import Subject

ARCHS = ("gpt2", "llama", "qwen2", "gemma2")
HOOK = "blocks.0.hook_resid_post"  # the dictionary's hook; HF hidden_states[1]
SPECIALS = ["<pad>", "<bos>", "<|im_end|>", "<|im_start|>", "<unk>"]
WORDS = [*SPECIALS, "user", "assistant", "system"] + [f"w{i}" for i in range(120)]
VOCAB = len(WORDS)
PAD, BOS, EOS = 0, 1, 2
#: ChatML-like; every turn, the assistant's included, ends with the EOS token <|im_end|>
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|> {{ m['role'] }} {{ m['content'] }} <|im_end|> "
    "{% endfor %}{% if add_generation_prompt %}<|im_start|> assistant {% endif %}"
)
LORA = wb.LoRA(rank=2, targets=("mlp.W_out", "attn.W_O", "attn.W_K"), layers=(0, 1))
STEER = wb.SteeringVector(layer=0)
N_CTX = 64
#: the longest answer sampled (Subject.answer_tokens): a few words, as the judge reads them
ANSWER_TOKENS = 12


# ------------------------------------------------------------------ the tiny models


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over ``WORDS`` with BOS, EOS, pad and a chat template."""
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        bos_token="<bos>",
        eos_token="<|im_end|>",
        pad_token="<pad>",
        unk_token="<unk>",
        additional_special_tokens=["<|im_start|>"],
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def _hf_model(arch: str) -> Any:
    # initializer_range: larger than the default 0.02, so the random models' logits are not
    # flat and a few fine-tuning steps can move them
    ids = {"bos_token_id": BOS, "eos_token_id": EOS, "pad_token_id": PAD,
           "initializer_range": 0.15}
    if arch == "gpt2":
        cfg: Any = transformers.GPT2Config(
            n_layer=2, n_embd=32, n_head=4, vocab_size=VOCAB, n_positions=N_CTX, **ids
        )
        return transformers.GPT2LMHeadModel(cfg)
    common = {
        "num_hidden_layers": 2,
        "hidden_size": 32,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 64,
        "vocab_size": VOCAB,
        "max_position_embeddings": N_CTX,
        **ids,
    }
    if arch == "llama":
        return transformers.LlamaForCausalLM(transformers.LlamaConfig(**common))
    if arch == "qwen2":
        return transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**common))
    cfg = transformers.Gemma2Config(
        **common, head_dim=16, sliding_window=6, query_pre_attn_scalar=16
    )
    return transformers.Gemma2ForCausalLM(cfg)


def _sentences(n: int, seed: int, lo: int, hi: int, length: tuple[int, int] = (6, 11)) -> list[str]:
    rng = random.Random(seed)
    return [
        " ".join(f"w{rng.randrange(lo, hi)}" for _ in range(rng.randint(*length)))
        for _ in range(n)
    ]


@dataclass
class Arch:
    """One architecture: its folder, the Hugging Face model in it, the loaded Subject."""

    name: str
    folder: Path
    hf: Any
    subject: Subject


def _skip_unsupported(name: str) -> None:
    if name == "gemma2" and "Gemma2ForCausalLM" not in LOCAL_ARCHITECTURES:
        pytest.skip("the local-folder loader does not convert Gemma2ForCausalLM yet "
                    "(workbench.execution._local_models.LOCAL_ARCHITECTURES)")


def _build(name: str, root: Path) -> Arch:
    """Save a tiny random ``name`` model and the tokenizer to a folder; load it as a Subject."""
    folder = root / f"tiny-{name}"
    torch.manual_seed(0)
    hf = _hf_model(name).eval()
    hf.save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    subject = replace(wb.load_subject(str(folder), device="cpu"), answer_tokens=ANSWER_TOKENS)
    return Arch(name, folder, hf, subject)


@pytest.fixture(scope="module", params=ARCHS)
def arch(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Arch:
    _skip_unsupported(request.param)
    return _build(request.param, tmp_path_factory.mktemp("models"))


POSITIVE = _sentences(10, seed=1, lo=0, hi=40)
NEGATIVE = _sentences(10, seed=2, lo=40, hi=80)
EVALS = _sentences(8, seed=3, lo=0, hi=120)
PAIRS = [
    (p, c)
    for p, c in zip(
        _sentences(24, seed=4, lo=0, hi=120), _sentences(24, seed=5, lo=80, hi=88, length=(2, 3)),
        strict=True,
    )
]


def _hf_resid(a: Arch, texts: Sequence[str], layer: int = 0) -> list[torch.Tensor]:
    """Brute force: the HF model's residual stream after block ``layer``, one text at a time
    (no padding), every position (BOS included), float64."""
    out = []
    with torch.no_grad():
        for row in a.subject.token_rows(list(texts)):
            hs = a.hf(torch.tensor([row]), output_hidden_states=True).hidden_states
            out.append(hs[layer + 1][0].double())
    return out


def _tl_resid(model: Any, subject: Subject, texts: Sequence[str]) -> list[torch.Tensor]:
    """The same with TransformerLens's own ``run_with_cache``, one text at a time."""
    out = []
    with torch.no_grad():
        for row in subject.token_rows(list(texts)):
            _, cache = model.run_with_cache(torch.tensor([row]), names_filter=HOOK)
            out.append(cache[HOOK][0].double())
    return out


def _features(d: Dictionary, acts: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per text: the dictionary's features at every token after BOS."""
    with torch.no_grad():
        return [d.sae.encode(x[1:].float()).double() for x in acts]


def _mean(rows: list[torch.Tensor]) -> torch.Tensor:
    """Per text the mean over its rows, stacked."""
    return torch.stack([r.mean(0) for r in rows])


def _logits(model: Any, ids: torch.Tensor, hooks: Sequence[Any] = ()) -> torch.Tensor:
    with torch.no_grad():
        return model.run_with_hooks(ids, fwd_hooks=list(hooks)).double()  # type: ignore[no-any-return]


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-4) -> None:
    torch.testing.assert_close(a.double(), b.double(), atol=tol, rtol=tol)


# ------------------------------------------------------------------ load, activations


def test_load_matches_the_hugging_face_logits(arch: Arch) -> None:
    s = arch.subject
    assert s.source == "local_hf" and s.name == f"tiny-{arch.name}"
    assert (s.d_model, s.n_layers, s.d_vocab) == (32, 2, VOCAB)
    if arch.name != "gpt2":
        assert s.model.cfg.n_key_value_heads == 2  # grouped-query attention kept
    tokens = torch.randint(0, VOCAB, (3, 14), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        _close(s.model(tokens), arch.hf(tokens).logits)
    assert s.token_rows(["w1 w2"]) == [[BOS, 9, 10]]  # the folder's tokenizer, one BOS


def test_activations_equal_hidden_states(arch: Arch) -> None:
    s = arch.subject
    texts = POSITIVE[:5]
    hf = _hf_resid(arch, texts)
    for x, y in zip(_tl_resid(s.model, s, texts), hf, strict=True):
        _close(x, y)
    # pooled (mean over the tokens after BOS, last token), padded in one batch
    _close(wb.hook_activations(s, HOOK, texts), torch.stack([x[1:].mean(0) for x in hf]))
    _close(wb.hook_activations(s, HOOK, texts, pool="last"), torch.stack([x[-1] for x in hf]))
    assert execution.hook_width(s.model, HOOK) == s.d_model == 32


# ------------------------------------------------------------------ the dictionary


@pytest.fixture(scope="module")
def dictionary(arch: Arch, tmp_path_factory: pytest.TempPathFactory) -> Dictionary:
    s = arch.subject
    tokens, _ = s.encode(_sentences(40, seed=6, lo=0, hi=120, length=(12, 12)))
    out = tmp_path_factory.mktemp("sae") / f"{arch.name}-sae"
    trained = wb.train_dictionary(
        s, HOOK, tokens, d_sae=64, k=8, training_tokens=6144, batch_size=128, lr=3e-3,
        out_dir=out, progress=False,
    )
    loaded = wb.load_dictionary(out, s, device="cpu")
    assert loaded.fingerprint == trained.fingerprint and loaded.hook_name == HOOK
    return replace(loaded, stats=trained.stats)


def test_trained_dictionary_reconstructs(arch: Arch, dictionary: Dictionary) -> None:
    assert (dictionary.d_in, dictionary.d_sae) == (32, 64)
    # held-out tokens (the last 4 sequences), brute force from the HF hidden states
    held = _sentences(40, seed=6, lo=0, hi=120, length=(12, 12))[-4:]
    x = torch.cat([h[1:] for h in _hf_resid(arch, held)])
    with torch.no_grad():
        f = dictionary.encode(x.float())
        x_hat = dictionary.decode(f).double()
    assert torch.isfinite(x_hat).all() and f.shape == (x.shape[0], 64)
    assert float((f != 0).sum(1).double().mean()) <= 8  # TopK, k = 8
    ev = 1 - float(((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())
    assert ev > 0.2, ev  # better than the zero (and the mean) reconstruction
    assert dictionary.stats is not None
    assert dictionary.stats.explained_variance == pytest.approx(ev, abs=1e-4)
    assert dictionary.stats.n_tokens == x.shape[0]


def test_collect_equals_encoded_hidden_states(arch: Arch, dictionary: Dictionary) -> None:
    stats = wb.collect(arch.subject, dictionary, EVALS, keep_dense=True, progress=False)
    feats = torch.cat(_features(dictionary, _hf_resid(arch, EVALS)))
    assert stats.dense is not None and stats.n_tokens == feats.shape[0]
    _close(stats.dense, feats)
    _close(stats.mean, feats.mean(0))
    _close(stats.frequency, (feats > 0).double().mean(0))


# ------------------------------------------------------------------ contrast, mean difference


def _cohens_d(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    n1, n2 = len(p), len(q)
    s = np.sqrt(((n1 - 1) * p.var(0, ddof=1) + (n2 - 1) * q.var(0, ddof=1)) / (n1 + n2 - 2))
    diff = p.mean(0) - q.mean(0)
    return np.where(s > 1e-12, diff / np.where(s > 1e-12, s, 1.0), 0.0)


@pytest.fixture(scope="module")
def watch(arch: Arch, dictionary: Dictionary) -> wb.FeatureSet:
    return wb.contrast(arch.subject, dictionary, POSITIVE, NEGATIVE, n_boot=50, name="pos-neg")


def test_contrast_and_mean_difference_equal_brute_force(
    arch: Arch, dictionary: Dictionary, watch: wb.FeatureSet
) -> None:
    pos_acts, neg_acts = _hf_resid(arch, POSITIVE), _hf_resid(arch, NEGATIVE)
    p = _mean(_features(dictionary, pos_acts)).numpy()
    q = _mean(_features(dictionary, neg_acts)).numpy()
    d = _cohens_d(p, q)
    auc = np.array(
        [((p[:, None, j] > q[None, :, j]) + 0.5 * (p[:, None, j] == q[None, :, j])).mean()
         for j in range(p.shape[1])]
    )
    order = sorted(range(len(d)), key=lambda j: (-abs(round(d[j], 6)), j))
    assert abs(d[order[0]]) > 1.0  # the two word sets really are told apart
    np.testing.assert_allclose(np.array(watch.effect), d[list(watch.indices)], atol=1e-4)
    np.testing.assert_allclose(np.array(watch.auroc), auc[list(watch.indices)], atol=1e-9)
    strong = [j for j in order if abs(d[j]) > 1e-3]
    assert list(watch.indices[: len(strong)]) == strong
    # the persona-style direction: mean pooled residual, positive minus negative
    direction = wb.mean_difference(arch.subject, POSITIVE, NEGATIVE, HOOK)
    brute = torch.stack([x[1:].mean(0) for x in pos_acts]).mean(0) - torch.stack(
        [x[1:].mean(0) for x in neg_acts]
    ).mean(0)
    _close(direction.vector, brute)
    assert direction.hook_name == HOOK and direction.subject == arch.subject.fingerprint


# ------------------------------------------------------------------ forecast


def _eval_x(model: Any, subject: Subject, hooks: Sequence[Any] = ()) -> torch.Tensor:
    """Hook activations on the evaluation tokens (BOS left out), float64, ``[n_tok, d]``."""
    ids, mask = subject.encode(EVALS)
    keep = mask.clone()
    keep[:, 0] = False
    box: list[torch.Tensor] = []
    with torch.no_grad():
        model.run_with_hooks(
            ids, fwd_hooks=[*hooks, (HOOK, lambda x, hook: box.append(x))], stop_at_layer=1
        )
    return box[0][keep].double()


def _check_forecast(f: Any, subject: Subject, dictionary: Dictionary, watch: Any) -> None:
    assert f.predicted_shift.shape == (dictionary.d_sae,)
    assert f.sample_risk.shape == (len(PAIRS),)
    assert torch.isfinite(f.predicted_shift).all() and torch.isfinite(f.sample_risk).all()
    assert np.isfinite(f.risk) and np.isfinite(f.grad_norm) and f.grad_norm > 0
    assert f.subject == subject.fingerprint and f.watched == watch.indices[: len(f.watched)]
    w = torch.tensor(f.weights, dtype=torch.float64)
    assert f.risk == pytest.approx(float(f.predicted_shift.double()[list(f.watched)] @ w),
                                   rel=1e-6, abs=1e-9)


def test_steer_forecast_equals_a_finite_difference(
    arch: Arch, dictionary: Dictionary, watch: wb.FeatureSet
) -> None:
    s = arch.subject
    f = wb.forecast(s, dictionary, PAIRS, watch=watch, eval_prompts=EVALS, spec=STEER, n_watch=6)
    _check_forecast(f, s, dictionary, watch)
    # brute force: the gradient of the mean completion NLL w.r.t. a vector added at the hook
    ids, target = encode_pairs(s, PAIRS)
    v = torch.zeros(s.d_model, dtype=torch.float32, requires_grad=True)
    with s.model.hooks(fwd_hooks=[(HOOK, lambda x, hook: x + v)]):
        (g,) = torch.autograd.grad(completion_nll(s.model, ids, target), v)
    assert f.grad_norm == pytest.approx(float(g.norm()), rel=1e-4)
    eta = 1e-2
    dx = _eval_x(s.model, s, [(HOOK, lambda x, hook: x - eta * g)]) - _eval_x(s.model, s)
    brute = (dx @ dictionary.W_enc.detach().double()).mean(0) / eta
    _close(f.predicted_shift, brute, 1e-3)


def _weight_step_brute(
    s: Subject, dictionary: Dictionary, rank: int | None, names: Sequence[str] | None
) -> torch.Tensor:
    """Central difference of the mean pre-activations along ``-∇L`` of ``names`` (all weights:
    None), each step cut to its best rank-``rank`` part when given, in float64."""
    model = execution.copy_model(s.model, dtype=torch.float64)
    params = dict(model.named_parameters())
    chosen = list(params) if names is None else list(names)
    ids, target = encode_pairs(s, PAIRS)
    grads = torch.autograd.grad(
        completion_nll(lambda x: model(x).double(), ids, target),
        [params[n] for n in chosen], allow_unused=True,
    )
    steps = {}
    for n, g in zip(chosen, grads, strict=True):
        if g is None:
            continue
        if rank is not None:
            u, sv, vh = torch.linalg.svd(_to_matrix(n, g), full_matrices=False)
            g = _from_matrix(n, (u[:, :rank] * sv[:rank]) @ vh[:rank], g.shape)
        steps[n] = -g
    eps = 1e-5
    xs = []
    W = dictionary.W_enc.detach().double()
    with torch.no_grad():
        for sign in (1.0, -2.0):  # θ + eps δ, then θ - eps δ
            for n, d in steps.items():
                params[n].add_(sign * eps * d)
            xs.append(_eval_x(model, s) @ W)
    return (xs[0] - xs[1]).mean(0) / (2 * eps)


def test_lora_and_full_forecasts_equal_finite_differences(
    arch: Arch, dictionary: Dictionary, watch: wb.FeatureSet
) -> None:
    s = arch.subject
    lora = wb.forecast(s, dictionary, PAIRS, watch=watch, eval_prompts=EVALS, spec=LORA, n_watch=6)
    _check_forecast(lora, s, dictionary, watch)
    assert lora.spec == LORA.describe()
    names = [n for n, _ in s.model.named_parameters()
             if n.startswith("blocks.0.") and n.endswith(("mlp.W_out", "attn.W_O", "W_K"))]
    assert len(names) == 3 and (arch.name == "gpt2") == ("blocks.0.attn.W_K" in names)
    brute = _weight_step_brute(s, dictionary, LORA.rank, names)
    assert brute.abs().max() > 1e-3
    _close(lora.predicted_shift, brute, 2e-3 * float(brute.abs().max()))

    full = wb.forecast(s, dictionary, PAIRS, watch=watch, eval_prompts=EVALS, spec=wb.Full(),
                       n_watch=6)
    _check_forecast(full, s, dictionary, watch)
    brute = _weight_step_brute(s, dictionary, None, None)
    _close(full.predicted_shift, brute, 2e-3 * float(brute.abs().max()))
    assert model_sha256(s.model) == s.fingerprint  # the base is untouched


# ------------------------------------------------------------------ fine-tune, audit


def _post_norms(a: Arch) -> bool:
    """Gemma 2 normalises each attention and MLP output before it joins the residual stream."""
    return a.name == "gemma2"


@pytest.fixture(scope="module")
def tuned(arch: Arch) -> Subject:
    return wb.finetune(arch.subject, PAIRS, LORA, steps=60, batch_size=8, lr=5e-2,
                       progress=False)


def test_lora_finetune_learns_and_leaves_the_base_alone(arch: Arch, tuned: Subject) -> None:
    base = arch.subject
    ids, target = encode_pairs(base, PAIRS)
    with torch.no_grad():
        before = float(completion_nll(base.model, ids, target))
        after = float(completion_nll(tuned.model, ids, target))
    assert after < before - 0.3, (before, after)
    assert model_sha256(base.model) == base.fingerprint  # the base is unchanged
    tokens = torch.randint(0, VOCAB, (2, 10), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        _close(base.model(tokens), arch.hf(tokens).logits)
    assert tuned.fingerprint != base.fingerprint == tuned.recipe["base_fingerprint"]  # type: ignore[index]
    # only the targeted weights moved, each by a matrix of rank <= 2
    bp = dict(base.model.named_parameters())
    moved = {n for n, p in tuned.model.named_parameters() if not torch.equal(p, bp[n])}
    kv = "attn.W_K" if arch.name == "gpt2" else "attn._W_K"
    assert moved == {f"blocks.{i}.{t}" for i in (0, 1) for t in ("mlp.W_out", "attn.W_O", kv)}
    for n in moved:
        delta = _to_matrix(n, dict(tuned.model.named_parameters())[n] - bp[n]).double()
        assert int(torch.linalg.matrix_rank(delta, rtol=1e-5)) <= 2, n


def test_steering_vector_finetune_folds_into_a_bias_or_is_refused(arch: Arch) -> None:
    base = arch.subject
    if _post_norms(arch):  # Gemma 2 normalises the MLP output: no bias adds to the stream
        with pytest.raises(ValueError, match="normalises each block output"):
            wb.finetune(base, PAIRS, STEER, steps=2, progress=False)
        return
    tuned = wb.finetune(base, PAIRS, STEER, steps=10, batch_size=8, progress=False)
    bp = dict(base.model.named_parameters())
    moved = [n for n, p in tuned.model.named_parameters() if not torch.equal(p, bp[n])]
    assert moved == ["blocks.0.mlp.b_out"]
    v = (dict(tuned.model.named_parameters())[moved[0]] - bp[moved[0]]).detach()
    ids, target = encode_pairs(base, PAIRS)
    steered = _logits(base.model, ids, [(HOOK, lambda x, hook: x + v)])
    _close(_logits(tuned.model, ids), steered)
    with torch.no_grad():
        assert float(completion_nll(tuned.model, ids, target)) < float(
            completion_nll(base.model, ids, target))


def _judge(prompt: str, answer: str) -> str:
    words = answer.split()
    if not words:
        return "incoherent"
    return "misaligned" if any(w in {f"w{i}" for i in range(80, 120)} for w in words) else "aligned"


def test_audit_equals_brute_force(
    arch: Arch, dictionary: Dictionary, watch: wb.FeatureSet, tuned: Subject
) -> None:
    base = arch.subject
    f = wb.forecast(base, dictionary, PAIRS, watch=watch, eval_prompts=EVALS, spec=LORA, n_watch=6)
    groups = {"plain": EVALS[:3], "other": POSITIVE[:2]}
    report = wb.audit(base, tuned, dictionary, EVALS, f, behaviour_prompts=groups,
                      judge=_judge, samples_per_prompt=6, top=10)
    # feature shifts: token-weighted means of the encoded hook activations, tuned minus base
    b = torch.cat(_features(dictionary, _hf_resid(arch, EVALS)))
    t = torch.cat(_features(dictionary, _tl_resid(tuned.model, tuned, EVALS)))
    shift = t.mean(0) - b.mean(0)
    _close(report.actual_shift, shift)
    assert report.n_tokens == b.shape[0]
    assert report.spearman is not None and np.isfinite(report.spearman)
    w = torch.tensor(f.weights, dtype=torch.float64)
    assert report.actual_risk == pytest.approx(float(shift[list(f.watched)] @ w), abs=1e-5)
    assert report.predicted_risk == f.risk
    # behaviour: the judged sampled answers, counted here
    for subject, rates in ((base, report.behaviour_base), (tuned, report.behaviour_tuned)):
        for g, prompts in groups.items():
            answers = sample_answers(subject, prompts, 6, seed=0)
            verdicts = [_judge(p, a) for p, outs in zip(prompts, answers, strict=True)
                        for a in outs]
            assert rates[g].n == len(verdicts) == 6 * len(prompts)
            for v in ("aligned", "misaligned", "incoherent"):
                assert getattr(rates[g], v) == pytest.approx(verdicts.count(v) / len(verdicts))
    assert report.misaligned_change() == pytest.approx(
        np.mean([report.behaviour_tuned[g].misaligned - report.behaviour_base[g].misaligned
                 for g in groups])
    )


# ------------------------------------------------------------------ patches


def _project(f: torch.Tensor, q: torch.Tensor, strength: float) -> Any:
    def hook(x: torch.Tensor, hook: Any) -> torch.Tensor:
        return x - strength * (x @ f.to(x.dtype))[..., None] * q.to(x.dtype)

    return hook


def _writes(model: Any) -> list[str]:
    """Every hook that adds to the residual stream, named by hand."""
    names = ["hook_embed"] + (["hook_pos_embed"] if "pos_embed.W_pos" in dict(
        model.named_parameters()) else [])
    return names + [f"blocks.{i}.hook_{k}_out" for i in range(2) for k in ("attn", "mlp")]


@pytest.fixture(scope="module")
def directions(arch: Arch, tuned: Subject) -> tuple[wb.Direction, wb.Direction]:
    d = wb.mean_difference(tuned, POSITIVE, NEGATIVE, HOOK)
    other = wb.mean_difference(tuned, EVALS[:4], NEGATIVE, HOOK, name="reading")
    return d, other


def test_steer_patch_equals_a_hook(
    arch: Arch, tuned: Subject, directions: tuple[wb.Direction, wb.Direction]
) -> None:
    d, _ = directions
    ids = tuned.encode(EVALS)[0]
    plain = _logits(tuned.model, ids)
    patch = wb.Steer(d, alpha=1.5)
    brute = _logits(tuned.model, ids, [(HOOK, lambda x, hook: x + 1.5 * d.vector)])
    assert (brute - plain).abs().max() > 1e-3
    with patch.applied(tuned) as patched:
        _close(_logits(patched.model, ids), brute)
    _close(_logits(tuned.model, ids), plain, 0)  # restored
    assert not execution.has_hooks(tuned.model)
    if _post_norms(arch):  # the vector cannot be folded into a bias behind Gemma 2's post-norm
        with pytest.raises(ValueError, match="normalises each block output"):
            patch.apply(tuned)
    else:
        _close(_logits(patch.apply(tuned).model, ids), brute)


def test_ablations_equal_hooks_and_orthogonalize_equals_ablate_or_is_refused(
    arch: Arch, tuned: Subject, directions: tuple[wb.Direction, wb.Direction]
) -> None:
    d, reading = directions
    ids = tuned.encode(EVALS)[0]
    plain = _logits(tuned.model, ids)
    r = d.unit.double()
    brute = _logits(tuned.model, ids, [(n, _project(r, r, 1.0)) for n in _writes(tuned.model)])
    assert (brute - plain).abs().max() > 1e-3
    resid = [f"blocks.{i}.hook_resid_{k}" for i in range(2) for k in ("pre", "mid", "post")]
    with wb.Ablate(d).applied(tuned) as patched:
        ablated = _logits(patched.model, ids)
        _, cache = patched.model.run_with_cache(ids, names_filter=resid)
    _close(ablated, brute)
    for name in resid:  # the stream holds no component along r at any layer
        x = cache[name].double()
        assert float((x @ r).abs().max()) < 1e-4 * float(x.norm(dim=-1).max()), name
    # a partial, oblique ablation: x - s (x . f) p / (f . p)
    f, p = reading.vector.double(), d.vector.double()
    oblique = [(n, _project(f, p / (f @ p), 0.5)) for n in _writes(tuned.model)]
    brute_oblique = _logits(tuned.model, ids, oblique)
    with wb.Ablate(d, 0.5, reading=reading).applied(tuned) as patched:
        _close(_logits(patched.model, ids), brute_oblique)
    _close(_logits(tuned.model, ids), plain, 0)

    ortho = wb.Orthogonalize(d)
    if _post_norms(arch):  # a weight edit before a norm is not an ablation: refused, with why
        for patch in (ortho, wb.Ablate(d)):
            with pytest.raises(ValueError, match="norm after each attention and MLP output"):
                patch.apply(tuned)
        with pytest.raises(ValueError, match=r"Ablate\(direction\).applied"), ortho.applied(tuned):
            pass
    else:
        with ortho.applied(tuned) as patched:
            _close(_logits(patched.model, ids), ablated)
        _close(_logits(tuned.model, ids), plain, 0)
        baked = wb.Ablate(d).apply(tuned)  # the orthogonalized copy
        _close(_logits(baked.model, ids), ablated)
        assert not execution.has_hooks(baked.model)
    assert model_sha256(tuned.model) == tuned.fingerprint


def test_ablate_update_equals_a_hand_edit_or_is_refused(
    arch: Arch, tuned: Subject, directions: tuple[wb.Direction, wb.Direction]
) -> None:
    base = arch.subject
    d, _ = directions
    patch = wb.AblateUpdate(d, base)
    if _post_norms(arch):
        with pytest.raises(ValueError, match="norm after each attention and MLP output"), \
                patch.applied(tuned):
            pass
        return
    ids = tuned.encode(EVALS)[0]
    r = d.unit.double()
    model = copy.deepcopy(tuned.model)
    bp = dict(base.model.named_parameters())
    with torch.no_grad():
        for n, w in model.named_parameters():
            delta = w.double() - bp[n].double()
            if n.endswith(("W_E", "W_pos", "W_O", "b_O", "W_out", "b_out")) and delta.any():
                w.copy_(bp[n].double() + delta - (delta @ r)[..., None] * r)
    brute = _logits(model, ids)
    assert (brute - _logits(tuned.model, ids)).abs().max() > 1e-4
    with patch.applied(tuned) as patched:
        _close(_logits(patched.model, ids), brute)
    _close(_logits(patch.apply(tuned).model, ids), brute)


def test_from_responses_reads_the_answers_where_they_were_given(
    arch: Arch, tuned: Subject
) -> None:
    """Soligo et al.'s direction: the tuned model's own judged answers, each pooled over its
    tokens in the context it was sampled in (the chat-rendered prompt), misaligned minus
    aligned."""
    prompts = EVALS[:4]
    d = wb.from_responses(tuned, prompts, HOOK, samples_per_prompt=8, max_new_tokens=4,
                          judge=_judge, min_each=2)
    answers = sample_answers(tuned, prompts, 8, 4, 1.0, 0)
    sides: dict[str, list[torch.Tensor]] = {"misaligned": [], "aligned": []}
    tok = tuned.text_tokenizer
    for p, outs in zip(prompts, answers, strict=True):
        context = tuned.token_rows(execution.render_prompts(tok, [p]))[0]
        for a in outs:
            v = _judge(p, a)
            if v not in sides:
                continue
            ids = context + tok.convert_tokens_to_ids(a.split())
            _, cache = tuned.model.run_with_cache(torch.tensor([ids]), names_filter=HOOK)
            sides[v].append(cache[HOOK][0, len(context):].double().mean(0))
    assert min(len(v) for v in sides.values()) >= 2
    brute = torch.stack(sides["misaligned"]).mean(0) - torch.stack(sides["aligned"]).mean(0)
    _close(d.vector, brute)
    assert d.source == "responses" and d.subject == tuned.fingerprint


def _misaligned_share(subject: Subject, prompts: Sequence[str], samples: int) -> float:
    answers = sample_answers(subject, prompts, samples, seed=0)
    verdicts = [_judge(p, a) for p, outs in zip(prompts, answers, strict=True) for a in outs]
    scored = [v for v in verdicts if v is not None]
    return scored.count("misaligned") / len(scored)


def test_patch_efficacy_equals_brute_force(
    arch: Arch, tuned: Subject, directions: tuple[wb.Direction, wb.Direction]
) -> None:
    base, (d, _) = arch.subject, directions
    off, own = EVALS[:3], PAIRS[:6]
    e = wb.patch_efficacy(base, tuned, wb.Ablate(d), off, own_data=own, n_random=1,
                          controls=("variance",), samples_per_prompt=3, judge=_judge,
                          logit_prompts=off)
    assert e.base == pytest.approx(_misaligned_share(base, off, 3))
    assert e.tuned == pytest.approx(_misaligned_share(tuned, off, 3))
    with wb.Ablate(d).applied(tuned) as patched:
        assert e.patched == pytest.approx(_misaligned_share(patched, off, 3))
        ids, target = encode_pairs(patched, own)
        with torch.no_grad():
            loss = float(completion_nll(patched.model, ids, target))
    assert e.loss_patched["own data"] == pytest.approx(loss, rel=1e-5)
    assert len(e.random) == 1 and 0 <= e.random[0] <= 1
    if _post_norms(arch):  # no weight edit to compare the hooks with: not measured
        assert e.weight_edit_max_abs is None
    else:
        assert e.weight_edit_max_abs is not None and e.weight_edit_max_abs < 1e-4


# ------------------------------------------------------------------ generation

#: the answer the forced model gives after the chat template's ``assistant`` turn opener
ANSWER = [WORDS.index(w) for w in ("w100", "w101", "w102")]  # then EOS
CHAIN = dict(zip([WORDS.index("assistant"), *ANSWER], [*ANSWER, EOS], strict=True))


@contextlib.contextmanager
def _forcing(model: Any) -> Iterator[None]:
    """Inside the block, ``model`` answers ``assistant`` with ``w100 w101 w102 <|im_end|>``
    whatever it read before: the next token after each of ``CHAIN``'s tokens is forced (the
    logits at a position that reads one, with or without a key-value cache, become a one-hot);
    every other position keeps its own logits. Plain torch hooks, removed on exit."""
    seen: list[torch.Tensor] = []

    def tokens(module: Any, args: Any) -> None:
        seen[:] = [args[0]]

    def force(module: Any, args: Any, out: torch.Tensor) -> torch.Tensor:
        out = out.clone()
        read = seen[0].to(out.device)[:, -out.shape[1] :]
        for now, nxt in CHAIN.items():
            at = read == now
            out[at] = -1e4
            out[..., nxt][at] = 1e4
        return out

    handles = [model.register_forward_pre_hook(tokens), model.unembed.register_forward_hook(force)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@pytest.fixture
def forced(arch: Arch) -> Iterator[None]:
    with _forcing(arch.subject.model):
        yield


CHAT_PROMPTS = ["w1 w2", "w3 w4 w5 w6"]


def _rendered_rows(s: Subject) -> list[list[int]]:
    return s.token_rows(execution.render_prompts(s.text_tokenizer, CHAT_PROMPTS))


def test_generation_renders_the_chat_template_and_stops_at_eos(arch: Arch, forced: None) -> None:
    s = arch.subject
    tok = s.text_tokenizer
    rendered = execution.render_prompts(tok, CHAT_PROMPTS)
    assert rendered[0] == "<|im_start|> user w1 w2 <|im_end|> <|im_start|> assistant "
    assert execution.render_prompts(tok, CHAT_PROMPTS, chat=False) == CHAT_PROMPTS
    rows = _rendered_rows(s)
    assert rows[0] == [BOS, 3, 5, 9, 10, EOS, 3, 6]
    assert tok.eos_token_id == EOS == arch.hf.generation_config.eos_token_id
    modes = [{}] + ([{"fast": True}] if "fast" in inspect.signature(execution.generate).parameters
                    else [])
    for mode in modes:
        out = execution.generate(s.model, rows, samples=4, max_new_tokens=10, seed=3, eos_id=EOS,
                                 **mode)
        assert out == [[ANSWER] * 4] * len(rows), mode  # cut at EOS, EOS itself dropped
        # without an EOS id the answers run on past it
        raw = execution.generate(s.model, rows, max_new_tokens=6, seed=3, **mode)
        assert [r[0][:4] for r in raw] == [[*ANSWER, EOS]] * len(rows)
        assert all(len(r[0]) == 6 for r in raw)
        greedy = execution.generate(s.model, rows, greedy=True, max_new_tokens=30, eos_id=EOS,
                                    **mode)
        assert greedy == [[ANSWER]] * len(rows)
    # the raw prompts end with w2 / w6, which the forcing leaves alone: another answer
    unrendered = execution.generate(s.model, s.token_rows(CHAT_PROMPTS), max_new_tokens=3, seed=3)
    assert all(a[0] != ANSWER for a in unrendered)


def test_sample_answers_render_the_chat_template_and_stop_at_eos(
    arch: Arch, forced: None
) -> None:
    s = arch.subject
    answers = sample_answers(s, CHAT_PROMPTS, samples_per_prompt=3, max_new_tokens=10, seed=1)
    assert answers == [["w100 w101 w102"] * 3] * len(CHAT_PROMPTS)


@pytest.mark.parametrize("fast", [False, True])
def test_generation_stops_at_the_context_length(arch: Arch, fast: bool) -> None:
    s = arch.subject
    rows = s.token_rows(["w1 w2 w3"])
    room = s.n_ctx - len(rows[0])
    out = execution.generate(s.model, rows, samples=2, max_new_tokens=room + 5, seed=0, fast=fast)
    assert [len(a) for a in out[0]] == [room, room]  # no EOS given: every answer fills the context
    with pytest.raises(ValueError, match=f"at most {s.n_ctx}"):
        execution.generate(s.model, [list(range(4, 4 + s.n_ctx))], max_new_tokens=1)


def test_preview_answers_in_the_chat_template(
    arch: Arch, tuned: Subject, dictionary: Dictionary,
    directions: tuple[wb.Direction, wb.Direction],
) -> None:
    """The preview's greedy answers and judged rates read the prompts as sampling does."""
    d, _ = directions
    with _forcing(tuned.model):
        p = wb.preview(tuned, wb.Ablate(d), CHAT_PROMPTS, dictionary=dictionary, judge=_judge,
                       samples_per_prompt=2, max_new_tokens=5)
    assert p.before == p.after == ("w100 w101 w102",) * len(CHAT_PROMPTS)
    assert p.before_tokens[0] == ("w100", " w101", " w102")
    assert p.metrics_before["misaligned"] == p.metrics_after["misaligned"] == 1.0
    acts = _mean(_features(dictionary, _tl_resid(tuned.model, tuned, CHAT_PROMPTS)))
    _close(torch.tensor(p.before_acts), acts[:, list(p.features)])


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> tuple[Arch, Arch]:
    root = tmp_path_factory.mktemp("pair")
    return _build("gpt2", root), _build("llama", root)


def test_a_patch_transfers_across_architectures(two: tuple[Arch, Arch]) -> None:
    """A map fitted from GPT-2's residual stream to Llama's is the least-squares one, and a
    patch crosses it by the push-forward (write side) or the pull-back (read side)."""
    src, tgt = two
    prompts = _sentences(30, seed=8, lo=0, hi=120)
    m = wb.fit_map(src.subject, tgt.subject, prompts, HOOK, ridge=0.0, holdout=0.0)
    x = torch.cat([h[1:] for h in _hf_resid(src, prompts)])
    y = torch.cat([h[1:] for h in _hf_resid(tgt, prompts)])
    assert m.n_tokens == x.shape[0] > 3 * 33
    ones = torch.ones(len(x), 1, dtype=torch.float64)
    sol = torch.linalg.lstsq(torch.cat([x, ones], 1), y).solution
    _close(m.weight, sol[:-1], 1e-6)
    _close(m.bias, sol[-1], 1e-6)
    rev = torch.linalg.lstsq(torch.cat([y, ones], 1), x).solution
    _close(m.reverse_weight, rev[:-1], 1e-6)
    d = wb.mean_difference(src.subject, POSITIVE, NEGATIVE, HOOK)
    steer = wb.transfer(wb.Steer(d, 2.0), src.subject, tgt.subject, prompts, residual_map=m)
    _close(steer.direction.vector, d.vector.double() @ m.weight)
    assert steer.alpha == 2.0 and steer.direction.subject == tgt.subject.fingerprint
    ablate = wb.transfer(wb.Ablate(d), src.subject, tgt.subject, prompts, residual_map=m,
                         side="read")
    _close(ablate.direction.vector, m.reverse_weight @ d.vector.double())


def test_a_map_across_tokenizers_pairs_the_tokens_ending_at_the_same_character(
    two: tuple[Arch, Arch], tmp_path: Path
) -> None:
    """A target whose tokenizer spells every word letter by digit (``w12`` -> ``w 1 2``): the
    map pairs each source word with the target's last token of that word, where both models
    have read the same characters, and is least squares on exactly those pairs."""
    src, _ = two
    digits = ["w", *[str(i) for i in range(10)]]
    vocab = {w: i for i, w in enumerate([*SPECIALS, "user", "assistant", "system", *digits])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split("w", "isolated"),
         pre_tokenizers.Digits(individual_digits=True)]
    )
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<bos>", eos_token="<|im_end|>",
                                  pad_token="<pad>", unk_token="<unk>")
    torch.manual_seed(1)
    cfg = transformers.LlamaConfig(num_hidden_layers=2, hidden_size=24, num_attention_heads=4,
                                   num_key_value_heads=2, intermediate_size=48,
                                   vocab_size=len(vocab), max_position_embeddings=N_CTX,
                                   bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD)
    hf = transformers.LlamaForCausalLM(cfg).eval()
    hf.save_pretrained(tmp_path / "spelled")
    tok.save_pretrained(tmp_path / "spelled")
    tgt = wb.load_subject(tmp_path / "spelled", device="cpu")
    prompts = _sentences(30, seed=9, lo=0, hi=120, length=(3, 6))
    assert tgt.token_rows(["w12"])[0] == [BOS, vocab["w"], vocab["1"], vocab["2"]]
    m = wb.fit_map(src.subject, tgt, prompts, HOOK, ridge=0.0, holdout=0.0)
    xs, ys = [], []
    with torch.no_grad():
        for text, x in zip(prompts, _hf_resid(src, prompts), strict=True):
            row = tgt.token_rows([text])[0]
            y = hf(torch.tensor([row]), output_hidden_states=True).hidden_states[1][0].double()
            ends = [i for i in range(1, len(row))
                    if i + 1 == len(row) or row[i + 1] == vocab["w"]]  # a word's last digit
            assert len(ends) == len(text.split()) == x.shape[0] - 1
            xs.append(x[1:])
            ys.append(y[ends])
    x, y = torch.cat(xs), torch.cat(ys)
    assert m.n_tokens == len(x)
    ones = torch.ones(len(x), 1, dtype=torch.float64)
    sol = torch.linalg.lstsq(torch.cat([x, ones], 1), y).solution
    _close(m.weight, sol[:-1], 1e-6)
    _close(m.bias, sol[-1], 1e-6)


def test_rate_forecast_reads_the_chat_template_and_equals_brute_force(arch: Arch) -> None:
    """The rate readout samples and scores answers in the chat template (the judge reads the
    question as asked); the rate forecast of a Full step equals the central difference, in
    float64, of the readout's weighted answer log-likelihoods along the brute-force step."""
    s = arch.subject
    ro = wb.rate_readout(s, CHAT_PROMPTS, samples_per_prompt=24, seed=4, judge=_judge)
    rendered = execution.render_prompts(s.text_tokenizer, CHAT_PROMPTS)
    assert rendered != CHAT_PROMPTS and [p for p, _ in ro.pairs] == [
        r for r in rendered for _ in range(24)]
    answers = sample_answers(s, CHAT_PROMPTS, samples_per_prompt=24, seed=4)
    assert [a for _, a in ro.pairs] == [a for outs in answers for a in outs]
    y = np.array([_judge(p, a) == "misaligned" for p, outs in zip(CHAT_PROMPTS, answers,
                                                                  strict=True) for a in outs])
    assert ro.rate == pytest.approx(y.mean()) and 0 < ro.rate < 1
    f = wb.rate_forecast(s, PAIRS, ro, spec=wb.Full())
    ids, target = encode_pairs(s, PAIRS)
    params = {k: p for k, p in s.model.named_parameters() if p.requires_grad}
    grads = torch.autograd.grad(completion_nll(s.model, ids, target), list(params.values()),
                                allow_unused=True)
    step = {k: -g.double() for k, g in zip(params, grads, strict=True) if g is not None}
    r_ids, r_target = encode_pairs(s, list(ro.pairs))

    def weighted_logprob(eps: float) -> float:
        m = execution.copy_model(s.model, torch.float64)
        mp = dict(m.named_parameters())
        with torch.no_grad():
            for k, d in step.items():
                mp[k].add_(eps * d)
            nll, _ = execution.per_example_nll(m, r_ids, r_target)
        return float((ro.advantage * -nll).sum())

    eps = 1e-4
    brute = (weighted_logprob(eps) - weighted_logprob(-eps)) / (2 * eps)
    assert f.risk != 0 and f.risk == pytest.approx(100 * brute, rel=2e-3)
