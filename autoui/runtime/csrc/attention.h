// Softmax attention of the fused CPU kernel: one query against the cache in place (decode),
// four queries at a time against a transposed copy of the keys (forced runs, prefills without
// AMX), or, for prefills on AMX, the two products of attention as bf16 tile matmuls.
#pragma once

#include <limits>

#include "amx.h"
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
// `attend_one` for head sizes 16 * C: the query and the output row live in registers, and the
// loops carry no dependency from one key to the next (a decode step's attention was bound by
// the FMA latency of a one-accumulator dot product and by an accumulator array kept in memory).
template <int C>
inline void attend_one_c(const float* q, const float* k, const float* v, int64_t stride, int64_t n, float scale,
                         float* out, std::vector<float>& score) {
  score.resize(n);
  float* s = score.data();
  __m512 qv[C];
  for (int c = 0; c < C; ++c) qv[c] = _mm512_mul_ps(_mm512_loadu_ps(q + 16 * c), _mm512_set1_ps(scale));
  for (int64_t j = 0; j < n; ++j) {
    const float* kj = k + j * stride;
    __m512 acc = _mm512_mul_ps(qv[0], _mm512_loadu_ps(kj));
    for (int c = 1; c < C; ++c) acc = _mm512_fmadd_ps(qv[c], _mm512_loadu_ps(kj + 16 * c), acc);
    s[j] = _mm512_reduce_add_ps(acc);
  }
  softmax(s, n);
  __m512 o[2][C];  // two partial sums: even and odd keys
  for (auto& a : o)
    for (auto& b : a) b = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + 2 <= n; j += 2)
    for (int r = 0; r < 2; ++r) {
      const __m512 p = _mm512_set1_ps(s[j + r]);
      const float* vj = v + (j + r) * stride;
      for (int c = 0; c < C; ++c) o[r][c] = _mm512_fmadd_ps(p, _mm512_loadu_ps(vj + 16 * c), o[r][c]);
    }
  if (j < n) {
    const __m512 p = _mm512_set1_ps(s[j]);
    for (int c = 0; c < C; ++c) o[0][c] = _mm512_fmadd_ps(p, _mm512_loadu_ps(v + j * stride + 16 * c), o[0][c]);
  }
  for (int c = 0; c < C; ++c) _mm512_storeu_ps(out + 16 * c, _mm512_add_ps(o[0][c], o[1][c]));
}
#endif

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
#if defined(__AVX512F__)
    if (dh == 32 || dh == 64) {
      (dh == 32 ? attend_one_c<2> : attend_one_c<4>)(q, k, v, stride, n_keys[0], scale, out, score);
      return;
    }
#endif
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

#ifdef AUTOUI_AMX
// Queries at least this many to one sequence take the AMX path (prefills); fewer (decode steps,
// grammar-forced runs) stay in fp32 above.
constexpr int64_t kAmxAttnRows = 16;

// One sequence's keys and values (n of them, head size dh, rows `stride` apart) as bf16 AMX
// operands: kp packs K as the weights of scores = Q K^T (amx.h's layout, keys as output columns),
// vp packs V as the weights of out = P V (head dims as output columns, keys along the reduction);
// keys are padded with zeros to keys_pad, a multiple of 32.
struct AmxKV {
  std::vector<uint16_t> kp, vp, row_a, row_b;
  int64_t keys_pad = 0;

