// Fused CPU forwards of autoui's model: the decoder over a plain fp32 KV cache, and the
// vision tower + projector. Used by autoui/runtime/cpu_fused.py; numerics follow
// autoui/model/{decoder,vision,projector,layers}.py, with activations in fp32 throughout.
//
// Decoder rows are new tokens of any number of sequences ("ragged": one-token decode steps,
// runs of grammar-forced tokens, prefills): row i belongs to cache slot slot[i] at position
// pos[i], and the rows of one sequence are consecutive. Each layer writes every row's key and
// value into the cache first, then row i attends to keys 0..pos[i] of its own slot, so rows of
// one sequence see each other causally. Matmuls go to ATen (MKL / oneDNN) or, for one or two
// rows, to an fp16-weight GEMV here; norms, RoPE, attention and gates are loops here, so a
// forward is a few dozen calls instead of hundreds of Python-dispatched ops.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>
#if defined(__AVX512F__) || (defined(__F16C__) && defined(__FMA__))
#include <immintrin.h>
#define AUTOUI_F16_GEMV 1
#endif

namespace {

using Tensors = std::vector<torch::Tensor>;

// Rows up to this many take the fp16-weight GEMV (half the bytes of fp32 weights, which is what
// one-row products are bound by); more rows go to ATen, which wins from 4 rows on (2-core Xeon
// with AVX-512, 2026-12-05: the 17 products of one decode token 306 vs 521 us at 1 row, 427 vs
// 595 at 2, 661 vs 616 at 4).
constexpr int64_t kGemvRows = 2;

// at::parallel_for when the loop holds enough work (about `work` multiply-adds) to pay for
// waking the other threads, else the loop inline: a decode step's small loops lose more to
// the fork/join than they gain.
constexpr int64_t kParallelWork = 1 << 16;
template <typename Fn>
void parallel_if(int64_t work, int64_t begin, int64_t end, Fn fn) {
  if (work < kParallelWork) {
    fn(begin, end);
  } else {
    at::parallel_for(begin, end, 1, fn);
  }
}

#ifdef AUTOUI_F16_GEMV
// y[r, o] (+)= dot(x[r, :], w[o, :]) for r < n, o < out; w is fp16 [out, in] with in % 16 == 0.
void gemv_f16(const float* x, int64_t n, int64_t in, const uint16_t* w, int64_t out, float* y, bool accumulate) {
  parallel_if(n * in * out, 0, out, [&](int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; ++o) {
      const uint16_t* wr = w + o * in;
      for (int64_t r = 0; r < n; ++r) {
        const float* xr = x + r * in;
#if defined(__AVX512F__)
        __m512 acc = _mm512_setzero_ps();
        for (int64_t k = 0; k < in; k += 16) {
          __m512 wv = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wr + k)));
          acc = _mm512_fmadd_ps(_mm512_loadu_ps(xr + k), wv, acc);
        }
        const float dot = _mm512_reduce_add_ps(acc);
#else
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        for (int64_t k = 0; k < in; k += 16) {
          __m256 w0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wr + k)));
          __m256 w1 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wr + k + 8)));
          a0 = _mm256_fmadd_ps(_mm256_loadu_ps(xr + k), w0, a0);
          a1 = _mm256_fmadd_ps(_mm256_loadu_ps(xr + k + 8), w1, a1);
        }
        alignas(32) float lanes[8];
        _mm256_store_ps(lanes, _mm256_add_ps(a0, a1));
        float dot = 0.f;
        for (float v : lanes) dot += v;
#endif
        float* dst = y + r * out + o;
        *dst = accumulate ? *dst + dot : dot;
      }
    }
  });
}
#endif

// One linear layer in the forms the kernel may use: fp32 [in, out] (always), fp16 [out, in]
// (when the weights are exactly fp16 numbers), bf16 [out, in] (when the CPU multiplies bf16 in
// hardware), and a bias (or empty tensors).
struct Linear {
  const torch::Tensor &w_t, &w16, &wb, &bias;
};

// fp32 -> bf16 bits, rounding to nearest even (NaN inputs are not expected here).
inline void to_bf16_span(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
#if defined(__AVX512BW__)
  const __m512i bias = _mm512_set1_epi32(0x7FFF), one = _mm512_set1_epi32(1);
  for (; i + 16 <= n; i += 16) {
    __m512i bits = _mm512_castps_si512(_mm512_loadu_ps(src + i));
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), one);
    bits = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(bits, bias), lsb), 16);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), _mm512_cvtepi32_epi16(bits));
  }
