// The engine's KV caches (plain, int8, fp8, int4) as the fused CPU kernel reads and writes them.
#pragma once

#include <limits>
#include <utility>
#include "simd.h"

namespace autoui_cpu {

// The engine's KV cache as the kernel sees it, in the layouts and rounding of
// autoui/runtime/cache/quant.py:
// - plain: fp32 values [L, S, T, Hkv, Dh];
// - int8 / float8 e4m3: values [L, S, T, Hkv, Dh] and one scale per (token, head) [L, S, T,
//   Hkv]: max|x| / 127 (int8, rounding half to even) or / 448 (fp8);
// - int4: two codes per byte [L, S, T, Hkv, Dh / 2] (byte j: element j low, j + Dh/2 high),
//   a scale (max - min) / 15 and an offset (the minimum) per group [L, S, T, Hkv, Dh / group].
// Scales (fp16 or fp32) are kept above their type's smallest normal and rounded to it *before*
// the values are divided by them. Quantized rows are dequantized into fp32 scratch for attention.
struct KVStore {
  torch::Tensor data[2], scale[2], offset[2];  // [0]: keys, [1]: values
  at::ScalarType kind;
  bool half_scale = false;
  int64_t S, T, Hkv, Dh;

  KVStore(const torch::Tensor& k, const torch::Tensor& v, const torch::Tensor& ks, const torch::Tensor& vs,
          const torch::Tensor& ko, const torch::Tensor& vo, int64_t head_dim)
      : data{k, v}, scale{ks, vs}, offset{ko, vo}, kind(k.scalar_type()), Dh(head_dim) {
    TORCH_CHECK(k.dim() == 5 && k.is_contiguous() && v.is_contiguous() && v.sizes() == k.sizes() &&
                    v.scalar_type() == kind,
                "caches must be [L, S, T, Hkv, *] contiguous, keys and values alike");
    TORCH_CHECK(kind == at::kFloat || kind == at::kChar || kind == at::kFloat8_e4m3fn || kind == at::kByte,
                "the cache must be fp32, int8, float8_e4m3fn or packed int4 (uint8)");
    S = k.size(1), T = k.size(2), Hkv = k.size(3);
    TORCH_CHECK(k.size(4) == (int4() ? Dh / 2 : Dh), "the cache's last dim does not fit head_dim");
    if (plain()) return;
    for (int w = 0; w < 2; ++w) {
      const auto& sc = scale[w];
      const int64_t per_head = int4() ? sc.size(-1) : 1;
      TORCH_CHECK(sc.dim() == (int4() ? 5 : 4) && sc.is_contiguous() && sc.size(0) == k.size(0) && sc.size(1) == S &&
                      sc.size(2) == T && sc.size(3) == Hkv && Dh % per_head == 0 &&
                      (sc.scalar_type() == at::kHalf || sc.scalar_type() == at::kFloat) &&
                      sc.scalar_type() == scale[0].scalar_type(),
                  "a quantized cache needs fp16 or fp32 scales per (token, head) or per int4 group");
      TORCH_CHECK(!int4() || (offset[w].sizes() == sc.sizes() && offset[w].is_contiguous() &&
                              offset[w].scalar_type() == sc.scalar_type()),
                  "an int4 cache needs offsets shaped like its scales");
    }
    half_scale = scale[0].scalar_type() == at::kHalf;
  }

  bool plain() const { return kind == at::kFloat; }
  bool int4() const { return kind == at::kByte; }
  int64_t index(int64_t layer, int64_t slot, int64_t pos) const { return ((layer * S + slot) * T + pos) * Hkv; }
  int64_t groups(int w) const { return int4() ? scale[w].size(-1) : 1; }

  // a scale or offset as fp32, from the raw storage (no per-element tensor calls)
  float get(const void* base, int64_t i) const {
    return half_scale ? static_cast<float>(static_cast<const at::Half*>(base)[i]) : static_cast<const float*>(base)[i];
  }
  // store v in t's type and return the stored value; scales are first kept above the smallest normal
  float put(const torch::Tensor& t, int64_t i, float v, bool is_scale) const {
    if (half_scale) {
      const at::Half h(is_scale ? std::max(v, 6.103515625e-05f) : v);
      t.data_ptr<at::Half>()[i] = h;
      return static_cast<float>(h);
    }
    v = is_scale ? std::max(v, std::numeric_limits<float>::min()) : v;
    t.data_ptr<float>()[i] = v;
    return v;
  }

