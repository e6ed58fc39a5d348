// bf16 matmuls on Intel AMX tiles, with the kernel's epilogues fused in (bias, residual add,
// fp32 or bf16 output). oneDNN runs the same products through at::linear, but a decode step's
// 17 small products paid ~25 us of dispatch, primitive lookup and scratch allocation each, plus a
// separate pass to add the bf16 result into the fp32 residual stream (2-core Xeon, 2026-12-05).
//
// Weights are packed once into AMX's VNNI tile order (`vnni_pack` in cpu_fused.py):
// wv [N/16, K/32, 16, 32] bf16, where tile (nb, kb) row r holds, for output columns
// nb*16 .. nb*16+15, the weight pairs at k = kb*32 + 2r and + 1.
#pragma once

#include "simd.h"

#if defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__AVX512BF16__)
#define AUTOUI_AMX 1
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace autoui_cpu {

// What a product's epilogue applies before storing: nothing; SiLU(gate) * up over weights whose
// 16-column blocks alternate gate, up (`vnni_pack(..., gated=True)`; the output has half the
// columns); or GELU's tanh form.
enum class Epilogue { kNone, kSiluMul, kGeluTanh };

#ifdef AUTOUI_AMX
// Linux hands out AMX tile state only to processes that ask for it (once per process).
inline bool amx_ready() {
  static const bool ok = [] {
    constexpr long kReqXcompPerm = 0x1023, kXfeatureTileData = 18;  // arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA)
    return syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureTileData) == 0;
  }();
  return ok;
}

struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0, reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// Every tile 16 rows x 64 bytes: C tiles 0-3 (16 x 16 fp32), A tiles 4-5 (16 rows x 32 bf16),
// B tiles 6-7 (16 k-pairs x 16 columns x 2 bf16).
inline void amx_configure() {
  TileConfig cfg;
  for (int t = 0; t < 8; ++t) cfg.rows[t] = 16, cfg.colsb[t] = 64;
  _tile_loadconfig(&cfg);
}

// 1 / d for d >= 1: the 14-bit estimate and one Newton step (~1 ulp; a division takes ~10x longer)
inline __m512 recip_ge1(__m512 d) {
  const __m512 r = _mm512_rcp14_ps(d);
  return _mm512_fmadd_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(1.f)), r);
}

// SiLU(g) * u = g * u / (1 + exp(-g))
inline __m512 silu_mul16(__m512 g, __m512 u) {
  const __m512 e = exp_ps(_mm512_sub_ps(_mm512_setzero_ps(), g));
  return _mm512_mul_ps(_mm512_mul_ps(g, u), recip_ge1(_mm512_add_ps(e, _mm512_set1_ps(1.f))));
}

// GELU, tanh form: 0.5 x (1 + tanh(z)) = x / (1 + exp(-2z)), z = sqrt(2/pi) (x + 0.044715 x^3)
inline __m512 gelu_tanh16(__m512 x) {
  const __m512 x3 = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
  const __m512 z2 = _mm512_mul_ps(_mm512_set1_ps(-2.f * 0.7978845608028654f), _mm512_fmadd_ps(_mm512_set1_ps(0.044715f), x3, x));
  return _mm512_mul_ps(x, recip_ge1(_mm512_add_ps(exp_ps(z2), _mm512_set1_ps(1.f))));
}

// The epilogue of one 32 x 32 output block (rows m0.., columns nb*32..) from its four C tiles c.
inline void amx_epilogue(const float (*c)[16][16], int64_t m0, int64_t rows, int64_t nb, int64_t ldy,
                         const float* bias, float* y_f, uint16_t* y_b, bool accumulate, Epilogue epi) {
  const __m512 b0 = bias ? _mm512_loadu_ps(bias + nb * 32) : _mm512_setzero_ps();
  const __m512 b1 = bias ? _mm512_loadu_ps(bias + nb * 32 + 16) : _mm512_setzero_ps();
  for (int64_t r = 0; r < rows; ++r) {
    const __m512 lo = _mm512_add_ps(_mm512_load_ps(c[(r / 16) * 2][r % 16]), b0);
    const __m512 hi = _mm512_add_ps(_mm512_load_ps(c[(r / 16) * 2 + 1][r % 16]), b1);
    const int64_t at_ = (m0 + r) * ldy + nb * 32;
    if (epi == Epilogue::kSiluMul) {  // gate in lo, up in hi: 16 outputs at nb*16
      store_bf16x16(y_b + (m0 + r) * ldy + nb * 16, silu_mul16(lo, hi));
    } else if (epi == Epilogue::kGeluTanh) {
      store_bf16x16(y_b + at_, gelu_tanh16(lo));
      store_bf16x16(y_b + at_ + 16, gelu_tanh16(hi));
    } else if (y_b) {
      store_bf16x16(y_b + at_, lo);
      store_bf16x16(y_b + at_ + 16, hi);
    } else if (accumulate) {
      _mm512_storeu_ps(y_f + at_, _mm512_add_ps(lo, _mm512_loadu_ps(y_f + at_)));
      _mm512_storeu_ps(y_f + at_ + 16, _mm512_add_ps(hi, _mm512_loadu_ps(y_f + at_ + 16)));
    } else {
      _mm512_storeu_ps(y_f + at_, lo);
      _mm512_storeu_ps(y_f + at_ + 16, hi);
    }
  }
}