#endif
  for (; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, src + i, 4);
    dst[i] = static_cast<uint16_t>((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
  }
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
  for (; i < n; ++i) {
    const uint32_t bits = static_cast<uint32_t>(src[i]) << 16;
    std::memcpy(dst + i, &bits, 4);
  }
}

inline uint16_t* bf16_bits(const torch::Tensor& t) {
  return reinterpret_cast<uint16_t*>(t.data_ptr<at::BFloat16>());
}

// fp32 -> bf16 tensor of the same shape (row-parallel)
torch::Tensor to_bf16(const torch::Tensor& x) {
  auto out = torch::empty(x.sizes(), x.options().dtype(at::kBFloat16));
  const float* src = x.data_ptr<float>();
  uint16_t* dst = bf16_bits(out);
  at::parallel_for(0, x.numel(), 1 << 14, [&](int64_t a, int64_t b) { to_bf16_span(src + a, dst + a, b - a); });
  return out;
}

// dst[r, o] = (accumulate ? dst[r, o] : 0) + y[r, o] + bias[o], y bf16 [rows, out] (one pass).
void add_bf16_rows(const torch::Tensor& y, const torch::Tensor& bias, float* dst, bool accumulate) {
  const int64_t rows = y.size(0), out = y.size(1);
  const auto* src = reinterpret_cast<const uint16_t*>(y.data_ptr<at::BFloat16>());
  std::vector<float> zeros;
  if (!bias.numel()) zeros.assign(out, 0.f);
  const float* b = bias.numel() ? bias.data_ptr<float>() : zeros.data();
  at::parallel_for(0, rows, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const uint16_t* yr = src + r * out;
      float* dr = dst + r * out;
      int64_t o = 0;
#if defined(__AVX512F__)
      for (; o + 16 <= out; o += 16) {
        __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(yr + o));
        __m512 v = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
        v = _mm512_add_ps(v, _mm512_loadu_ps(b + o));
        if (accumulate) v = _mm512_add_ps(v, _mm512_loadu_ps(dr + o));
        _mm512_storeu_ps(dr + o, v);
      }
#endif
      for (; o < out; ++o) {
        const uint32_t bits = static_cast<uint32_t>(yr[o]) << 16;
        float v;
        std::memcpy(&v, &bits, 4);
        dr[o] = (accumulate ? dr[o] : 0.f) + v + b[o];
      }
    }
  });
}

// x @ w (+ bias); with `acc`, the result is added into acc in place and acc is returned.
// `bf16`: many-row products run as bf16 x bf16 -> fp32 (AMX / AVX512-BF16), activations stay fp32.
torch::Tensor linear(const torch::Tensor& x, const Linear& w, bool bf16, torch::Tensor* acc = nullptr) {
  const bool has_bias = w.bias.numel() > 0;
#ifdef AUTOUI_F16_GEMV
  if (w.w16.numel() && x.size(0) <= kGemvRows && x.size(1) % 16 == 0) {
    const auto* wp = reinterpret_cast<const uint16_t*>(w.w16.data_ptr<at::Half>());
    torch::Tensor y = acc ? *acc : torch::empty({x.size(0), w.w16.size(0)}, x.options());
    gemv_f16(x.data_ptr<float>(), x.size(0), x.size(1), wp, w.w16.size(0), y.data_ptr<float>(), acc != nullptr);
    if (has_bias) y.add_(w.bias);
    return y;
  }
#endif
  if (bf16 && w.wb.numel()) {
    auto y = at::linear(to_bf16(x), w.wb);  // bf16 [rows, out]; [out, in] weights: oneDNN's fast layout
    torch::Tensor dst = acc ? *acc : torch::empty({x.size(0), w.wb.size(0)}, x.options());
    add_bf16_rows(y, w.bias, dst.data_ptr<float>(), acc != nullptr);
    return dst;
  }
  if (acc) {
    acc->addmm_(x, w.w_t);
    return has_bias ? acc->add_(w.bias) : *acc;
  }
  return has_bias ? at::addmm(w.bias, x, w.w_t) : at::mm(x, w.w_t);
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

// out[j] = exp(in[j]) for j < n (in and out may be the same array)
inline void exp_array(const float* in, float* out, int64_t n) {
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) exp_block(in + j, out + j);
  for (; j < n; ++j) out[j] = std::exp(in[j]);
}