  void pack(const float* k, const float* v, int64_t stride, int64_t n, int64_t dh) {
    keys_pad = (n + 31) / 32 * 32;
    const int64_t kb_k = dh / 32, kb_v = keys_pad / 32;
    kp.assign(keys_pad * dh, 0);
    vp.assign(keys_pad * dh, 0);
    row_a.resize(dh);
    row_b.resize(dh);
    auto* kp32 = reinterpret_cast<uint32_t*>(kp.data());  // a (d, d + 1) pair of bf16 as one word
    for (int64_t j = 0; j < n; ++j) {  // key j: output column j % 16 of column block j / 16
      for (int64_t e = 0; e < dh; e += 16) store_bf16x16(row_a.data() + e, _mm512_loadu_ps(k + j * stride + e));
      const auto* pairs = reinterpret_cast<const uint32_t*>(row_a.data());
      for (int64_t kb = 0; kb < kb_k; ++kb)
        for (int64_t r = 0; r < 16; ++r) kp32[(((j / 16) * kb_k + kb) * 16 + r) * 16 + j % 16] = pairs[kb * 16 + r];
    }
    for (int64_t j = 0; j < n; j += 2) {  // keys j, j + 1: reduction pair r = (j % 32) / 2 of block j / 32
      for (int64_t e = 0; e < dh; e += 16) {
        store_bf16x16(row_a.data() + e, _mm512_loadu_ps(v + j * stride + e));
        store_bf16x16(row_b.data() + e, j + 1 < n ? _mm512_loadu_ps(v + (j + 1) * stride + e) : _mm512_setzero_ps());
      }
      for (int64_t nb = 0; nb < dh / 16; ++nb) {
        uint16_t* dst = vp.data() + ((nb * kb_v + j / 32) * 16 + (j % 32) / 2) * 32;
        for (int64_t e = 0; e < 16; ++e) dst[2 * e] = row_a[nb * 16 + e], dst[2 * e + 1] = row_b[nb * 16 + e];
      }
    }
  }
};

// p[0..n_pad) = softmax(s[0..n)) in bf16, zeros past n (s is overwritten with exp values)
inline void softmax_bf16(float* s, int64_t n, int64_t n_pad, uint16_t* p) {
  auto mask = [](int64_t left) { return static_cast<__mmask16>(left >= 16 ? 0xFFFF : (1u << left) - 1); };
  __m512 mx = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t j = 0; j < n; j += 16) mx = _mm512_mask_max_ps(mx, mask(n - j), mx, _mm512_maskz_loadu_ps(mask(n - j), s + j));
  const __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
  __m512 sum = _mm512_setzero_ps();
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 k = mask(n - j);
    const __m512 e = exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, s + j), m));
    sum = _mm512_mask_add_ps(sum, k, sum, e);
    _mm512_mask_storeu_ps(s + j, k, e);
  }
  const __m512 inv = _mm512_set1_ps(1.f / _mm512_reduce_add_ps(sum));
  for (int64_t j = 0; j < n_pad; j += 16) {
    const __m512 v = j < n ? _mm512_maskz_mul_ps(mask(n - j), _mm512_maskz_loadu_ps(mask(n - j), s + j), inv)
                           : _mm512_setzero_ps();
    store_bf16x16(p + j, v);
  }
}

// Softmax attention of nq queries (query i at q + i * q_stride, over keys 0..n_keys[i]-1) against
// packed keys and values, dh % 32 == 0: scores and outputs are AMX products of bf16 operands
// with fp32 accumulation; the softmax is fp32. Output i goes to out + i * out_stride.
inline void attend_amx(const float* q, int64_t q_stride, int64_t nq, const AmxKV& kv, const int64_t* n_keys,
                       int64_t dh, float scale, float* out, int64_t out_stride, std::vector<float>& s_buf,
                       std::vector<uint16_t>& b_buf) {
  const int64_t kp = kv.keys_pad;
  b_buf.resize(std::max(nq * dh, nq * kp));
  s_buf.resize(nq * kp);
  const __m512 sc = _mm512_set1_ps(scale);
  for (int64_t i = 0; i < nq; ++i)  // queries, scaled, in bf16
    for (int64_t e = 0; e < dh; e += 16)
      store_bf16x16(b_buf.data() + i * dh + e, _mm512_mul_ps(_mm512_loadu_ps(q + i * q_stride + e), sc));
  amx_linear(b_buf.data(), nq, dh, kv.kp.data(), kp, nullptr, s_buf.data(), nullptr, false);  // scores [nq, kp]
  for (int64_t i = 0; i < nq; ++i)  // probabilities in bf16, zero past each query's own keys
    softmax_bf16(s_buf.data() + i * kp, n_keys[i], kp, b_buf.data() + i * kp);
  amx_linear(b_buf.data(), nq, kp, kv.vp.data(), dh, nullptr, out, nullptr, false, Epilogue::kNone, out_stride);
}
#endif

}  // namespace autoui_cpu
