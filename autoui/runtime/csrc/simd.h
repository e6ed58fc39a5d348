// Vector helpers of the fused CPU kernel (cpu_step.cpp): when to run a loop on several threads,
// fp32 <-> bf16 conversion, and a vectorised exp (AVX-512, AVX2 + FMA, or scalar).
#pragma once

#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>
#if defined(__AVX512F__) || (defined(__F16C__) && defined(__FMA__)) || defined(__AVX2__)
#include <immintrin.h>
#endif
#if defined(__AVX512F__) || (defined(__F16C__) && defined(__FMA__))
#define AUTOUI_F16_GEMV 1
#endif

namespace autoui_cpu {

// at::parallel_for when the loop holds enough work (about `work` multiply-adds) to pay for
// waking the other threads, else the loop inline: a decode step's small loops lose more to
// the fork/join than they gain.
constexpr int64_t kParallelWork = 1 << 16;
template <typename Fn>
inline void parallel_if(int64_t work, int64_t begin, int64_t end, Fn fn) {
  if (work < kParallelWork) {
    fn(begin, end);
  } else {
    at::parallel_for(begin, end, 1, fn);
  }
}

#if defined(__AVX512BW__)
// 16 fp32 lanes -> their bf16 bits, rounded to nearest even, by integer arithmetic
inline __m256i bf16_bits_rne(__m512 v) {
  const __m512i bits = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  return _mm512_cvtepi32_epi16(_mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(bits, _mm512_set1_epi32(0x7FFF)), lsb), 16));
}

// 16 fp32 lanes -> bf16 bits at dst, rounded to nearest even: one instruction with AVX512-BF16
inline void store_bf16x16(uint16_t* dst, __m512 v) {
#if defined(__AVX512BF16__)
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(v)));
#else
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), bf16_bits_rne(v));
#endif
}
#endif

// fp32 -> bf16 bits, rounding to nearest even (NaN inputs are not expected here).
inline void to_bf16_span(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
#if defined(__AVX512BW__)
  for (; i + 16 <= n; i += 16) _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), bf16_bits_rne(_mm512_loadu_ps(src + i)));
  if (i < n) {  // the tail, masked
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm256_mask_storeu_epi16(dst + i, m, bf16_bits_rne(_mm512_maskz_loadu_ps(m, src + i)));
    return;
  }
#endif
  for (; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, src + i, 4);
    dst[i] = static_cast<uint16_t>((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
  }
}

// one bf16 value (its bits) as fp32
inline float bf16_to_float(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float v;
  std::memcpy(&v, &bits, 4);
  return v;
}

// bf16 bits -> fp32
inline void from_bf16_span(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
#if defined(__AVX512F__)
  for (; i + 16 <= n; i += 16) {
    __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
    _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)));
  }
#endif
  for (; i < n; ++i) dst[i] = bf16_to_float(src[i]);
}

inline uint16_t* bf16_bits(const torch::Tensor& t) {
  return reinterpret_cast<uint16_t*>(t.data_ptr<at::BFloat16>());
}

// fp32 -> bf16 tensor of the same shape (row-parallel)
inline torch::Tensor to_bf16(const torch::Tensor& x) {
  auto out = torch::empty(x.sizes(), x.options().dtype(at::kBFloat16));
  const float* src = x.data_ptr<float>();
  uint16_t* dst = bf16_bits(out);
  at::parallel_for(0, x.numel(), 1 << 14, [&](int64_t a, int64_t b) { to_bf16_span(src + a, dst + a, b - a); });
  return out;
}

// exp(x) for x in [-88, 88] (clamped outside), Cephes' single-precision polynomial: ~1 ulp,
// 16 (AVX-512) or 8 (AVX2) lanes at a time. std::exp in a loop is not vectorized without
// -ffast-math, and softmax and the SiLU / GELU gates call it for every element.
// The vector width exp works in: 16 lanes with AVX-512, 8 with AVX2 + FMA, else scalar.
#if defined(__AVX512F__)
using Vec = __m512;
constexpr int64_t kLanes = 16;
inline Vec vset(float v) { return _mm512_set1_ps(v); }
inline Vec vfma(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
inline Vec vfnma(Vec a, Vec b, Vec c) { return _mm512_fnmadd_ps(a, b, c); }
inline Vec vclamp(Vec x, float lo, float hi) { return _mm512_min_ps(_mm512_max_ps(x, vset(lo)), vset(hi)); }
inline Vec vfloor(Vec x) { return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }
inline Vec vmul(Vec a, Vec b) { return _mm512_mul_ps(a, b); }
inline Vec vadd(Vec a, Vec b) { return _mm512_add_ps(a, b); }
inline Vec vpow2(Vec n) {  // 2^n for integral n
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(_mm512_cvttps_epi32(n), _mm512_set1_epi32(127)), 23));
}
inline Vec vload(const float* p) { return _mm512_loadu_ps(p); }
inline void vstore(float* p, Vec v) { _mm512_storeu_ps(p, v); }
#define AUTOUI_VEC_EXP 1
#elif defined(__AVX2__) && defined(__FMA__)
using Vec = __m256;
constexpr int64_t kLanes = 8;
inline Vec vset(float v) { return _mm256_set1_ps(v); }
inline Vec vfma(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
inline Vec vfnma(Vec a, Vec b, Vec c) { return _mm256_fnmadd_ps(a, b, c); }
inline Vec vclamp(Vec x, float lo, float hi) { return _mm256_min_ps(_mm256_max_ps(x, vset(lo)), vset(hi)); }
inline Vec vfloor(Vec x) { return _mm256_floor_ps(x); }
inline Vec vmul(Vec a, Vec b) { return _mm256_mul_ps(a, b); }
inline Vec vadd(Vec a, Vec b) { return _mm256_add_ps(a, b); }
inline Vec vpow2(Vec n) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(n), _mm256_set1_epi32(127)), 23));
}
inline Vec vload(const float* p) { return _mm256_loadu_ps(p); }
inline void vstore(float* p, Vec v) { _mm256_storeu_ps(p, v); }
#define AUTOUI_VEC_EXP 1
#else
constexpr int64_t kLanes = 1;
#endif

#ifdef AUTOUI_VEC_EXP
inline Vec exp_ps(Vec x) {
  x = vclamp(x, -88.3762626647949f, 88.3762626647949f);
  const Vec n = vfloor(vfma(x, vset(1.44269504088896341f), vset(0.5f)));  // round(x / ln 2)
  x = vfnma(n, vset(0.693359375f), x);  // x - n ln 2, in two parts (Cody-Waite)
  x = vfnma(n, vset(-2.12194440e-4f), x);
  Vec y = vset(1.9875691500e-4f);
  for (float c : {1.3981999507e-3f, 8.3334519073e-3f, 4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f})
    y = vfma(y, x, vset(c));
  y = vfma(y, vmul(x, x), vadd(x, vset(1.f)));
  return vmul(y, vpow2(n));
}
inline void exp_block(const float* in, float* out) { vstore(out, exp_ps(vload(in))); }
#else
inline void exp_block(const float* in, float* out) { *out = std::exp(*in); }
#endif

// out[j] = exp(in[j]) for j < n (in and out may be the same array); the tail through a padded block
inline void exp_array(const float* in, float* out, int64_t n) {
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) exp_block(in + j, out + j);
  if (j < n) {
    float block[kLanes] = {};
    std::copy(in + j, in + n, block);
    exp_block(block, block);
    std::copy(block, block + (n - j), out + j);
  }
}

}  // namespace autoui_cpu