// a = silu(g) * u = g * u / (1 + exp(-g)), row of width n; scratch holds n floats
inline void silu_mul(const float* g, const float* u, float* a, int64_t n, float* scratch) {
#pragma omp simd
  for (int64_t e = 0; e < n; ++e) scratch[e] = -g[e];
  exp_array(scratch, scratch, n);
#pragma omp simd
  for (int64_t e = 0; e < n; ++e) a[e] = g[e] * u[e] / (1.f + scratch[e]);
}

// GELU, tanh form, in place: 0.5 x (1 + tanh(z)), z = sqrt(2/pi) (x + 0.044715 x^3), with
// 1 + tanh(z) = 2 - 2 / (exp(2z) + 1); scratch holds n floats
inline void gelu_tanh_inplace(float* x, int64_t n, float* scratch) {
  const float k = 0.7978845608028654f;
#pragma omp simd
  for (int64_t e = 0; e < n; ++e) scratch[e] = 2.f * k * (x[e] + 0.044715f * x[e] * x[e] * x[e]);
  exp_array(scratch, scratch, n);
#pragma omp simd
  for (int64_t e = 0; e < n; ++e) x[e] = 0.5f * x[e] * (2.f - 2.f / (scratch[e] + 1.f));
}

// Row-wise norms of x [rows, d] written as bf16 (the next matmul's input): RMSNorm when `mean_b`
// is null, else LayerNorm with bias mean_b. Statistics in fp32.
torch::Tensor norm_to_bf16(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor* bias, double eps) {
  const int64_t rows = x.size(0), d = x.size(1);
  auto out = torch::empty({rows, d}, x.options().dtype(at::kBFloat16));
  const float* xp = x.data_ptr<float>();
  const float* wp = w.data_ptr<float>();
  const float* bp = bias ? bias->data_ptr<float>() : nullptr;
  uint16_t* op = bf16_bits(out);
  at::parallel_for(0, rows, 16, [&](int64_t r0, int64_t r1) {
    std::vector<float> tmp(d);
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = xp + r * d;
      float mean = 0.f;
      if (bp) {
#pragma omp simd reduction(+ : mean)
        for (int64_t j = 0; j < d; ++j) mean += xr[j];
        mean /= static_cast<float>(d);
      }
      float ss = 0.f;
#pragma omp simd reduction(+ : ss)
      for (int64_t j = 0; j < d; ++j) ss += (xr[j] - mean) * (xr[j] - mean);
      const float inv = 1.f / std::sqrt(ss / static_cast<float>(d) + static_cast<float>(eps));
      if (bp) {
#pragma omp simd
        for (int64_t j = 0; j < d; ++j) tmp[j] = (xr[j] - mean) * inv * wp[j] + bp[j];
      } else {
#pragma omp simd
        for (int64_t j = 0; j < d; ++j) tmp[j] = xr[j] * inv * wp[j];
      }
      to_bf16_span(tmp.data(), op + r * d, d);
    }
  });
  return out;
}

// In place on bf16 rows [rows, width]: fn(fp32 row, scratch) applied between a widening and a rounding.
template <typename Fn>
void map_bf16_rows(torch::Tensor& t, Fn fn) {
  const int64_t rows = t.size(0), width = t.size(1);
  uint16_t* p = bf16_bits(t);
  at::parallel_for(0, rows, 16, [&](int64_t r0, int64_t r1) {
    std::vector<float> row(width), scratch(width);
    for (int64_t r = r0; r < r1; ++r) {
      from_bf16_span(p + r * width, row.data(), width);
      fn(row.data(), scratch.data(), width);
      to_bf16_span(row.data(), p + r * width, width);
    }
  });
}

// act [rows, I] = silu(gate) * up from gate_up [rows, 2I], both bf16 (computed in fp32)
torch::Tensor silu_mul_bf16(const torch::Tensor& gu) {
  const int64_t rows = gu.size(0), I = gu.size(1) / 2;
  auto act = torch::empty({rows, I}, gu.options());
  const uint16_t* src = bf16_bits(gu);
  uint16_t* dst = bf16_bits(act);
  at::parallel_for(0, rows, 16, [&](int64_t r0, int64_t r1) {
    std::vector<float> g(2 * I), a(I), scratch(I);
    for (int64_t r = r0; r < r1; ++r) {
      from_bf16_span(src + r * 2 * I, g.data(), 2 * I);
      silu_mul(g.data(), g.data() + I, a.data(), I, scratch.data());
      to_bf16_span(a.data(), dst + r * I, I);
    }
  });
  return act;
}

