"""``wb.setup``: subject + dictionary for an organism (full or small) or any model, in one call."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers
from _saes import small_dictionary
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

import workbench as wb
from workbench.analysis import SMALL_DICTIONARY, organism_spec
from workbench.dictionaries import DictionaryRecipe, default_dictionary
from workbench.organism import SMALL_CONFIG, Organism, OrganismConfig
from workbench.subjects import Subject


def test_small_organism_with_its_small_dictionary(small_subject: Subject) -> None:
    s = wb.setup(organism="small", seed=0, device="cpu")
    subject, dictionary = s  # unpacks
    assert subject.fingerprint == small_subject.fingerprint
    assert subject.organism == Organism(seed=0, config=SMALL_CONFIG)
    assert subject.judge is not None and subject.stop_tokens == ("end",)
    assert dictionary is not None
    expected = default_dictionary(0, config=SMALL_CONFIG, recipe=SMALL_DICTIONARY, device="cpu",
                                  progress=False)
    assert dictionary.fingerprint == expected.fingerprint
    assert dictionary.d_sae == 4 * subject.d_model and dictionary.hook_name == (
        "blocks.0.hook_resid_post")
    line = s.describe()
    assert subject.name in line and dictionary.fingerprint[:12] in line
    assert f"{dictionary.d_sae} features" in line
    # the same organism as a typed spec, and without a dictionary
    same = wb.setup(Organism(seed=0, config=SMALL_CONFIG), device="cpu")
    assert same.dictionary is not None and same.dictionary.fingerprint == expected.fingerprint
    alone = wb.setup(organism="small", device="cpu", with_dictionary=False)
    assert alone.dictionary is None and alone.subject.fingerprint == subject.fingerprint
    assert alone.describe().count("dictionary") == 0


def test_a_recipe_or_a_folder_as_the_organism_dictionary(tmp_path: Path) -> None:
    recipe = DictionaryRecipe(expansion=2, k=4, training_tokens=20_000, batch_size=256)
    s = wb.setup(Organism(seed=0, config=SMALL_CONFIG), recipe, device="cpu")
    assert s.dictionary is not None and s.dictionary.d_sae == 2 * s.subject.d_model
    folder = tmp_path / "sae"
    mine = small_dictionary(folder, d_in=s.subject.d_model)
    t = wb.setup(Organism(seed=0, config=SMALL_CONFIG), folder, device="cpu")
    assert t.dictionary is not None and t.dictionary.fingerprint == mine.fingerprint


def test_organism_spec_sizes() -> None:
    assert organism_spec("small", 3) == Organism(seed=3, config=SMALL_CONFIG)
    assert organism_spec() == Organism(seed=0, config=OrganismConfig())
    with pytest.raises(ValueError, match="full"):
        organism_spec("medium")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="full"):
        wb.setup(organism="medium", device="cpu")  # type: ignore[arg-type]


WORDS = ["<|endoftext|>", "<unk>"] + [f"w{i}" for i in range(46)]


def _local_model(folder: Path) -> None:
    """A tiny random GPT-2 and a word-level tokenizer saved as a Hugging Face folder."""
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=len(WORDS),
                                n_positions=64)
    ).eval()
    model.save_pretrained(folder)
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<|endoftext|>",
                            eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                            unk_token="<unk>").save_pretrained(folder)


def test_any_model_with_an_sae_lens_dictionary(tmp_path: Path) -> None:
    _local_model(tmp_path / "tiny")
    sae = small_dictionary(tmp_path / "sae", d_in=32, hook="blocks.1.hook_resid_post")
    s = wb.setup(tmp_path / "tiny", tmp_path / "sae", device="cpu")
    assert s.subject.source == "local_hf" and s.subject.name == "tiny"
    assert s.subject.judge is None
    assert s.dictionary is not None and s.dictionary.fingerprint == sae.fingerprint
    assert s.dictionary.hook_name == "blocks.1.hook_resid_post"
    assert wb.setup(str(tmp_path / "tiny"), device="cpu", with_dictionary=False).dictionary is None
    with pytest.raises(ValueError, match="dictionary="):
        wb.setup(tmp_path / "tiny", device="cpu")
    with pytest.raises(ValueError, match="default dictionary"):
        wb.setup(tmp_path / "tiny", SMALL_DICTIONARY, device="cpu")
    small_dictionary(tmp_path / "wide", d_in=48)
    with pytest.raises(ValueError):  # the dictionary does not fit the model
        wb.setup(tmp_path / "tiny", tmp_path / "wide", device="cpu")


def test_model_and_organism_together_are_refused() -> None:
    with pytest.raises(ValueError, match="not both"):
        wb.setup("gpt2", organism="small")
    with pytest.raises(ValueError, match="not both"):
        wb.setup(Organism(), seed=1)
