"""benchmarks/real_scale.py on its --quick shape: every row measured, the table and JSON agree.

The full-size run (a GPT-2-small shape, minutes) is the benchmark's job; this is its smoke test.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "real_scale.py"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("real_scale", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["real_scale"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_quick_run_measures_every_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bench = _bench()
    out = tmp_path / "real_scale.json"
    res = bench.main(["--quick", "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(res))
    names = [r["name"] for r in res["rows"]]
    assert names == [
        "load_subject", "collect", "forecast steer", "forecast lora r1", "forecast full",
        "forecast full, data-level",
        "finetune steer, 1 step", "finetune lora r1, 1 step", "finetune full, 1 step",
        "finetune lora r1, 3 steps",
    ]
    table = capsys.readouterr().out
    for r in res["rows"]:
        assert r["seconds"] > 0 and r["peak_gib"] > 0 and r["above_start_gib"] >= 0, r
        assert r["name"] in table
    whole = res["rows"][-1]
    assert not res["finetune_extrapolated"] and whole["what"] == "96 sequences"
    for r in res["rows"][2:6]:  # each forecast as a share of the whole LoRA fine-tune
        assert r["pct_of_finetune"] == pytest.approx(100 * r["seconds"] / whole["seconds"])
        assert r["per_unit"] == "batch 256"
    m = res["model"]
    assert (m["n_layers"], m["d_model"], m["model_vocab"]) == (2, 64, 2000)
    assert res["one_epoch_steps"] == 1  # 8 pairs, 32 a step
    if sys.platform == "linux":
        assert res["memory"].startswith("RSS high-water (VmHWM")


def test_the_default_batch_fits_a_gpt2_small_shape() -> None:
    """auto_batch_size: ~2^28 floats of saved activations, at most 256 sequences."""
    from types import SimpleNamespace

    from workbench.forecasts import BATCH_FLOATS, auto_batch_size

    gpt2 = SimpleNamespace(model=SimpleNamespace(cfg=SimpleNamespace(
        n_layers=12, d_model=768, n_heads=12, d_mlp=3072, d_vocab=50257)))
    per_token = 12 * (16 * 768 + 3 * 3072 + 3 * 12 * 64) + 3 * 50257
    assert auto_batch_size(gpt2, 64) == BATCH_FLOATS // (64 * per_token) == 9  # type: ignore[arg-type]
    assert auto_batch_size(gpt2, 1024) == 1  # type: ignore[arg-type]
    tiny = SimpleNamespace(model=SimpleNamespace(cfg=SimpleNamespace(
        n_layers=2, d_model=32, n_heads=2, d_mlp=128, d_vocab=100)))
    assert auto_batch_size(tiny, 40) == 256  # type: ignore[arg-type]
