// Fused CPU forwards of autoui's model: the decoder over the engine's KV cache (plain fp32,
// int8, fp8 or int4), and the vision tower + projector; plus the screen resize and patch cutting
// that feed them. Used by autoui/runtime/cpu_fused.py; numerics follow
// autoui/model/{decoder,vision,projector,layers}.py, with the residual stream, statistics and KV
// cache in fp32. The pieces are in the headers beside this file (simd, matmul, amx, pointwise,
// attention, kv_store, resize); this file holds the forwards and the Python bindings.
//
// Decoder rows are new tokens of any number of sequences ("ragged": one-token decode steps,
// runs of grammar-forced tokens, prefills): row i belongs to cache slot slot[i] at position
// pos[i], and the rows of one sequence are consecutive. Each layer writes every row's key and
// value into the cache first, then row i attends to keys 0..pos[i] of its own slot, so rows of
// one sequence see each other causally. Matmuls go to AMX tiles (amx.h), ATen (MKL / oneDNN) or,
// for one or two fp32 rows, to an fp16-weight GEMV here; norms, RoPE, attention and gates are
// loops here, so a forward is a few dozen calls instead of hundreds of Python-dispatched ops.
#include "attention.h"
#include "kv_store.h"
#include "matmul.h"
#include "pointwise.h"
#include "resize.h"

using namespace autoui_cpu;
using Tensors = std::vector<torch::Tensor>;

namespace {

constexpr int64_t kDecoderPerLayer = 15;  // norm, qkv, o (x3 forms), norm, gate_up, down (x3 forms), qkv bias
constexpr int64_t kVisionPerLayer = 16;   // ln1 (w, b), ln2 (w, b), (qkv, out, fc1, fc2) x (t, bf16, bias)

}  // namespace

// What one decoder layer needs besides its rows: the cache, RoPE tables and shapes.
struct DecoderShapes {
  int64_t Hq, Hkv, Dh, rep, qw, kw, row;
  float scale;
  double eps;
  const float *cos, *sin;
};

