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
#if defined(__AVX512F__)
    if (Dh % 32 == 0 && (!int4() || (Dh / G) % 16 == 0)) {  // 16 values at a time
      read_vec(w, q8, qf8, q4, sc, of, at_, n, scratch.data());
      return {scratch.data(), Dh};
    }
#endif
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

#if defined(__AVX512F__)
  // float8 e4m3fn codes (16, widened to int32) -> their fp32 values, exactly: normal codes move
  // their exponent (bias 7 -> 127) and mantissa into place, subnormals are m * 2^-9, and the two
  // NaN codes (exponent and mantissa all ones) stay NaN
  static __m512 fp8_to_float(__m512i b) {
    const __m512i sign = _mm512_slli_epi32(_mm512_and_si512(b, _mm512_set1_epi32(0x80)), 24);
    const __m512i e = _mm512_and_si512(_mm512_srli_epi32(b, 3), _mm512_set1_epi32(0xF));
    const __m512i m = _mm512_and_si512(b, _mm512_set1_epi32(7));
    const __m512i normal = _mm512_or_si512(_mm512_slli_epi32(_mm512_add_epi32(e, _mm512_set1_epi32(120)), 23),
                                           _mm512_slli_epi32(m, 20));
    const __m512i sub = _mm512_castps_si512(_mm512_mul_ps(_mm512_cvtepi32_ps(m), _mm512_set1_ps(1.f / 512.f)));
    __m512i bits = _mm512_or_si512(sign, _mm512_mask_blend_epi32(_mm512_cmpeq_epi32_mask(e, _mm512_setzero_si512()),
                                                                 normal, sub));
    const __mmask16 nan = _mm512_cmpeq_epi32_mask(_mm512_and_si512(b, _mm512_set1_epi32(0x7F)), _mm512_set1_epi32(0x7F));
    bits = _mm512_mask_mov_epi32(bits, nan, _mm512_set1_epi32(0x7FC00000));
    return _mm512_castsi512_ps(bits);
  }

  // `read`'s dequantization, 16 values per instruction: int8 widened, fp8 converted exactly,
  // int4's nibbles split (low: element e, high: e + Dh/2) and mapped per group; rows of n keys
  // from cache index at_ into dst [n, Dh].
  void read_vec(int w, const int8_t* q8, const at::Float8_e4m3fn* qf8, const uint8_t* q4, const void* sc,
                const void* of, int64_t at_, int64_t n, float* dst) const {
    const int64_t G = groups(w), gs = Dh / G, half = Dh / 2;
    for (int64_t j = 0; j < n; ++j, dst += Dh) {
      const int64_t i = at_ + j * Hkv;
      if (q4) {
        const uint8_t* q = q4 + i * half;
        for (int64_t e = 0; e < half; e += 16) {
          const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + e)));
          const __m512 lo = _mm512_cvtepi32_ps(_mm512_and_si512(b, _mm512_set1_epi32(0xF)));
          const __m512 hi = _mm512_cvtepi32_ps(_mm512_srli_epi32(b, 4));
          const int64_t g_lo = i * G + e / gs, g_hi = i * G + (e + half) / gs;
          _mm512_storeu_ps(dst + e, _mm512_fmadd_ps(lo, _mm512_set1_ps(get(sc, g_lo)), _mm512_set1_ps(get(of, g_lo))));
          _mm512_storeu_ps(dst + e + half,
                           _mm512_fmadd_ps(hi, _mm512_set1_ps(get(sc, g_hi)), _mm512_set1_ps(get(of, g_hi))));
        }
        continue;
      }
      const __m512 sf = _mm512_set1_ps(get(sc, i));
      for (int64_t e = 0; e < Dh; e += 16) {
        __m512 v;
        if (q8) {
          v = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q8 + i * Dh + e))));
        } else {
          const auto* codes = reinterpret_cast<const uint8_t*>(qf8 + i * Dh + e);
          v = fp8_to_float(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes))));
        }
        _mm512_storeu_ps(dst + e, _mm512_mul_ps(v, sf));
      }
    }
  }
#endif
};

}  // namespace autoui_cpu
