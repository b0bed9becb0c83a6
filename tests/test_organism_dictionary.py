"""The organism's default dictionary: trained with SAE Lens, cached, readable by plain SAE Lens."""

from __future__ import annotations

import torch
from sae_lens import SAE

from workbench.dictionaries import (
    DictionaryRecipe,
    check_compatible,
    default_dictionary,
    load_dictionary,
)
from workbench.organism import SMALL_CONFIG, BuiltOrganism, corpus_tokens
from workbench.organism.tokenizer import build_tokenizer
from workbench.subjects import Subject

RECIPE = DictionaryRecipe(expansion=4, k=8, training_tokens=40_000, batch_size=256)


def test_corpus_tokens_are_unpadded_documents() -> None:
    ids = corpus_tokens(20, 32, seed=0)
    tok = build_tokenizer()
    assert ids.shape == (20, 32)
    assert (ids[:, 0] == tok.bos_token_id).all()
    assert not (ids == tok.pad_token_id).any()
    assert torch.equal(ids, corpus_tokens(20, 32, seed=0))


def test_default_dictionary_is_cached_and_sae_lens_readable(
    small_organism: BuiltOrganism, small_subject: Subject
) -> None:
    d = default_dictionary(0, SMALL_CONFIG, RECIPE, device="cpu", progress=False)
    assert d.hook_name == "blocks.0.hook_resid_post"
    assert (d.d_in, d.d_sae) == (SMALL_CONFIG.d_model, 4 * SMALL_CONFIG.d_model)
    assert d.path is not None and d.path.parent.parent == small_organism.path
    assert d.stats is not None and 0.0 < d.stats.explained_variance <= 1.0
    check_compatible(small_subject, d)
    again = default_dictionary(0, SMALL_CONFIG, RECIPE, device="cpu", progress=False)
    assert again.fingerprint == d.fingerprint
    assert again.stats == d.stats  # held-out figures travel with the cached dictionary
    assert again.name == d.name == "organism-s0-blocks.0.hook_resid_post"  # one name, fresh or not
    assert again.path == d.path and (d.path / "workbench_stats.json").is_file()
    aside = [p for p in d.path.parent.iterdir() if p.name.startswith(".") and p.suffix != ".lock"]
    assert not aside  # nothing left aside (the build lock stays)
    plain = SAE.load_from_disk(str(d.path))
    assert plain.cfg.metadata.hook_name == d.hook_name
    for k, v in plain.state_dict().items():
        assert torch.equal(v, d.sae.state_dict()[k])
    assert load_dictionary(str(d.path)).fingerprint == d.fingerprint
