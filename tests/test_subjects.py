"""Tests for workbench.subjects: TransformerLens names offline, local Hugging Face folders.

Nothing here touches the network or needs a Hugging Face cache: every test points ``HF_HOME`` at
a temporary folder, and the "hub" is either switched off (``HF_HUB_OFFLINE``) or an endpoint on
localhost that refuses connections. Models are tiny random ones written with ``transformers``,
with a word-level tokenizer built by the ``tokenizers`` library.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from workbench._hub import hub_reachable as _hub_reachable
from workbench.subjects import Subject, load_subject

VOCAB = 48
WORDS = ["<|endoftext|>", "<unk>"] + [f"w{i}" for i in range(VOCAB - 2)]
UNREACHABLE = "http://127.0.0.1:9"  # the discard port: connection refused at once


@pytest.fixture(autouse=True)
def _isolated_hf(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty Hugging Face home, an unreachable hub, and no offline switch by default."""
    home = tmp_path / "hf-home"
    home.mkdir()
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_ENDPOINT", UNREACHABLE)
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    return home


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over ``WORDS`` (nothing downloaded)."""
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tk,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        unk_token="<unk>",
    )


def _gpt2() -> Any:
    return transformers.GPT2LMHeadModel(
        transformers.GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=VOCAB, n_positions=64)
    )


def _neox() -> Any:
    return transformers.GPTNeoXForCausalLM(
        transformers.GPTNeoXConfig(
            num_hidden_layers=2,
            hidden_size=32,
            num_attention_heads=4,
            intermediate_size=64,
            vocab_size=VOCAB,
            max_position_embeddings=64,
        )
    )


def _llama() -> Any:
    return transformers.LlamaForCausalLM(
        transformers.LlamaConfig(
            num_hidden_layers=2,
            hidden_size=32,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=64,
            vocab_size=VOCAB,
            max_position_embeddings=64,
        )
    )


def _qwen2() -> Any:
    return transformers.Qwen2ForCausalLM(
        transformers.Qwen2Config(
            num_hidden_layers=2,
            hidden_size=32,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=64,
            vocab_size=VOCAB,
            max_position_embeddings=64,
        )
    )


def save_tiny(folder: Path, build: Callable[[], Any] = _gpt2, tokenizer: bool = True) -> Any:
    """Write a tiny random model (and the tiny tokenizer) to ``folder``; return the HF model."""
    torch.manual_seed(0)
    model = build().eval()
    model.save_pretrained(folder)
    if tokenizer:
        tiny_tokenizer().save_pretrained(folder)
    return model


def assert_same_logits(subject: Subject, hf_model: Any) -> None:
    """The Subject's TransformerLens logits equal the Hugging Face model's on the same tokens."""
    tokens = torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = subject.model(tokens)
        theirs = hf_model(tokens).logits
    assert ours.shape == theirs.shape == (2, 12, VOCAB)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)


# --- TransformerLens names --------------------------------------------------------------------


def test_gpt2_offline_fails_fast_with_the_fix() -> None:
    """No cache, hub unreachable, no HF_HUB_OFFLINE: a clear ValueError within seconds."""
    start = time.monotonic()
    with pytest.raises(ValueError) as info:
        load_subject("gpt2", device="cpu")
    elapsed = time.monotonic() - start
    assert elapsed < 10, f"took {elapsed:.1f} s"
    message = str(info.value)
    for needed in ("gpt2", "HF_HUB_OFFLINE", "HF_HOME", "huggingface-cli download", "unreachable"):
        assert needed in message, (needed, message)
    assert "cache" in message


def test_gpt2_with_hf_hub_offline_fails_without_probing(monkeypatch: pytest.MonkeyPatch) -> None:
    """HF_HUB_OFFLINE=1 and nothing cached: the error says so, and the hub is never probed."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_probe(*_: Any, **__: Any) -> bool:
        raise AssertionError("the hub must not be probed under HF_HUB_OFFLINE")

    monkeypatch.setattr("workbench._hub.hub_reachable", no_probe)
    start = time.monotonic()
    with pytest.raises(ValueError, match="HF_HUB_OFFLINE") as info:
        load_subject("gpt2-small", device="cpu")
    assert time.monotonic() - start < 10
    assert "gpt2" in str(info.value) and "HF_HOME" in str(info.value)


def test_default_endpoint_probe_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real hub probe (a HEAD request) answers within its timeout, reachable or not."""
    monkeypatch.delenv("HF_ENDPOINT")
    start = time.monotonic()
    reachable = _hub_reachable("https://huggingface.co", timeout=2.0)
    assert isinstance(reachable, bool)
    assert time.monotonic() - start < 4


@pytest.fixture
def local_http_server() -> Iterator[str]:
    """A throwaway HTTP server on localhost that answers every request with 404."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_hub_probe_sees_an_answering_server(local_http_server: str) -> None:
    """Any HTTP answer (even an error status) counts as reachable; a refused port does not."""
    assert _hub_reachable(local_http_server, timeout=2.0)
    assert not _hub_reachable(UNREACHABLE, timeout=2.0)


def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(ValueError) as info:
        load_subject("gtp2-smal", device="cpu")
    message = str(info.value)
    assert "gpt2-small" in message
    assert "organism" in message and "folder" in message


def test_missing_folder_is_named() -> None:
    with pytest.raises(ValueError, match="no folder"):
        load_subject("./no/such/model-folder", device="cpu")


def _fake_cached_repo(home: Path, repo: str) -> Path:
    """Lay out ``home/hub`` like a Hugging Face cache holding one snapshot of ``repo``."""
    commit = "0" * 40
    root = home / "hub" / f"models--{repo.replace('/', '--')}"
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(commit)
    return snapshot