  // store head vectors x [Hkv, Dh] at (layer, slot, pos) of keys (w = 0) or values (w = 1)
  void write(int w, int64_t layer, int64_t slot, int64_t pos, const float* x) const {
    const int64_t at_ = index(layer, slot, pos);
    if (plain()) {
      std::copy(x, x + Hkv * Dh, data[w].data_ptr<float>() + at_ * Dh);
      return;
    }
    for (int64_t h = 0; h < Hkv; ++h) {
      const float* xh = x + h * Dh;
      if (int4()) {
        write_int4(w, at_ + h, xh);
        continue;
      }
      float amax = 0.f;
      for (int64_t e = 0; e < Dh; ++e) amax = std::max(amax, std::abs(xh[e]));
      if (kind == at::kChar) {
        const float sf = put(scale[w], at_ + h, amax / 127.f, true);
        int8_t* q = data[w].data_ptr<int8_t>() + (at_ + h) * Dh;
        for (int64_t e = 0; e < Dh; ++e)
          q[e] = static_cast<int8_t>(std::min(127.f, std::max(-127.f, std::nearbyint(xh[e] / sf))));
      } else {
        const float sf = put(scale[w], at_ + h, amax / 448.f, true);
        auto* q = data[w].data_ptr<at::Float8_e4m3fn>() + (at_ + h) * Dh;
        for (int64_t e = 0; e < Dh; ++e) q[e] = at::Float8_e4m3fn(std::min(448.f, std::max(-448.f, xh[e] / sf)));
      }
    }
  }

  void write_int4(int w, int64_t head, const float* x) const {
    const int64_t G = groups(w), gs = Dh / G, half = Dh / 2;
    uint8_t codes[1024];
    for (int64_t g = 0; g < G; ++g) {
      const float* xg = x + g * gs;
      float lo = xg[0], hi = xg[0];
      for (int64_t e = 1; e < gs; ++e) lo = std::min(lo, xg[e]), hi = std::max(hi, xg[e]);
      const float sf = put(scale[w], head * G + g, (hi - lo) / 15.f, true);
      const float of = put(offset[w], head * G + g, lo, false);
      for (int64_t e = 0; e < gs; ++e)
        codes[g * gs + e] = static_cast<uint8_t>(std::min(15.f, std::max(0.f, std::nearbyint((xg[e] - of) / sf))));
    }
    uint8_t* dst = data[w].data_ptr<uint8_t>() + head * half;
    for (int64_t j = 0; j < half; ++j) dst[j] = static_cast<uint8_t>(codes[j] | (codes[j + half] << 4));
  }

  // keys (w = 0) or values (w = 1) 0..n-1 of (layer, slot, kv head) as fp32 rows: a pointer and
  // a row stride, into the cache itself (plain) or into `scratch` (dequantized)
  std::pair<const float*, int64_t> read(int w, int64_t layer, int64_t slot, int64_t kvh, int64_t n,
                                       std::vector<float>& scratch) const {
    const int64_t at_ = index(layer, slot, 0) + kvh;
    if (plain()) return {data[w].data_ptr<float>() + at_ * Dh, Hkv * Dh};
    scratch.resize(n * Dh);
    const int64_t G = groups(w), gs = Dh / G, half = Dh / 2;
    const void* sc = scale[w].data_ptr();
    const void* of = int4() ? offset[w].data_ptr() : nullptr;
    const int8_t* q8 = kind == at::kChar ? data[w].data_ptr<int8_t>() : nullptr;
    const auto* qf8 = kind == at::kFloat8_e4m3fn ? data[w].data_ptr<at::Float8_e4m3fn>() : nullptr;
    const uint8_t* q4 = int4() ? data[w].data_ptr<uint8_t>() : nullptr;
    float codes[1024];
    for (int64_t j = 0; j < n; ++j) {
      const int64_t i = at_ + j * Hkv;
      float* dst = scratch.data() + j * Dh;
      if (q8) {
        const float sf = get(sc, i);
        for (int64_t e = 0; e < Dh; ++e) dst[e] = static_cast<float>(q8[i * Dh + e]) * sf;
      } else if (qf8) {
        const float sf = get(sc, i);
        for (int64_t e = 0; e < Dh; ++e) dst[e] = static_cast<float>(qf8[i * Dh + e]) * sf;
      } else {
        const uint8_t* q = q4 + i * half;
        for (int64_t e = 0; e < half; ++e) {
          codes[e] = static_cast<float>(q[e] & 0xF);
          codes[e + half] = static_cast<float>(q[e] >> 4);
        }
        for (int64_t g = 0; g < G; ++g) {
          const float sf = get(sc, i * G + g), o = get(of, i * G + g);
          for (int64_t e = g * gs; e < (g + 1) * gs; ++e) dst[e] = codes[e] * sf + o;
        }
      }
    }
    return {scratch.data(), Dh};
  }
};

}  // namespace autoui_cpu