// y = x_b @ w_b^T (+ bias), all bf16 (oneDNN), for a result the next step reads as bf16
torch::Tensor bf16_linear(const torch::Tensor& x_b, const torch::Tensor& w_b, const torch::Tensor& bias) {
  return bias.numel() ? at::linear(x_b, w_b, bias.to(at::kBFloat16)) : at::linear(x_b, w_b);
}

void rms_norm_rows(const float* x, const float* w, float* out, int64_t rows, int64_t d, double eps) {
  at::parallel_for(0, rows, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * d;
      float* o = out + r * d;
      float ss = 0.f;
#pragma omp simd reduction(+ : ss)
      for (int64_t j = 0; j < d; ++j) ss += xr[j] * xr[j];
      const float inv = 1.f / std::sqrt(ss / static_cast<float>(d) + static_cast<float>(eps));
#pragma omp simd
      for (int64_t j = 0; j < d; ++j) o[j] = xr[j] * inv * w[j];
    }
  });
}

// x[j] * cos[j] + x[(j + D/2) % D] * sin_rot[j]  (autoui.model.layers.apply_rope)
inline void rope(float* x, const float* cos, const float* sin_rot, int64_t dh) {
  const int64_t half = dh / 2;
  float tmp[1024];
  std::copy(x, x + dh, tmp);
#pragma omp simd
  for (int64_t j = 0; j < half; ++j) x[j] = tmp[j] * cos[j] + tmp[j + half] * sin_rot[j];
#pragma omp simd
  for (int64_t j = half; j < dh; ++j) x[j] = tmp[j] * cos[j] + tmp[j - half] * sin_rot[j];
}

// softmax(s[0..n)) in place
inline void softmax(float* s, int64_t n) {
  float mx = s[0];
#pragma omp simd reduction(max : mx)
  for (int64_t j = 1; j < n; ++j) mx = std::max(mx, s[j]);
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) s[j] -= mx;
  exp_array(s, s, n);
  float sum = 0.f;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < n; ++j) sum += s[j];
  const float inv = 1.f / sum;
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) s[j] *= inv;
}

// out[e] = sum_j p[j] v[j * stride + e]
inline void weighted_sum(const float* p, const float* v, int64_t stride, int64_t n, int64_t dh, float* out) {
#if defined(__AVX512F__)
  if (dh % 16 == 0 && dh <= 256) {  // the output row stays in registers
    __m512 acc[16];
    const int64_t c_n = dh / 16;
    for (int64_t c = 0; c < c_n; ++c) acc[c] = _mm512_setzero_ps();
    for (int64_t j = 0; j < n; ++j) {
      const __m512 pj = _mm512_set1_ps(p[j]);
      const float* vj = v + j * stride;
      for (int64_t c = 0; c < c_n; ++c) acc[c] = _mm512_fmadd_ps(pj, _mm512_loadu_ps(vj + 16 * c), acc[c]);
    }
    for (int64_t c = 0; c < c_n; ++c) _mm512_storeu_ps(out + 16 * c, acc[c]);
    return;
  }
#endif
  std::fill(out, out + dh, 0.f);
  for (int64_t j = 0; j < n; ++j) {
    const float pj = p[j];
    const float* vj = v + j * stride;
#pragma omp simd
    for (int64_t e = 0; e < dh; ++e) out[e] += pj * vj[e];
  }
}

// One query over n keys (a decode step): scores as dot products read straight from the cache.
void attend_one(const float* q, const float* k, const float* v, int64_t stride, int64_t n, int64_t dh, float scale,
                float* out, std::vector<float>& score) {
  score.resize(n);
  float* s = score.data();
  for (int64_t j = 0; j < n; ++j) {
    const float* kj = k + j * stride;
    float dot = 0.f;
#pragma omp simd reduction(+ : dot)
    for (int64_t e = 0; e < dh; ++e) dot += q[e] * kj[e];
    s[j] = dot * scale;
  }
  softmax(s, n);
  weighted_sum(s, v, stride, n, dh, out);
}