// One decoder layer (weights w, kDecoderPerLayer of them) over rows x [n, D]: group g is rows
// gs[g]..gs[g + 1] - 1 (of one cache slot, consecutive positions). x is updated in place; each
// row's key and value are written to the cache before any row attends.
// flow_b: many-row bf16 forwards keep matmul inputs and outputs in bf16 where the next step allows.
void decoder_layer(torch::Tensor x, const int64_t* slot_p, const int64_t* pos_p, const std::vector<int64_t>& gs,
                   const KVStore& store, int64_t l, const torch::Tensor* w, const DecoderShapes& s, bool bf16,
                   bool flow_b) {
  const int64_t n = x.size(0), G = static_cast<int64_t>(gs.size()) - 1, row = s.row, qw = s.qw, Dh = s.Dh;
  const torch::Tensor none;
  const Linear qkv_w{w[1], w[2], w[3], w[14]}, o_w{w[4], w[5], w[6], none}, gu_w{w[8], w[9], w[10], none},
      down_w{w[11], w[12], w[13], none};
  auto qkv = linear(norm_rows(x, w[0], nullptr, s.eps, flow_b), qkv_w, bf16);  // [n, qw + 2kw] fp32: RoPE, cache
  float* qkv_p = qkv.data_ptr<float>();
  parallel_if(n * row * 2, 0, n, [&](int64_t i0, int64_t i1) {  // RoPE on q and k, then store k and v
    for (int64_t i = i0; i < i1; ++i) {
      float* r = qkv_p + i * row;
      const float* c = s.cos + pos_p[i] * Dh;
      const float* sn = s.sin + pos_p[i] * Dh;
      for (int64_t hh = 0; hh < s.Hq + s.Hkv; ++hh) rope(r + hh * Dh, c, sn, Dh);
      store.write(0, l, slot_p[i], pos_p[i], r + qw);
      store.write(1, l, slot_p[i], pos_p[i], r + qw + s.kw);
    }
  });
  auto attn = torch::empty({n, qw}, x.options());
  float* attn_p = attn.data_ptr<float>();
  std::vector<int64_t> n_keys(n);
  int64_t attn_work = 0;
  for (int64_t i = 0; i < n; ++i) attn_work += 2 * (n_keys[i] = pos_p[i] + 1) * qw;
  // bf16 forwards on AMX run prefill attention on the tiles too
  const bool amx = bf16 && Dh % 32 == 0 && amx_available();
  // per sequence and KV head: its keys and values read (dequantized) once for the `rep` query heads sharing them
  parallel_if(attn_work, 0, G * s.Hkv, [&](int64_t t0, int64_t t1) {
    std::vector<float> kt, score, k_rows, v_rows;
#ifdef AUTOUI_AMX
    AmxKV packed;
    std::vector<uint16_t> b_buf;
#endif
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t g = t / s.Hkv, kvh = t % s.Hkv, r0 = gs[g], nr = gs[g + 1] - r0;
      int64_t n_max = 0;
      for (int64_t i = r0; i < r0 + nr; ++i) n_max = std::max(n_max, n_keys[i]);
      const auto [kp, stride] = store.read(0, l, slot_p[r0], kvh, n_max, k_rows);
      const auto vp = store.read(1, l, slot_p[r0], kvh, n_max, v_rows).first;
#ifdef AUTOUI_AMX
      if (amx && nr >= kAmxAttnRows) {  // a prefill: both products on AMX tiles, K and V packed once
        packed.pack(kp, vp, stride, n_max, Dh);
        for (int64_t hq = kvh * s.rep; hq < (kvh + 1) * s.rep; ++hq)
          attend_amx(qkv_p + r0 * row + hq * Dh, row, nr, packed, n_keys.data() + r0, Dh, s.scale,
                     attn_p + r0 * qw + hq * Dh, qw, score, b_buf);
        continue;
      }
#endif
      for (int64_t hq = kvh * s.rep; hq < (kvh + 1) * s.rep; ++hq)
        attend(qkv_p + r0 * row + hq * Dh, row, nr, kp, vp, stride, n_keys.data() + r0, n_max, Dh, s.scale,
               attn_p + r0 * qw + hq * Dh, qw, kt, score);
    }
  });
  linear(attn, o_w, bf16, &x);  // x += attn @ o^T
  // gate/up, SiLU and down (the residual stream stays fp32). When the product runs in bf16 the
  // activation is bf16, fused into it on AMX (there gate_up's bf16 form is packed gated: only
  // gated_bf16 may read it)
  const auto normed = norm_rows(x, w[7], nullptr, s.eps, flow_b);
  const auto act = takes_bf16(normed, gu_w, bf16)
                       ? gated_bf16(normed.scalar_type() == at::kBFloat16 ? normed : to_bf16(normed), w[10])
                       : silu_mul_rows(linear(normed, gu_w, bf16));  // [n, I]
  linear(act, down_w, bf16, &x);  // x += (silu(gate) * up) @ down^T
}

