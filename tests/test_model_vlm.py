"""The joined model on the tiny preset: embedding of image tokens, padding, generation,
the runtime's cache seam, save/load, and an overfit run proving gradients flow everywhere."""
from __future__ import annotations

import time

import pytest
import torch

from autoui.model import IGNORE_INDEX, AutoUIModel, WeightsError, load_preset



@pytest.fixture()
def model():
    torch.manual_seed(0)
    return AutoUIModel(load_preset("tiny")).eval()


def _prompt(cfg, text_ids: list[int]) -> list[int]:
    return [cfg.bos_token_id] + [cfg.image_token_id] * cfg.num_image_tokens + text_ids


def test_embed_replaces_exactly_the_image_tokens(model):
    cfg = model.config
    ids = torch.tensor([_prompt(cfg, [10, 11, 12])])
    px = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        emb = model.embed(px, ids)
        feats = model.encode_images(px)
        plain = model.decoder.embed_tokens(ids)
    img = ids[0] == cfg.image_token_id
    assert torch.equal(emb[0, img], feats[0])
    assert torch.equal(emb[0, ~img], plain[0, ~img])
    with pytest.raises(ValueError, match="exactly 16 image tokens"):
        model.embed(px, ids[:, :-5])  # cuts the 3 text tokens and 2 of the 16 image tokens
    with pytest.raises(ValueError, match="no pixel_values"):
        model.embed(None, ids)


def test_left_padding_does_not_change_outputs(model):
    cfg = model.config
    a, b = _prompt(cfg, [20, 21, 22, 23, 24]), _prompt(cfg, [30, 31])
    ids = torch.tensor([a, [cfg.pad_token_id] * 3 + b])
    mask = torch.tensor([[1] * len(a), [0] * 3 + [1] * len(b)])
    px = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        both, _ = model(px, ids, mask)
        alone, _ = model(px[1:], torch.tensor([b]))
        gen_both = model.generate_greedy(px, ids, mask, max_new_tokens=6, eos_token_id=-1)
        gen_alone = model.generate_greedy(px[1:], torch.tensor([b]), max_new_tokens=6, eos_token_id=-1)
    assert (both[1, 3:] - alone[0]).abs().max() < 1e-5
    assert torch.equal(gen_both[1], gen_alone[0])
    with pytest.raises(ValueError, match="left-padded"):
        model.generate_greedy(px, ids, mask.flip(1))


def test_generate_stops_at_eos_and_pads(model):
    cfg = model.config
    ids = torch.tensor([_prompt(cfg, [40, 41]), _prompt(cfg, [50, 51])])
    px = torch.randn(2, 3, 32, 32)
    free = model.generate_greedy(px, ids, max_new_tokens=4, eos_token_id=-1)
    stop = int(free[0, 0])  # row 0 stops at once; row 1 runs until it emits the same token
    out = model.generate_greedy(px, ids, max_new_tokens=4, eos_token_id=stop)
    row1 = free[1].tolist()
    n1 = row1.index(stop) + 1 if stop in row1 else 4
    assert out.shape == (2, n1)
    assert out[0, 0] == stop and torch.all(out[0, 1:] == cfg.pad_token_id)
    assert out[1].tolist() == row1[:n1]


class ConcatCache:
    """A minimal test double of `autoui.runtime.protocol.AttentionCache` (unpadded batch)."""

    def __init__(self):
        self.k: dict[int, torch.Tensor] = {}
        self.v: dict[int, torch.Tensor] = {}

    def attend(self, layer_idx, q, k, v):
        if layer_idx in self.k:
            k, v = torch.cat([self.k[layer_idx], k], 2), torch.cat([self.v[layer_idx], v], 2)
        self.k[layer_idx], self.v[layer_idx] = k, v
        t_new, t_all = q.shape[2], k.shape[2]
        allowed = torch.ones(t_new, t_all, dtype=torch.bool).tril(t_all - t_new)  # [T_new, T_all]
        rep = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=allowed)


def test_cache_seam_matches_full_recompute(model):
    from autoui.runtime.protocol import AttentionCache

    cfg = model.config
    ids = torch.tensor([_prompt(cfg, [60, 61, 62])])
    px = torch.randn(1, 3, 32, 32)
    cache = ConcatCache()
    assert isinstance(cache, AttentionCache)
    ref = model.generate_greedy(px, ids, max_new_tokens=5, eos_token_id=-1)
    with torch.no_grad():
        emb = model.embed(px, ids)
        t = ids.shape[1]
        hidden = model.decoder(emb, torch.arange(t)[None], cache=cache)
        toks = [int(model.logits(hidden[:, -1]).argmax(-1))]
        for step in range(4):
            nxt = model.decoder.embed_tokens(torch.tensor([[toks[-1]]]))
            hidden = model.decoder(nxt, torch.tensor([[t + step]]), cache=cache)
            toks.append(int(model.logits(hidden[:, -1]).argmax(-1)))
    assert toks == ref[0].tolist()