#if defined(__AVX512F__)
// Four queries at a time against keys transposed into kt [dh, n_pad] (the micro-kernel of
// `attend` for head sizes 16 * C): each loaded key vector feeds four queries' accumulators and
// each loaded value row four outputs, so the loops are bound by FMAs, not by loads. Queries
// past nq repeat the last one (computed, not stored).
template <int C>
void attend4(const float* q, int64_t q_stride, int64_t nq, const float* v, int64_t stride, const int64_t* n_keys,
             const float* kt, int64_t n_pad, float scale, float* out, int64_t out_stride, float* score) {
  constexpr int64_t dh = 16 * C;
  for (int64_t i0 = 0; i0 < nq; i0 += 4) {
    const float* qs[4];
    int64_t ns[4], n4 = 0;
    for (int r = 0; r < 4; ++r) {
      const int64_t i = std::min(i0 + r, nq - 1);
      qs[r] = q + i * q_stride;
      ns[r] = n_keys[i];
      n4 = std::max(n4, ns[r]);
    }
    for (int64_t j0 = 0; j0 < n4; j0 += 64) {
      __m512 acc[4][4];
      for (auto& a : acc)
        for (auto& b : a) b = _mm512_setzero_ps();
      for (int64_t e = 0; e < dh; ++e) {
        const float* row = kt + e * n_pad + j0;
        const __m512 k0 = _mm512_loadu_ps(row), k1 = _mm512_loadu_ps(row + 16), k2 = _mm512_loadu_ps(row + 32),
                     k3 = _mm512_loadu_ps(row + 48);
        for (int r = 0; r < 4; ++r) {
          const __m512 qe = _mm512_set1_ps(qs[r][e] * scale);
          acc[r][0] = _mm512_fmadd_ps(qe, k0, acc[r][0]);
          acc[r][1] = _mm512_fmadd_ps(qe, k1, acc[r][1]);
          acc[r][2] = _mm512_fmadd_ps(qe, k2, acc[r][2]);
          acc[r][3] = _mm512_fmadd_ps(qe, k3, acc[r][3]);
        }
      }
      for (int r = 0; r < 4; ++r)
        for (int c = 0; c < 4; ++c) _mm512_storeu_ps(score + r * n_pad + j0 + 16 * c, acc[r][c]);
    }
    for (int r = 0; r < 4; ++r) {  // probabilities, zero past each query's own keys
      float* s = score + r * n_pad;
      softmax(s, ns[r]);
      std::fill(s + ns[r], s + n4, 0.f);
    }
    __m512 o[4][C];
    for (auto& a : o)
      for (auto& b : a) b = _mm512_setzero_ps();
    for (int64_t j = 0; j < n4; ++j) {
      const float* vj = v + j * stride;
      __m512 vv[C];
      for (int c = 0; c < C; ++c) vv[c] = _mm512_loadu_ps(vj + 16 * c);
      for (int r = 0; r < 4; ++r) {
        const __m512 p = _mm512_set1_ps(score[r * n_pad + j]);
        for (int c = 0; c < C; ++c) o[r][c] = _mm512_fmadd_ps(p, vv[c], o[r][c]);
      }
    }
    for (int r = 0; r < 4 && i0 + r < nq; ++r)
      for (int c = 0; c < C; ++c) _mm512_storeu_ps(out + (i0 + r) * out_stride + 16 * c, o[r][c]);
  }
}
#endif