// x: [N, D] input embeddings (the residual stream: updated in place); slot, pos: [N] int64,
// rows of a sequence consecutive; last: [M] int64 rows whose logits are wanted.
// cache_k, cache_v, k_scale, v_scale, k_offset, v_offset: the KV cache (see KVStore; scales
// empty for fp32, offsets empty but for int4);
// rope_cos, rope_sin: [max_pos, Dh] fp32.
// weights, per layer l at kDecoderPerLayer * l: input norm, qkv (t, f16, bf16), o (t, f16,
// bf16), post norm, gate_up (t, f16, bf16), down (t, f16, bf16), qkv bias (or empty); then
// final norm, lm_head (t, f16, bf16). t: fp32 [in, out]; f16: fp16 [out, in] or empty;
// bf16: bf16 [out, in] or empty. bf16: run products of more than two rows in bf16.
torch::Tensor ragged_forward(torch::Tensor x, torch::Tensor slot, torch::Tensor pos, torch::Tensor last,
                             torch::Tensor cache_k, torch::Tensor cache_v, torch::Tensor k_scale,
                             torch::Tensor v_scale, torch::Tensor k_offset, torch::Tensor v_offset,
                             torch::Tensor rope_cos, torch::Tensor rope_sin, Tensors weights, int64_t n_heads,
                             int64_t n_kv_heads, double eps, bool bf16) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kFloat && x.is_contiguous(), "x must be [N, D] fp32 contiguous");
  TORCH_CHECK(rope_cos.dim() == 2 && rope_cos.size(1) % 2 == 0 && rope_cos.size(1) <= 1024,
              "RoPE tables must be [positions, head_dim] with an even head_dim <= 1024");
  const KVStore store(cache_k, cache_v, k_scale, v_scale, k_offset, v_offset, rope_cos.size(1));
  const int64_t N = x.size(0), D = x.size(1);
  TORCH_CHECK(N > 0, "no rows to run");
  const int64_t L = cache_k.size(0), S = store.S, T = store.T, Hkv = store.Hkv, Dh = store.Dh;
  TORCH_CHECK(Hkv == n_kv_heads && n_heads % n_kv_heads == 0, "head counts do not match the cache");
  TORCH_CHECK(static_cast<int64_t>(weights.size()) == kDecoderPerLayer * L + 4, "wrong number of decoder weights");
  TORCH_CHECK(slot.numel() == N && pos.numel() == N, "slot and pos need one entry per row");
  TORCH_CHECK(weights[0].numel() == D && weights[1].size(0) == D, "x's width differs from the model's hidden size");
  TORCH_CHECK(rope_sin.sizes() == rope_cos.sizes(), "RoPE tables must be [positions, head_dim]");
  TORCH_CHECK(slot.scalar_type() == at::kLong && pos.scalar_type() == at::kLong && last.scalar_type() == at::kLong,
              "slot, pos and last must be int64");
  const int64_t* slot_p = slot.data_ptr<int64_t>();
  const int64_t* pos_p = pos.data_ptr<int64_t>();
  for (int64_t i = 0; i < N; ++i) {
    TORCH_CHECK(slot_p[i] >= 0 && slot_p[i] < S, "slot out of range");
    TORCH_CHECK(pos_p[i] >= 0 && pos_p[i] < T && pos_p[i] < rope_cos.size(0), "position out of range");
  }
  // groups of consecutive rows of one sequence: group g is rows group_start[g] .. group_start[g + 1] - 1
  std::vector<int64_t> group_start{0};
  for (int64_t i = 1; i < N; ++i)
    if (slot_p[i] != slot_p[i - 1]) group_start.push_back(i);
  group_start.push_back(N);
  const int64_t Hq = n_heads, qw = Hq * Dh, kw = Hkv * Dh;
  const DecoderShapes shapes{Hq, Hkv, Dh, Hq / Hkv, qw, kw, qw + 2 * kw, 1.f / std::sqrt(static_cast<float>(Dh)), eps,
                             rope_cos.data_ptr<float>(), rope_sin.data_ptr<float>()};
  // bf16 forwards keep matmul inputs and outputs in bf16 where the next step allows: always on
  // AMX (packed weights), else for more rows than the fp16 GEMV takes
  const bool flow_b = bf16 && weights[3].numel() && (weights[3].dim() == 4 || N > kGemvRows);
  for (int64_t l = 0; l < L; ++l)
    decoder_layer(x, slot_p, pos_p, group_start, store, l, &weights[kDecoderPerLayer * l], shapes, bf16, flow_b);
  const torch::Tensor* f = &weights[kDecoderPerLayer * L];
  const torch::Tensor none;
  return linear(norm_rows(x.index_select(0, last), f[0], nullptr, eps, false), Linear{f[1], f[2], f[3], none}, bf16);
}