def test_save_load_round_trip(model, tmp_path):
    model.save_pretrained(tmp_path)
    loaded = AutoUIModel.from_pretrained(tmp_path)
    assert loaded.config == model.config
    assert not any(p.is_meta for p in loaded.parameters())
    for (n1, p1), (n2, p2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)
    half = AutoUIModel.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(WeightsError, match="no model.safetensors"):
        AutoUIModel.from_pretrained(tmp_path)


def test_overfit_a_handful_of_samples():
    """Loss on target tokens only goes near zero: every part receives useful gradients."""
    torch.manual_seed(0)
    model = AutoUIModel(load_preset("tiny"))
    cfg = model.config
    n, n_text, n_tgt = 4, 6, 4
    px = torch.randn(n, 3, 32, 32)
    # same text prompt for all: the target must be read off the image
    prompt = _prompt(cfg, [70 + i for i in range(n_text)])
    targets = torch.randint(10, 250, (n, n_tgt))
    ids = torch.cat([torch.tensor([prompt] * n), targets], dim=1)
    labels = ids.clone()
    labels[:, : len(prompt)] = IGNORE_INDEX
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    start = time.process_time()  # CPU time: wall time on a shared machine measures the neighbours
    for _ in range(200):
        _, loss = model(px, ids, labels=labels, return_logits=False)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert time.process_time() - start < 60
    assert loss.item() < 0.02
    logits, full_loss = model(px, ids, labels=labels)
    assert abs(full_loss.item() - loss.item()) < 0.05
    grads = {name for name, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert any(g.startswith("vision.") for g in grads) and any(g.startswith("projector.") for g in grads)
    with pytest.raises(ValueError, match="no target tokens"):
        model(px, ids, labels=torch.full_like(ids, IGNORE_INDEX))


def test_default_preset_trains_one_step():
    torch.manual_seed(0)
    model = AutoUIModel(load_preset("default"))
    cfg = model.config
    assert cfg.num_image_tokens == 64 and 3_000_000 < model.num_parameters() < 20_000_000
    ids = torch.tensor([_prompt(cfg, list(range(10, 90)))])
    labels = ids.clone()
    labels[:, :-8] = IGNORE_INDEX
    _, loss = model(torch.randn(1, 3, 224, 224), ids, labels=labels, return_logits=False)
    loss.backward()
    assert torch.isfinite(loss) and model.vision.embeddings.patch_embedding.weight.grad is not None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bf16_on_cuda_agrees_with_fp32_cpu(model, tmp_path):
    cfg = model.config
    ids = torch.tensor([_prompt(cfg, [80, 81, 82])])
    px = torch.randn(1, 3, 32, 32)
    model.save_pretrained(tmp_path)
    gpu = AutoUIModel.from_pretrained(tmp_path, device="cuda", dtype=torch.bfloat16)
    with torch.no_grad():
        ref, _ = model(px, ids)
        out, _ = gpu(px.cuda(), ids.cuda())
    assert (out.float().cpu() - ref).abs().max() < 0.1
    assert gpu.generate_greedy(px.cuda(), ids.cuda(), max_new_tokens=4).shape[0] == 1


def test_vision_positions_start_from_a_2d_sincos_table():
    """Fresh models start their vision positions from sin-cos (rows, then columns), loud enough to be read."""
    from autoui.model.vision import sincos_positions

    table = sincos_positions(8, 64)  # [64 patches, 64 channels]
    assert table.shape == (64, 64)
    assert abs(table.pow(2).mean().sqrt().item() - 0.7071) < 0.1  # the patch embeddings' scale at init
    assert (table.std(0) > 0.2).all()  # every channel tells patches apart
    assert torch.equal(table[3, :32], table[7, :32]) and not torch.equal(table[3, 32:], table[7, 32:])  # same row
    assert torch.equal(table[1, 32:], table[9, 32:]) and not torch.equal(table[1, :32], table[9, :32])  # same column
    for preset in ("tiny", "default"):
        m = AutoUIModel(load_preset(preset))
        side = m.config.vision.image_size // m.config.vision.patch_size
        pos = m.vision.embeddings.position_embedding.weight
        assert torch.equal(pos[-side * side:], sincos_positions(side, m.config.vision.hidden_size))
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_positions(4, 30)