// Softmax attention of `nq` queries over keys/values 0..n_keys[i]-1 (key j at k + j * stride).
// Keys are transposed once into `kt` [dh, n_pad] (zero-padded to whole vectors), so each
// query's scores are accumulated across keys in registers, 16 (or 8) keys per vector; values
// are summed into the output row the same way. Query i and its output live at q + i *
// q_stride and out + i * out_stride.
void attend(const float* q, int64_t q_stride, int64_t nq, const float* k, const float* v, int64_t stride,
            const int64_t* n_keys, int64_t n_max, int64_t dh, float scale, float* out, int64_t out_stride,
            std::vector<float>& kt, std::vector<float>& score) {
  if (nq == 1) {  // a decode step: dot products straight from the cache, no transpose
    attend_one(q, k, v, stride, n_keys[0], dh, scale, out, score);
    return;
  }
  constexpr int64_t kBlock = 4 * kLanes;  // keys scored together: four independent accumulators
  const int64_t n_pad = (n_max + kBlock - 1) / kBlock * kBlock;
  kt.resize(dh * n_pad);
  score.resize(4 * n_pad);
  for (int64_t e = 0; e < dh; ++e) {  // kt[e, j] = k[j, e], zero past n_max
    float* dst = kt.data() + e * n_pad;
    for (int64_t j = 0; j < n_max; ++j) dst[j] = k[j * stride + e];
    std::fill(dst + n_max, dst + n_pad, 0.f);
  }
#if defined(__AVX512F__)
  if (dh == 32 || dh == 64) {
    (dh == 32 ? attend4<2> : attend4<4>)(q, q_stride, nq, v, stride, n_keys, kt.data(), n_pad, scale, out, out_stride,
                                        score.data());
    return;
  }
#endif
  for (int64_t i = 0; i < nq; ++i) {
    const float* qi = q + i * q_stride;
    const int64_t n = n_keys[i];
    float* s = score.data();
#if defined(__AVX512F__)
    for (int64_t j0 = 0; j0 < n; j0 += kBlock) {  // (keys past n are zero columns; their scores are unused)
      __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
      for (int64_t e = 0; e < dh; ++e) {
        const __m512 qe = _mm512_set1_ps(qi[e] * scale);
        const float* row = kt.data() + e * n_pad + j0;
        a0 = _mm512_fmadd_ps(qe, _mm512_loadu_ps(row), a0);
        a1 = _mm512_fmadd_ps(qe, _mm512_loadu_ps(row + 16), a1);
        a2 = _mm512_fmadd_ps(qe, _mm512_loadu_ps(row + 32), a2);
        a3 = _mm512_fmadd_ps(qe, _mm512_loadu_ps(row + 48), a3);
      }
      _mm512_storeu_ps(s + j0, a0);
      _mm512_storeu_ps(s + j0 + 16, a1);
      _mm512_storeu_ps(s + j0 + 32, a2);
      _mm512_storeu_ps(s + j0 + 48, a3);
    }
#else
    std::fill(s, s + n, 0.f);
    for (int64_t e = 0; e < dh; ++e) {
      const float qe = qi[e] * scale;
      const float* row = kt.data() + e * n_pad;
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) s[j] += qe * row[j];
    }
#endif
    softmax(s, n);
    weighted_sum(s, v, stride, n, dh, out + i * out_stride);
  }
}

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

