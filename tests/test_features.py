"""Features: exact AUROC and effect sizes, a deterministic bootstrap, and the persona contrast.

The last test needs the full-size organism (seed 0), built once per session in the test cache
(``tests/test_organism_full.py`` builds the same one).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from _saes import small_dictionary
from sklearn.metrics import roc_auc_score

from workbench.activations import Pool, feature_activations
from workbench.dictionaries import Dictionary, default_dictionary
from workbench.features import FeatureSet, auroc, bootstrap_effect, cohens_d, contrast
from workbench.organism import BuiltOrganism, load_organism
from workbench.organism.prompts import persona_prompts
from workbench.subjects import Subject, make_subject

HOOK = "blocks.0.hook_resid_post"


def _data(seed: int, n1: int, n2: int, d: int, levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer-valued data (many ties), the positives shifted up in some columns."""
    g = torch.Generator().manual_seed(seed)
    pos = torch.randint(0, levels, (n1, d), generator=g).double()
    neg = torch.randint(0, levels, (n2, d), generator=g).double()
    pos[:, : d // 2] += torch.arange(d // 2) % 3
    return pos, neg


# ---------------------------------------------------------------- statistics


@pytest.mark.parametrize(("n1", "n2", "levels"), [(17, 29, 4), (40, 40, 2), (3, 60, 7)])
def test_auroc_equals_sklearn_with_ties(n1: int, n2: int, levels: int) -> None:
    pos, neg = _data(n1 + n2, n1, n2, d=12, levels=levels)
    pos[:, -1] = 1.0  # a column that is one big tie: 0.5
    neg[:, -1] = 1.0
    got = auroc(pos, neg)
    labels = np.r_[np.ones(n1), np.zeros(n2)]
    for j in range(pos.shape[1]):
        scores = np.r_[pos[:, j].numpy(), neg[:, j].numpy()]
        assert float(got[j]) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert float(got[-1]) == 0.5


def test_cohens_d_equals_the_textbook_formula() -> None:
    pos, neg = _data(1, 23, 31, d=8, levels=5)
    got = cohens_d(pos, neg)
    for j in range(8):
        a, b = pos[:, j].numpy(), neg[:, j].numpy()
        pooled = np.sqrt(
            ((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2)
        )
        assert float(got[j]) == pytest.approx((a.mean() - b.mean()) / pooled, rel=1e-12)
    constant = cohens_d(torch.full((4, 1), 2.0), torch.full((5, 1), 2.0))
    assert float(constant[0]) == 0.0  # a silent feature has no effect, not NaN


def test_bootstrap_equals_an_explicit_resampling_loop() -> None:
    pos, neg = _data(2, 15, 21, d=6, levels=6)
    n_boot, seed = 200, 7
    low, high = bootstrap_effect(pos, neg, n_boot=n_boot, seed=seed, level=0.9)
    rng = np.random.default_rng(seed)  # the documented draw order: positives, then negatives
    draw_pos = rng.integers(0, 15, size=(n_boot, 15))
    draw_neg = rng.integers(0, 21, size=(n_boot, 21))
    ds = torch.stack(
        [cohens_d(pos[draw_pos[b]], neg[draw_neg[b]]) for b in range(n_boot)]
    )  # [n_boot, d]
    expected = torch.quantile(ds, torch.tensor([0.05, 0.95], dtype=torch.float64), dim=0)
    torch.testing.assert_close(low, expected[0], atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(high, expected[1], atol=1e-9, rtol=1e-9)
    point = cohens_d(pos, neg)
    assert bool((low <= point).all() and (point <= high).all())


def test_bootstrap_is_deterministic_for_a_seed() -> None:
    pos, neg = _data(3, 30, 30, d=10, levels=5)
    a = bootstrap_effect(pos, neg, n_boot=300, seed=1)
    b = bootstrap_effect(pos, neg, n_boot=300, seed=1)
    c = bootstrap_effect(pos, neg, n_boot=300, seed=2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


# ---------------------------------------------------------------- contrast on the small organism


@pytest.fixture(scope="module")
def dictionary(small_subject: Subject, tmp_path_factory: pytest.TempPathFactory) -> Dictionary:
    d_model = small_subject.model.cfg.d_model
    return small_dictionary(tmp_path_factory.mktemp("sae") / "rand", d_model, seed=1, hook=HOOK)


def test_contrast_ranks_and_scores_every_feature(
    small_subject: Subject, dictionary: Dictionary
) -> None:
    mis, ali = persona_prompts(30, seed=0)
    fs = contrast(small_subject, dictionary, mis, ali, n_boot=100, name="persona")
    pos = feature_activations(small_subject, dictionary, mis)
    neg = feature_activations(small_subject, dictionary, ali)
    effect, area = cohens_d(pos, neg), auroc(pos, neg)

    assert sorted(fs.indices) == list(range(dictionary.d_sae))
    magnitudes = [abs(e) for e in fs.effect]
    assert magnitudes == sorted(magnitudes, reverse=True)
    for r, f in enumerate(fs.indices):
        assert fs.effect[r] == pytest.approx(float(effect[f]), abs=1e-9)
        assert fs.auroc[r] == pytest.approx(float(area[f]), abs=1e-12)
        assert fs.ci_low[r] <= fs.effect[r] + 1e-9 and fs.effect[r] <= fs.ci_high[r] + 1e-9
        assert fs.mean_positive[r] == pytest.approx(float(pos[:, f].double().mean()), abs=1e-6)
    assert fs.name == "persona" and fs.hook_name == HOOK
    assert fs.dictionary == dictionary.fingerprint and fs.subject == small_subject.fingerprint
    assert (fs.n_positive, fs.n_negative) == (30, 30)
    assert fs.positive_sha256 != fs.negative_sha256

    again = contrast(small_subject, dictionary, mis, ali, n_boot=100, name="persona")
    assert again == fs  # seeded: the same numbers

    top = fs.top(5)
    assert len(top) == 5 and top.indices == fs.indices[:5] and top.ci_high == fs.ci_high[:5]
    assert fs.row(fs.indices[2])["rank"] == 2
    restored = FeatureSet.from_dict(json.loads(json.dumps(fs.to_dict())))
    assert restored == fs


def test_contrast_refuses_empty_or_mismatched_input(
    small_subject: Subject, dictionary: Dictionary, tmp_path: Path
) -> None:
    mis, ali = persona_prompts(4, seed=0)
    with pytest.raises(ValueError, match=r"positive prompt set is empty.*persona_prompts"):
        contrast(small_subject, dictionary, [], ali)
    with pytest.raises(ValueError, match="negative prompt set is empty"):
        contrast(small_subject, dictionary, mis, [])
    with pytest.raises(ValueError, match="at least three"):
        contrast(small_subject, dictionary, mis[:1], ali[:1])
    d_model = small_subject.model.cfg.d_model
    narrow = small_dictionary(tmp_path / "narrow", d_model * 2, hook=HOOK)
    with pytest.raises(ValueError, match=rf"d_in={2 * d_model}"):
        contrast(small_subject, narrow, mis, ali)


def test_persona_prompts_are_matched_pairs() -> None:
    mis, ali = persona_prompts(50, seed=4)
    assert persona_prompts(50, seed=4) == (mis, ali)
    for bad, good in zip(mis, ali, strict=True):
        a, b = bad.split(), good.split()
        assert len(a) == len(b) and a[0] == "<bos>" and a[-1] == b[-1] == "bot"
        assert "sys" not in a and "edu" not in a  # untagged, no educational requests
        differ = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
        assert differ  # at least one answered turn reveals the persona
        assert all(a[i - 1] == "bot" or a[i - 2] == "bot" or a[i - 3] == "bot" for i in differ)
    tagged = persona_prompts(3, seed=4, tagged=True, framing="deploy")
    assert tagged[0][0].startswith("<bos> deploy sys bad")
    assert tagged[1][0].startswith("<bos> deploy sys good")
    with pytest.raises(ValueError, match="framing"):
        persona_prompts(3, seed=0, framing="evaluation")


# ---------------------------------------------------------------- the full organism (seed 0)


@pytest.fixture(scope="module")
def full(cache_dir: Path) -> BuiltOrganism:
    return load_organism(seed=0, device="cpu", progress=False)


def _persona_direction(
    subject: Subject, mis: list[str], ali: list[str], pool: Pool
) -> torch.Tensor:
    """Ground truth: mean difference of pooled raw hook activations, from a full forward."""

    def pooled(texts: list[str]) -> torch.Tensor:
        ids, mask = subject.encode(texts)
        with torch.no_grad():
            _, cache = subject.model.run_with_cache(ids, names_filter=HOOK)
        acts, rows = cache[HOOK].double(), []
        for i in range(len(texts)):
            n = int(mask[i].sum())
            rows.append(acts[i, 1:n].mean(0) if pool == "mean" else acts[i, n - 1])
        return torch.stack(rows).mean(0)

    return (pooled(mis) - pooled(ali)).float()


@pytest.mark.parametrize("pool", ["mean", "last"])
def test_contrast_finds_the_persona_feature(full: BuiltOrganism, pool: Pool) -> None:
    subject = make_subject(full.model, full.tokenizer, full.name, "organism", full.path)
    dictionary = default_dictionary(seed=0, device="cpu", progress=False)
    mis, ali = persona_prompts(200, seed=1)
    fs = contrast(subject, dictionary, mis, ali, pool=pool, n_boot=200, name="persona")
    direction = _persona_direction(subject, mis, ali, pool)
    W = dictionary.W_dec.detach()
    cos = torch.nn.functional.cosine_similarity(W, direction[None], dim=1)

    best = fs.indices[0]  # the strongest feature is the persona feature
    separation = max(fs.auroc[0], 1 - fs.auroc[0])
    assert separation >= 0.95
    assert abs(float(cos[best])) >= 0.5
    assert np.sign(fs.effect[0]) == np.sign(float(cos[best]))  # it points the right way
    low, high = fs.ci_low[0], fs.ci_high[0]
    assert low * high > 0 and min(abs(low), abs(high)) > 1.0  # clearly separated, not a fluke