// patches: [B * P, C * p * p] fp32 (or bf16 when `bf16`), the image cut into P patches per image in the patch
// embedding's (channel, row, column) order. Returns the projected features [B * P, Dt].
// weights: patch (t, bf16, bias), positions [P, Dv]; per layer at 4 + kVisionPerLayer * l:
// ln1 w, ln1 b, qkv (t, bf16, bias), out (t, bf16, bias), ln2 w, ln2 b, fc1 (t, bf16, bias),
// fc2 (t, bf16, bias); then projector linear_1 (t, bf16, bias), linear_2 (t, bf16, bias).
// tanh_gelu: the tower's activation is GELU's tanh form (else exact); the projector's is exact.
torch::Tensor vision_forward(torch::Tensor patches, int64_t n_images, Tensors weights, int64_t n_layers,
                             int64_t n_heads, double eps, bool tanh_gelu, bool bf16) {
  TORCH_CHECK(patches.dim() == 2 && patches.is_contiguous() &&
                  (patches.scalar_type() == at::kFloat || (patches.scalar_type() == at::kBFloat16 && bf16)),
              "patches must be [B * P, C * p * p] contiguous, fp32 (or bf16 for a bf16 forward)");
  TORCH_CHECK(static_cast<int64_t>(weights.size()) == 4 + kVisionPerLayer * n_layers + 6,
              "wrong number of vision weights");
  const int64_t P = weights[3].size(0), Dv = weights[3].size(1), N = patches.size(0);
  TORCH_CHECK(n_images > 0 && N == n_images * P, "patches must hold P rows per image");
  TORCH_CHECK(patches.size(1) == weights[0].size(0), "patch width differs from the patch embedding's");
  TORCH_CHECK(Dv % n_heads == 0 && Dv / n_heads <= 1024, "hidden size must split into heads");
  const int64_t Dh = Dv / n_heads;
  const torch::Tensor none;
  auto x = linear(patches, Linear{weights[0], none, weights[1], weights[2]}, bf16);  // [N, Dv]
  x.view({n_images, P, Dv}).add_(weights[3]);
  // many-row bf16 forwards keep matmul inputs and outputs in bf16 where the next step allows
  const bool flow_b = bf16 && weights[1].numel() && N > kGemvRows;
  for (int64_t l = 0; l < n_layers; ++l) {  // the residual stream x stays fp32
    const torch::Tensor* w = &weights[4 + kVisionPerLayer * l];
    const Linear qkv_w{w[2], none, w[3], w[4]}, out_w{w[5], none, w[6], w[7]}, fc1_w{w[10], none, w[11], w[12]},
        fc2_w{w[13], none, w[14], w[15]};
    // LayerNorm, then a linear whose result the next step reads: bf16 throughout with flow_b
    auto norm_linear = [&](const torch::Tensor& nw, const torch::Tensor& nb, const Linear& lin) {
      return flow_b ? bf16_linear(norm_rows(x, nw, &nb, eps, true), lin.wb, lin.bias)
                    : linear(at::layer_norm(x, {Dv}, nw, nb, eps), lin, bf16);
    };
    auto qkv = norm_linear(w[0], w[1], qkv_w).view({n_images, P, 3, n_heads, Dh});
    // every patch sees every patch, the same length for all images: PyTorch's fused CPU
    // attention on strided views of qkv is faster here than the kernel's own (1.6 vs 2.9 ms a
    // layer for 32 images, 2-core Xeon, 2026-12-05)
    auto heads = [&](int64_t i) { return qkv.select(2, i).transpose(1, 2); };  // [B, H, P, Dh]
    linear(at::scaled_dot_product_attention(heads(0), heads(1), heads(2)).transpose(1, 2).reshape({N, Dv}), out_w,
           bf16, &x);
    torch::Tensor mid;
    if (flow_b && tanh_gelu) {  // GELU fused into the product on AMX
      mid = gelu_tanh_bf16(norm_rows(x, w[8], &w[9], eps, true), fc1_w.wb, fc1_w.bias);
    } else {
      mid = norm_linear(w[8], w[9], fc1_w);
      gelu_rows_(mid, tanh_gelu);
    }
    linear(mid, fc2_w, bf16, &x);
  }
  const torch::Tensor* pj = &weights[4 + kVisionPerLayer * n_layers];
  const Linear proj1{pj[0], none, pj[1], pj[2]}, proj2{pj[3], none, pj[4], pj[5]};
  auto mid = flow_b ? bf16_linear(to_bf16(x), proj1.wb, proj1.bias) : linear(x, proj1, bf16);
  gelu_rows_(mid, false);
  return linear(mid, proj2, bf16);
}

// images: B tensors [C, S, S] fp32 (contiguous) -> their p x p patches as rows [B * (S/p)^2, C * p * p],
// in the patch embedding's (channel, row, column) order and the tower's patch order (row-major
// over the grid); bf16 rows when `bf16` (the patch embedding's input in a bf16 forward).
torch::Tensor patchify(Tensors images, int64_t p, bool bf16) {
  TORCH_CHECK(!images.empty() && p > 0, "patchify needs images and a patch size");
  const auto& first = images[0];
  TORCH_CHECK(first.dim() == 3 && first.size(1) == first.size(2) && first.size(1) % p == 0,
              "images must be [C, S, S] with S a multiple of the patch size");
  const int64_t B = static_cast<int64_t>(images.size()), C = first.size(0), S = first.size(1), g = S / p;
  for (const auto& im : images)
    TORCH_CHECK(im.sizes() == first.sizes() && im.scalar_type() == at::kFloat && im.is_contiguous(),
                "images must all be contiguous fp32 of one shape");
  const int64_t width = C * p * p;
  auto out = torch::empty({B * g * g, width}, first.options().dtype(bf16 ? at::kBFloat16 : at::kFloat));
  std::vector<const float*> src(B);
  for (int64_t b = 0; b < B; ++b) src[b] = images[b].data_ptr<float>();
  float* out_f = bf16 ? nullptr : out.data_ptr<float>();
  uint16_t* out_b = bf16 ? bf16_bits(out) : nullptr;
  at::parallel_for(0, B * g, 1, [&](int64_t t0, int64_t t1) {
    std::vector<uint16_t> line(S);
    for (int64_t t = t0; t < t1; ++t) {  // one row of patches of one image, read one image row at a time
      const int64_t b = t / g, gy = t % g, r0 = (b * g + gy) * g;
      for (int64_t c = 0; c < C; ++c)
        for (int64_t y = 0; y < p; ++y) {
          const float* from = src[b] + (c * S + gy * p + y) * S;
          const int64_t at_ = r0 * width + (c * p + y) * p;  // in patch gx: at_ + gx * width
          if (out_b) {
            to_bf16_span(from, line.data(), S);
            for (int64_t gx = 0; gx < g; ++gx) std::copy(&line[gx * p], &line[gx * p] + p, out_b + at_ + gx * width);
          } else {
            for (int64_t gx = 0; gx < g; ++gx) std::copy(from + gx * p, from + (gx + 1) * p, out_f + at_ + gx * width);
          }
        }
    }
  });
  return out;
}

