// Softmax attention of the fused CPU kernel: one query against the cache in place (decode),
// or four queries at a time against a transposed copy of the keys (prefill, forced runs).
#pragma once

#include "simd.h"

namespace autoui_cpu {

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
inline void attend_one(const float* q, const float* k, const float* v, int64_t stride, int64_t n, int64_t dh, float scale,
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
inline void attend4(const float* q, int64_t q_stride, int64_t nq, const float* v, int64_t stride, const int64_t* n_keys,
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
// Keys are transposed once into `kt` [dh, n_pad] (zero-padded to whole blocks), so scores are
// computed across keys: by `attend4` for head sizes 32 and 64 with AVX-512, else one query at a
// time with vectorised loops. Query i and its output live at q + i * q_stride and out + i *
// out_stride.
inline void attend(const float* q, int64_t q_stride, int64_t nq, const float* k, const float* v, int64_t stride,
            const int64_t* n_keys, int64_t n_max, int64_t dh, float scale, float* out, int64_t out_stride,
            std::vector<float>& kt, std::vector<float>& score) {
  if (nq == 1) {  // a decode step: dot products straight from the cache, no transpose
    attend_one(q, k, v, stride, n_keys[0], dh, scale, out, score);
    return;
  }
  constexpr int64_t kKeyBlock = 64;  // keys attend4 scores together (four vectors of 16)
  const int64_t n_pad = (n_max + kKeyBlock - 1) / kKeyBlock * kKeyBlock;
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
    std::fill(s, s + n, 0.f);
    for (int64_t e = 0; e < dh; ++e) {
      const float qe = qi[e] * scale;
      const float* row = kt.data() + e * n_pad;
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) s[j] += qe * row[j];
    }
    softmax(s, n);
    weighted_sum(s, v, stride, n, dh, out + i * out_stride);
  }
}

}  // namespace autoui_cpu