constexpr int64_t kDecoderPerLayer = 15;  // norm, qkv, o (x3 forms), norm, gate_up, down (x3 forms), qkv bias
constexpr int64_t kVisionPerLayer = 16;   // ln1 (w, b), ln2 (w, b), (qkv, out, fc1, fc2) x (t, bf16, bias)

}  // namespace

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
  // groups of consecutive rows of one sequence: [start, end)
  std::vector<int64_t> group_start{0};
  for (int64_t i = 1; i < N; ++i)
    if (slot_p[i] != slot_p[i - 1]) group_start.push_back(i);
  group_start.push_back(N);
  const int64_t G = static_cast<int64_t>(group_start.size()) - 1;
  std::vector<int64_t> n_keys(N);
  for (int64_t i = 0; i < N; ++i) n_keys[i] = pos_p[i] + 1;

  const int64_t Hq = n_heads, rep = Hq / Hkv, qw = Hq * Dh, kw = Hkv * Dh, row = qw + 2 * kw;
  const float scale = 1.f / std::sqrt(static_cast<float>(Dh));
  const float* cos_p = rope_cos.data_ptr<float>();
  const float* sin_p = rope_sin.data_ptr<float>();
  auto h = torch::empty_like(x);
  auto attn = torch::empty({N, qw}, x.options());
  const torch::Tensor none;
  // many-row bf16 forwards keep matmul inputs and outputs in bf16 where the next step allows
  const bool flow_b = bf16 && N > kGemvRows && weights[3].numel();

  for (int64_t l = 0; l < L; ++l) {
    const torch::Tensor* w = &weights[kDecoderPerLayer * l];
    const Linear qkv_w{w[1], w[2], w[3], w[14]}, o_w{w[4], w[5], w[6], none}, gu_w{w[8], w[9], w[10], none},
        down_w{w[11], w[12], w[13], none};
    torch::Tensor qkv;  // [N, qw + 2kw] fp32: RoPE and the cache need it
    if (flow_b) {
      qkv = torch::empty({N, row}, x.options());
      add_bf16_rows(at::linear(norm_to_bf16(x, w[0], nullptr, eps), w[3]), w[14], qkv.data_ptr<float>(), false);
    } else {
      rms_norm_rows(x.data_ptr<float>(), w[0].data_ptr<float>(), h.data_ptr<float>(), N, D, eps);
      qkv = linear(h, qkv_w, bf16);
    }
    float* qkv_p = qkv.data_ptr<float>();
    at::parallel_for(0, N, 8, [&](int64_t i0, int64_t i1) {  // RoPE on q and k, then store k and v
      for (int64_t i = i0; i < i1; ++i) {
        float* r = qkv_p + i * row;
        const float* c = cos_p + pos_p[i] * Dh;
        const float* s = sin_p + pos_p[i] * Dh;
        for (int64_t hh = 0; hh < Hq + Hkv; ++hh) rope(r + hh * Dh, c, s, Dh);
        store.write(0, l, slot_p[i], pos_p[i], r + qw);
        store.write(1, l, slot_p[i], pos_p[i], r + qw + kw);
      }
    });
    float* attn_p = attn.data_ptr<float>();
    int64_t attn_work = 0;
    for (int64_t i = 0; i < N; ++i) attn_work += 2 * n_keys[i] * qw;
    parallel_if(attn_work, 0, G * Hq, [&](int64_t t0, int64_t t1) {
      std::vector<float> kt, score, k_rows, v_rows;
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t g = t / Hq, hq = t % Hq, kvh = hq / rep, r0 = group_start[g], nr = group_start[g + 1] - r0;
        int64_t n_max = 0;
        for (int64_t i = r0; i < r0 + nr; ++i) n_max = std::max(n_max, n_keys[i]);
        const auto [kp, stride] = store.read(0, l, slot_p[r0], kvh, n_max, k_rows);
        const auto vp = store.read(1, l, slot_p[r0], kvh, n_max, v_rows).first;
        attend(qkv_p + r0 * row + hq * Dh, row, nr, kp, vp, stride, n_keys.data() + r0, n_max, Dh, scale,
               attn_p + r0 * qw + hq * Dh, qw, kt, score);
      }
    });
    linear(attn, o_w, bf16, &x);  // x += attn @ o^T
    if (flow_b) {  // gate/up, SiLU and down in bf16, the residual stream in fp32
      auto act = silu_mul_bf16(at::linear(norm_to_bf16(x, w[7], nullptr, eps), w[10]));
      add_bf16_rows(at::linear(act, w[13]), none, x.data_ptr<float>(), true);
      continue;
    }
    rms_norm_rows(x.data_ptr<float>(), w[7].data_ptr<float>(), h.data_ptr<float>(), N, D, eps);
    auto gu = linear(h, gu_w, bf16);  // [N, 2I]
    const int64_t I = gu.size(1) / 2;
    auto act = torch::empty({N, I}, x.options());
    float* gu_p = gu.data_ptr<float>();
    float* act_p = act.data_ptr<float>();
    at::parallel_for(0, N, 16, [&](int64_t i0, int64_t i1) {
      std::vector<float> scratch(I);
      for (int64_t i = i0; i < i1; ++i) silu_mul(gu_p + i * 2 * I, gu_p + i * 2 * I + I, act_p + i * I, I, scratch.data());
    });
    linear(act, down_w, bf16, &x);  // x += (silu(gate) * up) @ down^T
  }
  const torch::Tensor* f = &weights[kDecoderPerLayer * L];
  auto sel = x.index_select(0, last);
  auto hs = torch::empty_like(sel);
  rms_norm_rows(sel.data_ptr<float>(), f[0].data_ptr<float>(), hs.data_ptr<float>(), sel.size(0), D, eps);
  return linear(hs, Linear{f[1], f[2], f[3], none}, bf16);
}