// y[m, n] = (accumulate ? y[m, n] : 0) + sum_k x[m, k] w[n, k] (+ bias[n]) for m < M, n < N:
// x bf16 [M, K] (row stride K), w VNNI-packed [N/16, K/32, 16, 32]; y fp32 (y_f) or bf16 (y_b,
// rounded to nearest even; no accumulate), after `epi` (bf16 output only), rows `ldy` apart (0:
// packed, N or N / 2 for kSiluMul). K % 32 == 0, N % 32 == 0.
// Each block's epilogue runs after the next block's tile products are issued, so the vector
// units work while the tiles do.
inline void amx_linear(const uint16_t* x, int64_t M, int64_t K, const uint16_t* wv, int64_t N, const float* bias,
                       float* y_f, uint16_t* y_b, bool accumulate, Epilogue epi = Epilogue::kNone, int64_t ldy = 0) {
  const int64_t KB = K / 32, mb_n = (M + 31) / 32, nb_n = N / 32;
  if (ldy == 0) ldy = epi == Epilogue::kSiluMul ? N / 2 : N;
  parallel_if(M * K * N, 0, mb_n * nb_n, [&](int64_t t0, int64_t t1) {
    amx_configure();
    alignas(64) float c[2][4][16][16];  // two blocks' C tiles: the one computing, the one finishing
    std::vector<uint16_t> pad;  // the last block's rows, zero-padded to 32 (built once)
    int64_t pad_m0 = -1;
    auto finish = [&](int64_t t, int buf) {
      const int64_t m0 = (t / nb_n) * 32;
      amx_epilogue(c[buf], m0, std::min<int64_t>(32, M - m0), t % nb_n, ldy, bias, y_f, y_b, accumulate, epi);
    };
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t nb = t % nb_n, m0 = (t / nb_n) * 32, rows = std::min<int64_t>(32, M - m0);
      const uint16_t* a = x + m0 * K;
      if (rows < 32) {
        if (pad_m0 != m0) {
          pad.assign(32 * K, 0);
          std::copy(a, a + rows * K, pad.begin());
          pad_m0 = m0;
        }
        a = pad.data();
      }
      const uint16_t* b0 = wv + (2 * nb) * KB * 512;
      const uint16_t* b1 = b0 + KB * 512;
      _tile_zero(0);
      _tile_zero(1);
      if (rows > 16) {  // two row tiles
        _tile_zero(2);
        _tile_zero(3);
        for (int64_t kb = 0; kb < KB; ++kb) {
          _tile_loadd(4, a + kb * 32, K * 2);
          _tile_loadd(5, a + 16 * K + kb * 32, K * 2);
          _tile_loadd(6, b0 + kb * 512, 64);
          _tile_loadd(7, b1 + kb * 512, 64);
          _tile_dpbf16ps(0, 4, 6);
          _tile_dpbf16ps(1, 4, 7);
          _tile_dpbf16ps(2, 5, 6);
          _tile_dpbf16ps(3, 5, 7);
        }
      } else {  // up to 16 rows (a decode step of few sequences): half the tile work
        for (int64_t kb = 0; kb < KB; ++kb) {
          _tile_loadd(4, a + kb * 32, K * 2);
          _tile_loadd(6, b0 + kb * 512, 64);
          _tile_loadd(7, b1 + kb * 512, 64);
          _tile_dpbf16ps(0, 4, 6);
          _tile_dpbf16ps(1, 4, 7);
        }
      }
      const int buf = (t - t0) & 1;
      _tile_stored(0, c[buf][0], 64);
      _tile_stored(1, c[buf][1], 64);
      if (rows > 16) {
        _tile_stored(2, c[buf][2], 64);
        _tile_stored(3, c[buf][3], 64);
      }
      if (t > t0) finish(t - 1, buf ^ 1);
    }
    if (t1 > t0) finish(t1 - 1, (t1 - 1 - t0) & 1);
    _tile_release();
  });
}
#endif

// Whether this build multiplies through AMX tiles and the OS lets this process use them.
inline bool amx_available() {
#ifdef AUTOUI_AMX
  return amx_ready();
#else
  return false;
#endif
}

}  // namespace autoui_cpu
