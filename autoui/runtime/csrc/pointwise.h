// Row-wise pieces of the fused CPU kernel: RMSNorm / LayerNorm, RoPE, and the SiLU and GELU
// gates, on fp32 rows or on bf16 rows (arithmetic and statistics always in fp32).
#pragma once

#include "simd.h"

namespace autoui_cpu {

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

// One row of RMSNorm (bias null) or LayerNorm (weight w, bias b), statistics in fp32.
inline void norm_row(const float* xr, const float* w, const float* b, int64_t d, double eps, float* out) {
  float mean = 0.f;
  if (b) {
#pragma omp simd reduction(+ : mean)
    for (int64_t j = 0; j < d; ++j) mean += xr[j];
    mean /= static_cast<float>(d);
  }
  float ss = 0.f;
#pragma omp simd reduction(+ : ss)
  for (int64_t j = 0; j < d; ++j) ss += (xr[j] - mean) * (xr[j] - mean);
  const float inv = 1.f / std::sqrt(ss / static_cast<float>(d) + static_cast<float>(eps));
  if (b) {
#pragma omp simd
    for (int64_t j = 0; j < d; ++j) out[j] = (xr[j] - mean) * inv * w[j] + b[j];
  } else {
#pragma omp simd
    for (int64_t j = 0; j < d; ++j) out[j] = xr[j] * inv * w[j];
  }
}

#if defined(__AVX512BW__)
// norm_row for d % 16 == 0 with a bf16 result (a matmul's input): vector statistics, one pass out
inline void norm_row_bf16(const float* xr, const float* w, const float* b, int64_t d, float eps, uint16_t* out) {
  __m512 acc = _mm512_setzero_ps();
  float mean = 0.f;
  if (b) {
    for (int64_t j = 0; j < d; j += 16) acc = _mm512_add_ps(acc, _mm512_loadu_ps(xr + j));
    mean = _mm512_reduce_add_ps(acc) / static_cast<float>(d);
  }
  const __m512 m = _mm512_set1_ps(mean);
  acc = _mm512_setzero_ps();
  for (int64_t j = 0; j < d; j += 16) {
    const __m512 t = _mm512_sub_ps(_mm512_loadu_ps(xr + j), m);
    acc = _mm512_fmadd_ps(t, t, acc);
  }
  const __m512 inv = _mm512_set1_ps(1.f / std::sqrt(_mm512_reduce_add_ps(acc) / static_cast<float>(d) + eps));
  for (int64_t j = 0; j < d; j += 16) {
    __m512 y = _mm512_mul_ps(_mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(xr + j), m), inv), _mm512_loadu_ps(w + j));
    if (b) y = _mm512_add_ps(y, _mm512_loadu_ps(b + j));
    store_bf16x16(out + j, y);
  }
}
#endif

// The rows of x [rows, d] normalised (RMSNorm without `bias`, LayerNorm with it), in fp32, or in
// bf16 when `to_bf16_out` (the next matmul's input).
inline torch::Tensor norm_rows(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor* bias, double eps,
                               bool to_bf16_out) {
  const int64_t rows = x.size(0), d = x.size(1);
  auto out = torch::empty({rows, d}, x.options().dtype(to_bf16_out ? at::kBFloat16 : at::kFloat));
  const float* xp = x.data_ptr<float>();
  const float* wp = w.data_ptr<float>();
  const float* bp = bias ? bias->data_ptr<float>() : nullptr;
  parallel_if(rows * d * 4, 0, rows, [&](int64_t r0, int64_t r1) {
    std::vector<float> tmp(to_bf16_out ? d : 0);
    for (int64_t r = r0; r < r1; ++r) {
      if (!to_bf16_out) {
        norm_row(xp + r * d, wp, bp, d, eps, out.data_ptr<float>() + r * d);
        continue;
      }
#if defined(__AVX512BW__)
      if (d % 16 == 0) {
        norm_row_bf16(xp + r * d, wp, bp, d, static_cast<float>(eps), bf16_bits(out) + r * d);
        continue;
      }
#endif
      norm_row(xp + r * d, wp, bp, d, eps, tmp.data());
      to_bf16_span(tmp.data(), bf16_bits(out) + r * d, d);
    }
  });
  return out;
}

// In place on bf16 rows [rows, width]: fn(fp32 row, scratch) applied between a widening and a rounding.
template <typename Fn>
inline void map_bf16_rows(torch::Tensor& t, Fn fn) {
  const int64_t rows = t.size(0), width = t.size(1);
  uint16_t* p = bf16_bits(t);
  parallel_if(rows * width * 16, 0, rows, [&](int64_t r0, int64_t r1) {
    std::vector<float> row(width), scratch(width);
    for (int64_t r = r0; r < r1; ++r) {
      from_bf16_span(p + r * width, row.data(), width);
      fn(row.data(), scratch.data(), width);
      to_bf16_span(row.data(), p + r * width, width);
    }
  });
}

// act [rows, I] = silu(gate) * up from gate_up [rows, 2I], in gate_up's dtype (fp32, or bf16
// widened to fp32 for the arithmetic)
inline torch::Tensor silu_mul_rows(const torch::Tensor& gu) {
  const int64_t rows = gu.size(0), I = gu.size(1) / 2;
  auto act = torch::empty({rows, I}, gu.options());
  if (gu.scalar_type() == at::kFloat) {
    const float* src = gu.data_ptr<float>();
    float* dst = act.data_ptr<float>();
    parallel_if(rows * I * 16, 0, rows, [&](int64_t r0, int64_t r1) {
      std::vector<float> scratch(I);
      for (int64_t r = r0; r < r1; ++r) silu_mul(src + r * 2 * I, src + r * 2 * I + I, dst + r * I, I, scratch.data());
    });
    return act;
  }
  const uint16_t* src = bf16_bits(gu);
  uint16_t* dst = bf16_bits(act);
  parallel_if(rows * I * 16, 0, rows, [&](int64_t r0, int64_t r1) {
    std::vector<float> g(2 * I), a(I), scratch(I);
    for (int64_t r = r0; r < r1; ++r) {
      from_bf16_span(src + r * 2 * I, g.data(), 2 * I);
      silu_mul(g.data(), g.data() + I, a.data(), I, scratch.data());
      to_bf16_span(a.data(), dst + r * I, I);
    }
  });
  return act;
}

// GELU in place on rows [rows, width] of fp32 or bf16: the tanh form here, the exact one by ATen
inline void gelu_rows_(torch::Tensor& t, bool tanh_form) {
  if (!tanh_form) {
    at::gelu_(t, "none");
  } else if (t.scalar_type() == at::kBFloat16) {
    map_bf16_rows(t, [](float* row, float* scratch, int64_t n) { gelu_tanh_inplace(row, n, scratch); });
  } else {
    const int64_t rows = t.size(0), width = t.size(1);
    float* p = t.data_ptr<float>();
    parallel_if(rows * width * 16, 0, rows, [&](int64_t r0, int64_t r1) {
      std::vector<float> scratch(width);
      for (int64_t r = r0; r < r1; ++r) gelu_tanh_inplace(p + r * width, width, scratch.data());
    });
  }
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

}  // namespace autoui_cpu
