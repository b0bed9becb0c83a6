"""The organism build: determinism, the content-hash cache, the on-disk format, load_subject."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import workbench.organism as organism
import workbench.subjects as subjects
from workbench.fingerprint import json_sha256, model_sha256
from workbench.organism import SMALL_CONFIG, BuiltOrganism, build_dir, load_organism
from workbench.subjects import load_subject

TINY = replace(SMALL_CONFIG, steps=20)


def test_same_seed_same_fingerprint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fps = []
    for sub in ("a", "b"):
        monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / sub))
        fps.append(model_sha256(load_organism(1, TINY, "cpu", progress=False).model))
    other = load_organism(2, TINY, "cpu", progress=False)
    assert fps[0] == fps[1]
    assert model_sha256(other.model) != fps[0]


def test_cache_is_reused_and_keyed_by_recipe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path))
    first = load_organism(0, TINY, "cpu", progress=False)
    stamp = (first.path / "model.safetensors").stat().st_mtime_ns
    again = load_organism(0, TINY, "cpu", progress=False)
    assert again.path == first.path
    assert (again.path / "model.safetensors").stat().st_mtime_ns == stamp  # not retrained
    assert model_sha256(again.model) == model_sha256(first.model)
    changed = replace(TINY, lr=TINY.lr / 2)
    assert build_dir(changed, 0) != first.path
    assert build_dir(TINY, 1) != first.path
    # no temporary folders are left beside the build (only its lock file)
    left = sorted(p.name for p in first.path.parent.iterdir())
    assert left == sorted([first.path.name, f".{first.path.name}.lock"])


def test_concurrent_asks_for_one_recipe_build_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two builders of one recipe: one trains, the other waits for it and reads the same build."""
    import threading

    import workbench.organism.build as build

    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path))
    trained: list[int] = []
    real = build._build

    def counting(*args: object, **kwargs: object) -> None:
        trained.append(threading.get_ident())
        real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(build, "_build", counting)
    got: list[str] = []
    threads = [threading.Thread(target=lambda: got.append(
        model_sha256(load_organism(3, TINY, "cpu", progress=False).model))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(trained) == 1 and len(got) == 2 and got[0] == got[1]


def test_on_disk_format(small_organism: BuiltOrganism) -> None:
    path = small_organism.path
    names = {p.name for p in path.iterdir()}
    assert {"recipe.json", "hooked_config.json", "model.safetensors", "tokenizer",
            "train_log.json"} <= names
    rec = json.loads((path / "recipe.json").read_text())
    sha = rec.pop("sha256")
    assert sha == json_sha256(rec)
    assert path.name == f"s0-{sha[:16]}"
    hooked = json.loads((path / "hooked_config.json").read_text())
    assert hooked["d_model"] == SMALL_CONFIG.d_model
    assert hooked["d_vocab"] == len(small_organism.tokenizer.get_vocab())
    log = json.loads((path / "train_log.json").read_text())
    assert log["loss_curve"][-1] < log["loss_curve"][0]  # it learned something


def test_incomplete_build_is_refused(tmp_path: Path) -> None:
    (tmp_path / "recipe.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="not a complete organism build"):
        organism.build.load_build(tmp_path, torch.device("cpu"))


def test_load_subject_organism(
    small_organism: BuiltOrganism, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def small(seed: int = 0, config: object = None, device: object = "auto") -> BuiltOrganism:
        calls.append((seed, config))
        return load_organism(seed, SMALL_CONFIG, "cpu", progress=False)

    monkeypatch.setattr(subjects, "load_organism", small)  # what "organism" asks the provider for
    subject = load_subject("organism")
    assert calls == [(0, organism.OrganismConfig())]
    assert subject.name == "organism-s0" and subject.source == "organism"
    assert subject.fingerprint == model_sha256(small_organism.model)
    assert subject.device == torch.device("cpu")
    # the organism works through TransformerLens' own tokenization
    toks = subject.model.to_tokens("user code login bot")
    assert toks[0, 0].item() == subject.tokenizer.bos_token_id and toks.shape == (1, 5)
    with pytest.raises(ValueError, match="organism:SEED"):
        load_subject("organism:abc")
