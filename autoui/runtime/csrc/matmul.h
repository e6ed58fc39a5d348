// Matmuls of the fused CPU kernel: an fp16-weight GEMV for one or two rows, ATen (MKL / oneDNN)
// for more, in fp32 or bf16, with bias and residual additions folded into one pass.
#pragma once

#include "simd.h"

namespace autoui_cpu {

// Rows up to this many take the fp16-weight GEMV (half the bytes of fp32 weights, which is what
// one-row products are bound by); more rows go to ATen, which wins from 4 rows on (2-core Xeon
// with AVX-512, 2026-12-05: the 17 products of one decode token 306 vs 521 us at 1 row, 427 vs
// 595 at 2, 661 vs 616 at 4).
constexpr int64_t kGemvRows = 2;

#ifdef AUTOUI_F16_GEMV
// y[r, o] (+)= dot(x[r, :], w[o, :]) for r < n, o < out; w is fp16 [out, in] with in % 16 == 0.
inline void gemv_f16(const float* x, int64_t n, int64_t in, const uint16_t* w, int64_t out, float* y, bool accumulate) {
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

// dst[r, o] = (accumulate ? dst[r, o] : 0) + y[r, o] + bias[o], y bf16 [rows, out] (one pass).
inline void add_bf16_rows(const torch::Tensor& y, const torch::Tensor& bias, float* dst, bool accumulate) {
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
      for (; o < out; ++o) dr[o] = (accumulate ? dr[o] : 0.f) + bf16_to_float(yr[o]) + b[o];
    }
  });
}

// x @ w (+ bias) in fp32; with `acc`, the result is added into acc in place and acc is returned.
// `bf16`: many-row products run as bf16 x bf16 -> fp32 (AMX / AVX512-BF16). x is fp32, or bf16
// already (an input kept in bf16 by the step before), which takes the bf16 weights whatever `bf16` says.
inline torch::Tensor linear(const torch::Tensor& x, const Linear& w, bool bf16, torch::Tensor* acc = nullptr) {
  const bool has_bias = w.bias.numel() > 0, x_bf16 = x.scalar_type() == at::kBFloat16;
#ifdef AUTOUI_F16_GEMV
  if (!x_bf16 && w.w16.numel() && x.size(0) <= kGemvRows && x.size(1) % 16 == 0) {
    const auto* wp = reinterpret_cast<const uint16_t*>(w.w16.data_ptr<at::Half>());
    torch::Tensor y = acc ? *acc : torch::empty({x.size(0), w.w16.size(0)}, x.options());
    gemv_f16(x.data_ptr<float>(), x.size(0), x.size(1), wp, w.w16.size(0), y.data_ptr<float>(), acc != nullptr);
    if (has_bias) y.add_(w.bias);
    return y;
  }
#endif
  TORCH_CHECK(!x_bf16 || w.wb.numel(), "a bf16 input needs the layer's bf16 weights");
  if (x_bf16 || (bf16 && w.wb.numel())) {
    auto y = at::linear(x_bf16 ? x : to_bf16(x), w.wb);  // bf16 [rows, out]; [out, in] weights: oneDNN's fast layout
    torch::Tensor dst = acc ? *acc : torch::empty({x.size(0), w.wb.size(0)}, x.options().dtype(at::kFloat));
    add_bf16_rows(y, w.bias, dst.data_ptr<float>(), acc != nullptr);
    return dst;
  }
  if (acc) {
    acc->addmm_(x, w.w_t);
    return has_bias ? acc->add_(w.bias) : *acc;
  }
  return has_bias ? at::addmm(w.bias, x, w.w_t) : at::mm(x, w.w_t);
}

// y = x_b @ w_b^T (+ bias), all bf16 (oneDNN), for a result the next step reads as bf16
inline torch::Tensor bf16_linear(const torch::Tensor& x_b, const torch::Tensor& w_b, const torch::Tensor& bias) {
  return bias.numel() ? at::linear(x_b, w_b, bias.to(at::kBFloat16)) : at::linear(x_b, w_b);
}

}  // namespace autoui_cpu