@pytest.mark.parametrize("hub_offline", [True, False], ids=["HF_HUB_OFFLINE", "unreachable"])
def test_cached_name_loads_without_the_hub(
    monkeypatch: pytest.MonkeyPatch, _isolated_hf: Path, hub_offline: bool
) -> None:
    """With the repo in the cache, a TransformerLens name loads cache-only (no retries)."""
    snapshot = _fake_cached_repo(_isolated_hf, "gpt2")
    hf_model = save_tiny(snapshot)
    config = json.loads((snapshot / "config.json").read_text())
    config["n_ctx"] = config["n_positions"]  # as in the real gpt2 config.json
    (snapshot / "config.json").write_text(json.dumps(config))
    if hub_offline:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    subject = load_subject("gpt2", device="cpu")
    assert time.monotonic() - start < 20
    assert (subject.name, subject.source, subject.path) == ("gpt2", "hub", None)
    assert_same_logits(subject, hf_model)


# --- local Hugging Face folders ---------------------------------------------------------------


def test_local_gpt2_folder_matches_hf_logits(tmp_path: Path) -> None:
    folder = tmp_path / "tiny-gpt2"
    hf_model = save_tiny(folder)
    subject = load_subject(str(folder), device="cpu")

    assert subject.name == "tiny-gpt2"
    assert subject.source == "local_hf"
    assert subject.path == folder.resolve()
    assert subject.device == torch.device("cpu")
    assert subject.model.cfg.n_layers == 2 and subject.model.cfg.d_model == 32
    assert len(subject.fingerprint) == 64
    assert_same_logits(subject, hf_model)

    # the tokenizer is the folder's (BOS prepended, as TransformerLens wants), ids unchanged
    ids = subject.tokenizer("w1 w2 w3")["input_ids"]
    assert ids[-3:] == [3, 4, 5]
    assert subject.model.to_tokens("w1 w2 w3").tolist() == [[0, 3, 4, 5]]

    again = load_subject(str(folder), device="cpu")
    assert again.fingerprint == subject.fingerprint


def test_local_folder_fingerprint_tracks_weights(tmp_path: Path) -> None:
    """Different weights, different fingerprint; same weights in another folder, same one."""
    a, b = tmp_path / "a", tmp_path / "b"
    save_tiny(a)
    hf_model = save_tiny(b)
    assert load_subject(str(a)).fingerprint == load_subject(str(b)).fingerprint
    with torch.no_grad():
        hf_model.transformer.h[0].mlp.c_fc.weight[0, 0] += 1.0
    hf_model.save_pretrained(b)
    assert load_subject(str(a)).fingerprint != load_subject(str(b)).fingerprint


@pytest.mark.parametrize("build", [_neox, _llama, _qwen2], ids=["gpt-neox", "llama", "qwen2"])
def test_local_folder_other_architectures(tmp_path: Path, build: Callable[[], Any]) -> None:
    # "llama" in the folder name must not send TransformerLens down its name-based branches
    folder = tmp_path / f"my-{build.__name__.strip('_')}-llama-gemma"
    hf_model = save_tiny(folder, build)
    subject = load_subject(str(folder), device="cpu")
    assert subject.source == "local_hf"
    assert_same_logits(subject, hf_model)
    assert subject.tokenizer("w7")["input_ids"][-1] == 9  # not rebuilt as the model's class


def test_local_folder_without_config(tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a model")
    with pytest.raises(ValueError, match=r"no config\.json"):
        load_subject(str(folder), device="cpu")


def test_local_folder_unsupported_architecture(tmp_path: Path) -> None:
    folder = tmp_path / "bert"
    folder.mkdir()
    config = {"architectures": ["BertForMaskedLM"], "model_type": "bert"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError) as info:
        load_subject(str(folder), device="cpu")
    message = str(info.value)
    assert "BertForMaskedLM" in message
    assert "Supported architectures" in message and "GPT2LMHeadModel" in message


def test_local_folder_without_tokenizer(tmp_path: Path) -> None:
    folder = tmp_path / "no-tokenizer"
    save_tiny(folder, tokenizer=False)
    with pytest.raises(ValueError, match="no tokenizer"):
        load_subject(str(folder), device="cpu")


def test_local_folder_without_weights(tmp_path: Path) -> None:
    folder = tmp_path / "config-only"
    folder.mkdir()
    _gpt2().config.save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    with pytest.raises(ValueError, match="no weights"):
        load_subject(str(folder), device="cpu")


def test_an_organism_spec_loads_any_organism_with_its_judge(small_subject: Subject) -> None:
    from workbench.organism import SMALL_CONFIG, Organism, judge

    s = load_subject(Organism(seed=0, config=SMALL_CONFIG), device="cpu")
    assert s.fingerprint == small_subject.fingerprint and s.source == "organism"
    assert s.organism == Organism(seed=0, config=SMALL_CONFIG) and s.judge is judge
    assert s.stop_tokens == ("end",) and s.d_model == SMALL_CONFIG.d_model
    assert Organism.parse("organism:7") == Organism(seed=7)
    assert Organism.parse("organism") == Organism()
    for bad in ("organism:x", "organism:", "organism:1.5"):
        with pytest.raises(ValueError, match=r"'organism' or 'organism:SEED'.*Organism\(seed="):
            load_subject(bad)
    with pytest.raises(ValueError, match=r"Organism\(config=.*pass an OrganismConfig"):
        Organism(seed=1, config="small")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cannot load a subject from 3"):
        load_subject(3)  # type: ignore[arg-type]