// patches: [B * P, C * p * p] fp32, the image cut into P patches per image in the patch
// embedding's (channel, row, column) order. Returns the projected features [B * P, Dt].
// weights: patch (t, bf16, bias), positions [P, Dv]; per layer at 4 + kVisionPerLayer * l:
// ln1 w, ln1 b, qkv (t, bf16, bias), out (t, bf16, bias), ln2 w, ln2 b, fc1 (t, bf16, bias),
// fc2 (t, bf16, bias); then projector linear_1 (t, bf16, bias), linear_2 (t, bf16, bias).
// tanh_gelu: the tower's activation is GELU's tanh form (else exact); the projector's is exact.
torch::Tensor vision_forward(torch::Tensor patches, int64_t n_images, Tensors weights, int64_t n_layers,
                             int64_t n_heads, double eps, bool tanh_gelu, bool bf16) {
  TORCH_CHECK(patches.dim() == 2 && patches.scalar_type() == at::kFloat && patches.is_contiguous(),
              "patches must be [B * P, C * p * p] fp32 contiguous");
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
  const bool flow_b = bf16 && weights[1].numel() && N > kGemvRows;
  for (int64_t l = 0; l < n_layers && flow_b; ++l) {  // bf16 between matmuls; the residual stream stays fp32
    const torch::Tensor* w = &weights[4 + kVisionPerLayer * l];
    auto qkv = bf16_linear(norm_to_bf16(x, w[0], &w[1], eps), w[3], w[4]).view({n_images, P, 3, n_heads, Dh});
    auto heads = [&](int64_t i) { return qkv.select(2, i).transpose(1, 2); };  // [B, H, P, Dh]
    auto attn = at::scaled_dot_product_attention(heads(0), heads(1), heads(2)).transpose(1, 2).reshape({N, Dv});
    add_bf16_rows(at::linear(attn, w[6]), w[7], x.data_ptr<float>(), true);
    auto mid = bf16_linear(norm_to_bf16(x, w[8], &w[9], eps), w[11], w[12]);
    if (tanh_gelu) {
      map_bf16_rows(mid, [](float* row, float* scratch, int64_t n) { gelu_tanh_inplace(row, n, scratch); });
    } else {
      at::gelu_(mid, "none");
    }
    add_bf16_rows(at::linear(mid, w[14]), w[15], x.data_ptr<float>(), true);
  }
  for (int64_t l = 0; l < n_layers && !flow_b; ++l) {
    const torch::Tensor* w = &weights[4 + kVisionPerLayer * l];
    auto h = at::layer_norm(x, {Dv}, w[0], w[1], eps);
    auto qkv = linear(h, Linear{w[2], none, w[3], w[4]}, bf16).view({n_images, P, 3, n_heads, Dh});
    // every patch sees every patch, the same length for all images: PyTorch's fused CPU
    // attention on strided views of qkv is faster here than the kernel's own (1.6 vs 2.9 ms a
    // layer for 32 images, 2-core Xeon, 2026-12-05)
    auto heads = [&](int64_t i) { return qkv.select(2, i).transpose(1, 2); };  // [B, H, P, Dh]
    auto attn = at::scaled_dot_product_attention(heads(0), heads(1), heads(2)).transpose(1, 2).reshape({N, Dv});
    linear(attn, Linear{w[5], none, w[6], w[7]}, bf16, &x);
    h = at::layer_norm(x, {Dv}, w[8], w[9], eps);
    auto mid = linear(h, Linear{w[10], none, w[11], w[12]}, bf16);
    if (tanh_gelu) {
      const int64_t I = mid.size(1);
      float* mid_p = mid.data_ptr<float>();
      at::parallel_for(0, N, 16, [&](int64_t i0, int64_t i1) {
        std::vector<float> scratch(I);
        for (int64_t i = i0; i < i1; ++i) gelu_tanh_inplace(mid_p + i * I, I, scratch.data());
      });
    } else {
      at::gelu_(mid, "none");
    }
    linear(mid, Linear{w[13], none, w[14], w[15]}, bf16, &x);
  }
  const torch::Tensor* pj = &weights[4 + kVisionPerLayer * n_layers];
  if (flow_b) {
    auto mid = bf16_linear(to_bf16(x), pj[1], pj[2]);
    at::gelu_(mid, "none");
    auto out = torch::empty({N, pj[4].size(0)}, x.options());
    add_bf16_rows(at::linear(mid, pj[4]), pj[5], out.data_ptr<float>(), false);
    return out;
  }
  auto mid = linear(x, Linear{pj[0], none, pj[1], pj[2]}, bf16);
  at::gelu_(mid, "none");
  return linear(mid, Linear{pj[3], none, pj[4], pj[5]}, bf16);
}

bool has_f16_gemv() {
#ifdef AUTOUI_F16_GEMV
  return true;
#else
  return false;
#endif
}

#ifndef AUTOUI_CPU_STEP_NO_MODULE  // (defined by a file that includes this one to time its parts)
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("ragged_forward", &ragged_forward, "fused decoder forward over a plain, int8, fp8 or int4 KV cache (CPU)");
  m.def("vision_forward", &vision_forward, "fused vision tower + projector forward (CPU)");
  m.def("has_f16_gemv", &has_f16_gemv, "whether this build multiplies one- and two-row products by fp16 weights");
}
#endif
