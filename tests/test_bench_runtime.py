"""`autoui bench runtime` end to end on a tiny random model and tiny synthetic held-out data:
the runtime and HF generate() on the same weights and inputs, JSON keys and the printed table."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from autoui.cli import main


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    from autoui.data.synthetic import generate_dataset
    from autoui.model import AutoUIModel, load_preset
    from autoui.model.tokenizer import ActionTokenizer

    root = tmp_path_factory.mktemp("bench")
    tok = ActionTokenizer.load()
    torch.manual_seed(0)
    AutoUIModel(load_preset("tiny").with_tokenizer(tok)).save_pretrained(root / "model", tokenizer=tok)
    generate_dataset(root / "heldout", episodes_per_dataset=2, seed=0, shards=1, datasets=["general"])
    return {"model": root / "model", "data": root / "heldout", "out": root / "out" / "runtime.json"}


def test_bench_runtime_writes_every_key_and_a_table(setup, capsys):
    before = torch.get_num_threads()
    try:
        code = main(["bench", "runtime", "--model", str(setup["model"]), "--data", str(setup["data"]),
                     "--json", str(setup["out"]), "--batches", "1,2", "--threads", "1", "--eval-steps", "6",
                     "--latency-steps", "3", "--repeats", "1", "--max-new-tokens", "10"])
    finally:
        torch.set_num_threads(before)
    assert code == 0
    res = json.loads(setup["out"].read_text())
    for key in ("latency_ms_b1", "steps_per_s", "speedup_vs_hf_b1", "speedup_vs_hf_b32", "kv_bytes_per_token",
                "action_match_delta", "device", "date", "peak_memory_mb", "breakdown_ms_b1", "agreement_runtime_vs_hf", "unavailable"):
        assert key in res, key
    assert "-core CPU (" in res["device"]  # the CPU model and its bf16 matmul hardware are recorded
    assert any(f", {hw})" in res["device"] for hw in ("AMX", "AVX512-BF16", "no bf16 matmul"))
    assert {"runtime", "runtime-unconstrained", "runtime-int8", "runtime-int4", "runtime-fp8",
            "hf-dynamic"} <= set(res["latency_ms_b1"])
    lat = res["latency_ms_b1"]["runtime"]
    assert 0 < lat["p50"] <= lat["p95"] and lat["n"] == 3
    assert set(res["steps_per_s"]["hf-dynamic"]) == {"1", "2"} and res["steps_per_s"]["runtime"]["2"] > 0
    assert res["speedup_vs_hf_b1"] > 0 and res["speedup_vs_hf_b32"] is None  # no batch 32 asked for
    kv = res["kv_bytes_per_token"]
    assert kv["int8"] < kv["bf16"] < kv["plain"] and kv["int4"] < kv["int8"] and kv["hf-dynamic"] == kv["plain"]
    # + the fp32 prefill where bf16 is the default, + the eager engine where the fused kernel serves
    assert set(res["action_match_delta"]) - {"float32-prefill", "eager"} == {"int8", "int4", "fp8"}
    from autoui.runtime.cpu_fused import serves
    from autoui.model.weights import load_model

    assert ("runtime-eager" in res["latency_ms_b1"]) == serves(load_model(setup["model"]))
    assert res["parse_rate"]["runtime"] == 100.0  # constrained: every output is an action
    # same weights, same prompt ids, greedy, no constraint: the two implementations agree
    assert res["agreement_runtime_vs_hf"]["same_tokens"] == res["agreement_runtime_vs_hf"]["steps"] == 3
    floor = res["roofline"]
    assert floor["ceilings"]["peak_gflops"] > 0 and floor["weight_bytes"]["decoder"] > 0
    for b in ("1", "2"):
        row = floor["batches"][b]
        assert row["work"]["batch"] == int(b) and row["work"]["decode_forwards"] >= 1
        assert 0 < row["floor_ms_per_step"] < row["runtime_ms_per_step"]  # a floor, under what was measured
        assert row["runtime_fraction_of_floor"] == round(row["floor_ms_per_step"] / row["runtime_ms_per_step"], 3)
        assert row["max_speedup_vs_hf"] == round(row["hf-dynamic_ms_per_step"] / row["floor_ms_per_step"], 2)
    table = capsys.readouterr().out
    assert "hf-dynamic" in table and "KV bytes/token" in table and res["date"] in table
    assert "roofline (model work only" in table and "at most" in table


def test_bench_runtime_bad_arguments_exit_2(setup, tmp_path, capsys):
    base = ["bench", "runtime", "--json", str(tmp_path / "x.json")]
    assert main([*base, "--model", str(tmp_path), "--data", str(setup["data"])]) == 2
    assert "not a model directory" in capsys.readouterr().err
    assert main([*base, "--model", str(setup["model"]), "--data", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main([*base, "--model", str(setup["model"]), "--data", str(setup["data"]), "--batches", "1,x"]) == 2
    assert "--batches" in capsys.readouterr().err