// Row-wise argmax of logits [B, V] fp32 over the entries where allowed [B, V] (bool) is true: the
// first index of the largest allowed value (0 for a row with none allowed, as argmax of all -inf).
torch::Tensor masked_argmax(torch::Tensor logits, torch::Tensor allowed) {
  TORCH_CHECK(logits.dim() == 2 && logits.scalar_type() == at::kFloat && logits.is_contiguous(),
              "logits must be [B, V] fp32 contiguous");
  TORCH_CHECK(allowed.sizes() == logits.sizes() && allowed.scalar_type() == at::kBool && allowed.is_contiguous(),
              "allowed must be a contiguous bool tensor shaped like logits");
  const int64_t B = logits.size(0), V = logits.size(1);
  auto out = torch::zeros({B}, logits.options().dtype(at::kLong));
  const float* lp = logits.data_ptr<float>();
  const bool* ap = allowed.data_ptr<bool>();
  int64_t* op = out.data_ptr<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    const float* l = lp + b * V;
    const bool* a = ap + b * V;
    float best = -std::numeric_limits<float>::infinity();
    int64_t at_ = -1;
    for (int64_t j = 0; j < V; ++j)
      if (a[j] && (at_ < 0 || l[j] > best)) best = l[j], at_ = j;
    op[b] = std::max<int64_t>(at_, 0);
  }
  return out;
}

bool has_amx() { return amx_available(); }

// x [M, K] bf16 times bf16 weights w ([N, K], or AMX-packed by vnni_pack) (+ bias) -> fp32 [M, N]:
// the kernel's many-row product on its own, for tests and measurements.
torch::Tensor bf16_matmul(torch::Tensor x, torch::Tensor w, torch::Tensor bias) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kBFloat16 && w.scalar_type() == at::kBFloat16,
              "x and w must be bf16");
  TORCH_CHECK(w.dim() == 2 || amx_available(), "packed weights need AMX");
  TORCH_CHECK(x.size(1) == (w.dim() == 4 ? w.size(1) * 32 : w.size(1)), "x's width differs from the weights'");
  const torch::Tensor none;
  return linear(x, Linear{none, none, w, bias}, true);
}

bool has_f16_gemv() {
#ifdef AUTOUI_F16_GEMV
  return true;
#else
  return false;
#endif
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("ragged_forward", &ragged_forward, "fused decoder forward over a plain, int8, fp8 or int4 KV cache (CPU)");
  m.def("vision_forward", &vision_forward, "fused vision tower + projector forward (CPU)");
  m.def("patchify", &patchify, "images [C, S, S] -> patch rows [B * P, C * p * p], fp32 or bf16");
  m.def("screen_pixels", &screen_pixels, "uint8 screen [H, W, 3] -> normalised [3, S, S] (Pillow-exact bilinear resize)");
  m.def("bf16_matmul", &bf16_matmul, "x bf16 @ w^T (+ bias) -> fp32, through AMX tiles for packed weights");
  m.def("masked_argmax", &masked_argmax, "row-wise argmax of logits over allowed entries");
  m.def("has_amx", &has_amx, "whether bf16 products run on AMX tiles here (weights packed by vnni_pack)");
  m.def("has_f16_gemv", &has_f16_gemv, "whether this build multiplies one- and two-row products by fp16 weights");
}
