"""The roofline floor of an agent step (`autoui.runtime.roofline`): FLOP counts that add up,
weight bytes that match the architecture, and a floor that is the slower of compute and reads."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from autoui.model import AutoUIModel, load_preset
from autoui.runtime import roofline
from autoui.runtime.engine import Engine, EngineConfig, Request


def _model():
    torch.manual_seed(0)
    return AutoUIModel(load_preset("tiny")).eval()


def _prompts(cfg, lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in lengths:
        text = torch.randint(5, cfg.decoder.vocab_size, (n,), generator=g).tolist()
        out.append(([cfg.bos_token_id] + [cfg.image_token_id] * cfg.num_image_tokens + text,
                    torch.randn(3, cfg.image_size, cfg.image_size, generator=g)))
    return out


def test_counted_flops_of_a_matmul_and_of_cpu_attention():
    x, w = torch.randn(3, 16), torch.randn(8, 16)
    out, flops = roofline.counted_flops(lambda: F.linear(x, w))
    assert out.shape == (3, 8) and flops == 2 * 3 * 16 * 8
    q = torch.randn(1, 2, 10, 8)
    _, flops = roofline.counted_flops(lambda: F.scaled_dot_product_attention(q, q, q))
    assert flops == 2 * (2 * 2 * 10 * 10 * 8)  # scores and the weighted sum of values


def test_weight_bytes_follow_the_architecture():
    model = _model()
    c = model.config
    d, layers = c.decoder, c.decoder.num_layers
    hd = d.resolved_head_dim
    attn = d.hidden_size * hd * (d.num_heads * 2 + d.num_kv_heads * 2) + (
        hd * (d.num_heads + 2 * d.num_kv_heads) if d.qkv_bias else 0)
    per_layer = attn + 3 * d.hidden_size * d.intermediate_size + 2 * d.hidden_size  # + two norms
    head = d.vocab_size * d.hidden_size  # tied or not: the output projection is read every forward
    w = roofline.weight_bytes(model)
    assert w["decoder"] == 2 * (layers * per_layer + d.hidden_size + head)
    vision = sum(p.numel() for p in model.vision.parameters()) + sum(p.numel() for p in model.projector.parameters())
    assert w["vision"] == 2 * vision
    assert roofline.weight_bytes(model, bytes_per_param=None)["decoder"] == 2 * w["decoder"]  # fp32 as stored


def test_step_work_splits_the_runtime_calls_flops_by_phase():
    model = _model()
    prompts = _prompts(model.config, [5, 11])
    engine = Engine(model, EngineConfig(max_batch=2, max_seq_len=64, max_new_tokens=6, prefill_dtype="same"))

    def generate(batch, max_new):
        return engine.generate([Request(ids, px, max_new_tokens=max_new) for ids, px in batch])

    work = roofline.step_work(model, generate, lambda: engine, prompts, 6)
    _, total = roofline.counted_flops(lambda: generate(prompts, 6))
    assert work["vision_flops"] + work["prefill_flops"] + work["decode_flops"] == total
    _, vision = roofline.counted_flops(lambda: model.encode_images(torch.stack([px for _, px in prompts])))
    assert work["vision_flops"] == vision > 0
    assert work["prefills"] == 1 and work["decode_forwards"] == 5  # 6 tokens: the prefill chooses the first
    assert work["new_tokens"] == 12 and work["prompt_tokens"] == sum(len(ids) for ids, _ in prompts)
    assert work["padded_prompt_tokens"] == 2 * max(len(ids) for ids, _ in prompts)
    assert work["decode_flops"] > 0 and work["prefill_flops"] > work["decode_flops"] / 5  # many tokens at once
    assert "_prefill" not in engine.__dict__ and "_decode" not in engine.__dict__  # methods restored


def test_floor_is_the_slower_of_compute_and_weight_reads_per_phase():
    ceilings = {"peak_gflops": 100.0, "read_GBps": 10.0}  # 1e8 FLOPs or 1e7 bytes per ms
    weights = {"vision": 2_000_000, "decoder": 5_000_000}
    work = {"vision_flops": 3e8, "prefill_flops": 4e8, "decode_flops": 1e7, "prefills": 1, "decode_forwards": 4,
            "prompt_tokens": 30, "padded_prompt_tokens": 40}
    floor = roofline.floor_ms(work, weights, ceilings)
    assert floor["vision"] == 3.0  # compute-bound: 3e8 / 1e8 (reads: 0.2 ms)
    assert floor["prefill"] == 3.0  # compute-bound on the real tokens: 4e8 * 30/40 / 1e8 (reads: 0.5 ms)
    assert floor["decode"] == 2.0  # read-bound: 4 forwards x 5e6 bytes / 1e7 (compute: 0.1 ms)
    assert floor["total"] == 8.0


def test_measured_ceilings_are_positive_and_name_the_best_dtype():
    c = roofline.measure_ceilings(torch.device("cpu"), 1 << 20, matmul_size=128)
    assert set(c["matmul_gflops"]) == {"float32", "bfloat16"} and c["peak_gflops"] == max(c["matmul_gflops"].values())
    assert c["matmul_gflops"][c["peak_dtype"]] == c["peak_gflops"] and c["read_GBps"] > 0
    assert c["threads"] == torch.get_num_threads()
