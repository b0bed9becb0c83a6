"""Neighbourhoods: decoder-cosine neighbours vs brute force, co-activation vs dense math."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sae_lens import StandardSAE, StandardSAEConfig
from sae_lens.saes.sae import SAEMetadata

from workbench.activations import collect
from workbench.dictionaries import Dictionary, load_dictionary
from workbench.neighborhoods import FeatureNeighborhood, decoder_cosines, neighborhood
from workbench.organism.language import sample_corpus
from workbench.subjects import Subject

HOOK = "blocks.0.hook_resid_post"
D_SAE = 40


def _dictionary(folder: Path, d_in: int, seed: int) -> Dictionary:
    """A random ReLU SAE whose decoder has planted structure.

    Row 1 = 2 x row 0 (cosine 1), row 2 = -row 0 (cosine -1), row 3 = 0 (dead),
    row 4 = row 0 + noise (cosine near 0.7), the rest random.
    """
    sae = StandardSAE(
        StandardSAEConfig(d_in=d_in, d_sae=D_SAE, metadata=SAEMetadata(hook_name=HOOK))
    )
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sae.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.02 if name == "b_enc" else 0.3))
        W = sae.W_dec
        W[1] = 2 * W[0]
        W[2] = -W[0]
        W[3] = 0.0
        W[4] = W[0] + W[4] * (W[0].norm() / W[4].norm())
    sae.save_model(folder)
    return load_dictionary(folder, device="cpu")


@pytest.fixture(scope="module")
def dictionary(small_subject: Subject, tmp_path_factory: pytest.TempPathFactory) -> Dictionary:
    folder = tmp_path_factory.mktemp("sae") / "planted"
    return _dictionary(folder, small_subject.model.cfg.d_model, seed=2)


def _brute_force_neighbours(W_dec: torch.Tensor, f: int, threshold: float, k: int) -> list[int]:
    W = W_dec.detach().double().numpy()
    norms = np.linalg.norm(W, axis=1)
    rows = [
        (j, float(W[j] @ W[f] / (norms[j] * norms[f])))
        for j in range(W.shape[0])
        if j != f and norms[j] > 0
    ]
    rows = [(j, c) for j, c in rows if abs(c) >= threshold - 1e-6]
    rows.sort(key=lambda jc: (-round(abs(jc[1]), 5), jc[0]))
    return [j for j, _ in rows[:k]]


@pytest.mark.parametrize("threshold", [0.0, 0.2, 0.5])
@pytest.mark.parametrize("feature", [0, 4, 17])
def test_neighbours_equal_brute_force(
    dictionary: Dictionary, feature: int, threshold: float
) -> None:
    hood = neighborhood(dictionary, feature, threshold=threshold, k=6)
    assert list(hood.indices) == _brute_force_neighbours(dictionary.W_dec, feature, threshold, 6)
    assert feature not in hood.indices and 3 not in hood.indices  # no self, no dead row
    W = dictionary.W_dec.detach().double()
    for n in hood.neighbors:
        expected = float(W[n.feature] @ W[feature] / (W[n.feature].norm() * W[feature].norm()))
        assert n.cosine == pytest.approx(expected, abs=1e-5)
        assert abs(n.cosine) >= threshold
        assert n.p_fires_given_feature is None and n.correlation is None  # no prompts given
    assert hood.n_tokens == 0 and hood.prompts_sha256 is None


def test_planted_neighbours_keep_their_sign(dictionary: Dictionary) -> None:
    hood = neighborhood(dictionary, 0, threshold=0.6, k=16)
    assert set(hood.indices[:2]) == {1, 2}  # |cosine| 1 both: the parallel and the opposite row
    by_feature = {n.feature: n.cosine for n in hood.neighbors}
    assert by_feature[1] == pytest.approx(1.0, abs=1e-6)
    assert by_feature[2] == pytest.approx(-1.0, abs=1e-6)
    assert 4 in hood.indices
    cos = decoder_cosines(dictionary.W_dec, 0)
    assert float(cos[3]) == 0.0 and float(cos[0]) == pytest.approx(1.0)


def test_coactivation_equals_dense_math(small_subject: Subject, dictionary: Dictionary) -> None:
    prompts = [d.text() for d in sample_corpus(20, seed=5)]
    feature = 4
    hood = neighborhood(
        dictionary, feature, threshold=0.0, k=8, prompts=prompts, subject=small_subject
    )
    dense = collect(small_subject, dictionary, prompts, keep_dense=True, progress=False).dense
    assert dense is not None
    f = dense[:, feature].double().numpy()
    assert hood.n_tokens == dense.shape[0]
    assert hood.frequency == pytest.approx(float((f > 0).mean()))
    assert 0 < float((f > 0).mean()) < 1
    checked = 0
    for n in hood.neighbors:
        g = dense[:, n.feature].double().numpy()
        both = ((f > 0) & (g > 0)).sum()
        if (g > 0).any():
            assert n.p_feature_given_fires == pytest.approx(both / (g > 0).sum())
        else:
            assert n.p_feature_given_fires is None
        assert n.p_fires_given_feature == pytest.approx(both / (f > 0).sum())
        if g.std() > 0:
            assert n.correlation == pytest.approx(float(np.corrcoef(f, g)[0, 1]), abs=1e-9)
            checked += 1
        else:
            assert n.correlation is None
    assert checked >= 3

    # the same from precomputed statistics, and through JSON
    stats = collect(
        small_subject, dictionary, prompts, keep_dense=[feature, *hood.indices], progress=False
    )
    assert neighborhood(dictionary, feature, threshold=0.0, k=8, stats=stats) == hood
    assert FeatureNeighborhood.from_dict(json.loads(json.dumps(hood.to_dict()))) == hood
    assert hood.prompts_sha256 == stats.prompts_sha256


def test_bad_input_is_refused(small_subject: Subject, dictionary: Dictionary) -> None:
    with pytest.raises(ValueError, match="out of range"):
        neighborhood(dictionary, D_SAE)
    with pytest.raises(ValueError, match="dead feature"):
        neighborhood(dictionary, 3)
    with pytest.raises(ValueError, match="threshold"):
        neighborhood(dictionary, 0, threshold=1.5)
    with pytest.raises(ValueError, match="both prompts= and subject="):
        neighborhood(dictionary, 0, prompts=["<bos> user code login bot"])
    with pytest.raises(ValueError, match="empty"):
        neighborhood(dictionary, 0, prompts=[], subject=small_subject)
    stats = collect(small_subject, dictionary, ["<bos> user code login bot"], progress=False)
    with pytest.raises(ValueError, match="keep_dense"):
        neighborhood(dictionary, 0, stats=stats)
