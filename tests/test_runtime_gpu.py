"""The engine on a CUDA device: CUDA-graph decode gives the eager engine's tokens for every
cache kind (the fused Triton decode kernel inside the graph for plain/int8/int4), and a failed
capture falls back to eager decoding without losing a request. Skipped without CUDA."""
from __future__ import annotations

import pytest
import torch

from autoui.model import load_preset
from autoui.runtime.engine import Engine, EngineConfig, Request
from tests.test_runtime_engine import _model as cpu_model
from tests.test_runtime_engine import _requests as _prompts
from tests.test_runtime_engine import kernel_sized

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def _model(dtype=torch.float32):
    return cpu_model(kernel_sized(load_preset("tiny"))).to("cuda", dtype)  # head_dim 32: the Triton kernel serves it


def _run(model, kind, decode, prompts, max_new=14):
    engine = Engine(model, EngineConfig(max_batch=3, max_seq_len=128, max_new_tokens=max_new, cache_kind=kind,
                                        decode=decode))
    reqs = [Request(ids, px) for ids, px in prompts]
    for r in reqs[:2]:
        engine.submit(r)
    engine.step()
    for r in reqs[2:]:  # join mid-way; the last waits for a slot
        engine.submit(r)
    while engine.waiting or engine.active:
        engine.step()
    return engine, [r.tokens for r in reqs]


@pytest.mark.parametrize("kind", ["plain", "int8", "int4", "fp8"])
def test_graph_decode_matches_eager_on_cuda(kind):
    model = _model()
    prompts = _prompts(model.config, [5, 23, 9, 14])
    _, eager = _run(model, kind, "eager", prompts)
    engine, graphs = _run(model, kind, "graphs", prompts)
    assert engine.graphs is not None and not engine.graphs.broken and engine.graphs.steps
    assert graphs == eager and all(len(t) == 14 for t in eager)
    if kind != "fp8":  # the fused kernel is what the graph replays (fp8 goes through SDPA)
        assert "triton-decode" in [f.name for f in engine.cache.backend.fused]


def test_graphs_in_bf16_use_the_kernel_for_the_plain_cache(monkeypatch):
    from autoui.runtime.attention.triton_decode import TritonDecodeAttention

    calls = []
    kernel = TritonDecodeAttention.__call__
    monkeypatch.setattr(TritonDecodeAttention, "__call__", lambda self, *a: calls.append(1) or kernel(self, *a))
    model = _model(torch.bfloat16)
    assert Engine(model, EngineConfig(max_batch=1, max_seq_len=64)).graphs is None  # "auto" is eager for now
    engine = Engine(model, EngineConfig(max_batch=2, max_seq_len=128, max_new_tokens=6, decode="graphs"))
    outs = engine.generate([Request(ids, px) for ids, px in _prompts(model.config, [5, 9])])
    assert engine.graphs.capture and engine.graphs.steps and not engine.graphs.broken
    assert all(len(o) == 6 for o in outs) and calls  # called while capturing: replays run it in the graph


def test_failed_capture_falls_back_to_eager(monkeypatch):
    model = _model()
    prompts = _prompts(model.config, [5, 23, 9])
    _, eager = _run(model, "plain", "eager", prompts)

    class Broken:
        def __init__(self, *a, **k):
            raise RuntimeError("capture refused")

    monkeypatch.setattr(torch.cuda, "CUDAGraph", Broken)
    engine, outs = _run(model, "plain", "graphs", prompts)
    assert "capture refused" in engine.graphs.broken and not engine.graphs.steps
    assert outs == eager
