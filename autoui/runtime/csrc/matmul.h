// Matmuls of the fused CPU kernel: which form of a layer's weights a product takes (AMX tiles for
// packed bf16 weights, oneDNN for [out, in] bf16 ones, an fp16-weight GEMV for one or two fp32
// rows, MKL fp32 otherwise), with bias, residual additions and the MLP gates folded in.
#pragma once

#include "amx.h"
#include "pointwise.h"
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
// (when the weights are exactly fp16 numbers), bf16 (when the CPU multiplies bf16 in hardware:
// [out, in] for oneDNN, or packed for AMX tiles as [out/16, in/32, 16, 32], see amx.h), and a
// bias (or empty tensors).
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
  parallel_if(rows * out, 0, rows, [&](int64_t r0, int64_t r1) {
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

// Whether linear(x, w, bf16) multiplies in bf16: x is bf16 already; or `bf16` is asked for and the
// layer has bf16 weights, packed for AMX tiles (any number of rows: each row's arithmetic is then
// the same whatever the batch) or not, for a product of more rows than the fp16 GEMV takes.
inline bool takes_bf16(const torch::Tensor& x, const Linear& w, bool bf16) {
  if (x.scalar_type() == at::kBFloat16) return true;
  if (!bf16 || !w.wb.numel()) return false;
#ifdef AUTOUI_F16_GEMV
  if (w.wb.dim() != 4 && w.w16.numel() && x.size(0) <= kGemvRows && x.size(1) % 16 == 0) return false;
#endif
  return true;
}

// columns of a layer's output (its bf16 weights may be AMX-packed)
inline int64_t out_features(const torch::Tensor& wb) { return wb.dim() == 4 ? wb.size(0) * 16 : wb.size(0); }

#ifdef AUTOUI_AMX
// x (bf16 [rows, in]) times AMX-packed bf16 weights: fp32 into dst (added to it with `accumulate`)
// or bf16 into dst_b after `epi`; bias added when non-empty.
inline void amx_product(const torch::Tensor& x_b, const torch::Tensor& wv, const torch::Tensor& bias, float* dst,
                        uint16_t* dst_b, bool accumulate, Epilogue epi = Epilogue::kNone) {
  amx_linear(bf16_bits(x_b), x_b.size(0), x_b.size(1), bf16_bits(wv), wv.size(0) * 16,
             bias.numel() ? bias.data_ptr<float>() : nullptr, dst, dst_b, accumulate, epi);
}
#endif

// x @ w (+ bias) in fp32; with `acc`, the result is added into acc in place and acc is returned.
// `bf16`: many-row products run as bf16 x bf16 -> fp32 (AMX / AVX512-BF16). x is fp32, or bf16
// already (an input kept in bf16 by the step before), which takes the bf16 weights whatever `bf16` says.
inline torch::Tensor linear(const torch::Tensor& x, const Linear& w, bool bf16, torch::Tensor* acc = nullptr) {
  const bool has_bias = w.bias.numel() > 0, x_bf16 = x.scalar_type() == at::kBFloat16;
  TORCH_CHECK(!x_bf16 || w.wb.numel(), "a bf16 input needs the layer's bf16 weights");
  if (takes_bf16(x, w, bf16)) {
    const torch::Tensor xb = x_bf16 ? x.contiguous() : to_bf16(x);
    torch::Tensor dst = acc ? *acc : torch::empty({x.size(0), out_features(w.wb)}, x.options().dtype(at::kFloat));
#ifdef AUTOUI_AMX
    if (w.wb.dim() == 4) {
      amx_product(xb, w.wb, w.bias, dst.data_ptr<float>(), nullptr, acc != nullptr);
      return dst;
    }
#endif
    auto y = at::linear(xb, w.wb);  // bf16 [rows, out]; [out, in] weights: oneDNN's fast layout
    add_bf16_rows(y, w.bias, dst.data_ptr<float>(), acc != nullptr);
    return dst;
  }
#ifdef AUTOUI_F16_GEMV
  if (w.w16.numel() && x.size(0) <= kGemvRows && x.size(1) % 16 == 0) {
    const auto* wp = reinterpret_cast<const uint16_t*>(w.w16.data_ptr<at::Half>());
    torch::Tensor y = acc ? *acc : torch::empty({x.size(0), w.w16.size(0)}, x.options());
    gemv_f16(x.data_ptr<float>(), x.size(0), x.size(1), wp, w.w16.size(0), y.data_ptr<float>(), acc != nullptr);
    if (has_bias) y.add_(w.bias);
    return y;
  }
#endif
  if (acc) {
    acc->addmm_(x, w.w_t);
    return has_bias ? acc->add_(w.bias) : *acc;
  }
  return has_bias ? at::addmm(w.bias, x, w.w_t) : at::mm(x, w.w_t);
}

// y = x_b @ w_b^T (+ bias), all bf16, for a result the next step reads as bf16 (AMX tiles or oneDNN)
inline torch::Tensor bf16_linear(const torch::Tensor& x_b, const torch::Tensor& w_b, const torch::Tensor& bias) {
#ifdef AUTOUI_AMX
  if (w_b.dim() == 4) {
    auto y = torch::empty({x_b.size(0), w_b.size(0) * 16}, x_b.options());
    amx_product(x_b.contiguous(), w_b, bias, nullptr, bf16_bits(y), false);
    return y;
  }
#endif
  return bias.numel() ? at::linear(x_b, w_b, bias.to(at::kBFloat16)) : at::linear(x_b, w_b);
}

// bf16 [rows, I] = SiLU(x @ gate^T) * (x @ up^T) for x bf16 [rows, in] and gate_up bf16 weights:
// fused into the AMX product when they are packed gated (gate, up blocks alternating), else a
// bf16 product [rows, 2I] and silu_mul_rows.
inline torch::Tensor gated_bf16(const torch::Tensor& x_b, const torch::Tensor& w_b) {
#ifdef AUTOUI_AMX
  if (w_b.dim() == 4) {
    auto y = torch::empty({x_b.size(0), w_b.size(0) * 8}, x_b.options());
    amx_product(x_b.contiguous(), w_b, torch::Tensor(), nullptr, bf16_bits(y), false, Epilogue::kSiluMul);
    return y;
  }
#endif
  return silu_mul_rows(at::linear(x_b, w_b));
}

// bf16 [rows, out] = GELU (tanh form) of x @ w^T + bias, for x bf16: fused into the AMX product
// when the weights are packed, else a bf16 product and a pass over its rows.
inline torch::Tensor gelu_tanh_bf16(const torch::Tensor& x_b, const torch::Tensor& w_b, const torch::Tensor& bias) {
#ifdef AUTOUI_AMX
  if (w_b.dim() == 4) {
    auto y = torch::empty({x_b.size(0), w_b.size(0) * 16}, x_b.options());
    amx_product(x_b.contiguous(), w_b, bias, nullptr, bf16_bits(y), false, Epilogue::kGeluTanh);
    return y;
  }
#endif
  auto y = bf16_linear(x_b, w_b, bias);
  gelu_rows_(y, true);
  return y;
}

}  // namespace autoui_cpu
