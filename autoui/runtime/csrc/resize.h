// Screenshot -> model pixels: Pillow's bilinear resize of an 8-bit RGB image, reproduced to the
// bit (the same double-precision taps, the same 22-bit fixed-point coefficients, the same two
// passes in Pillow's order with a rounding to uint8 between them), then the per-channel
// normalisation v * a + b as PyTorch computes it (a product rounded, then a sum rounded: no FMA).
// autoui.model.preprocess checks it against the installed Pillow before using it.
#pragma once

#include "simd.h"

namespace autoui_cpu {

constexpr int kResampleBits = 22;  // Pillow's PRECISION_BITS for 8-bit images
constexpr int64_t kResizeRowsPerTask = 48;  // rows of a pass per thread task (a screen is ~0.1 ms)

// Pillow's taps of a bilinear resize of `in` samples to `out`: output i reads inputs
// start[i] .. start[i] + count[i] - 1 with fixed-point weights k[i * ksize + j].
struct Taps {
  int ksize = 0;
  std::vector<int> start, count;
  std::vector<int32_t> k;
};

inline Taps bilinear_taps(int in, int out) {
  Taps t;
  const double scale = static_cast<double>(static_cast<float>(in)) / out;
  const double filterscale = std::max(scale, 1.0), support = filterscale;  // the bilinear filter's support is 1
  t.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  t.start.resize(out);
  t.count.resize(out);
  t.k.assign(static_cast<size_t>(out) * t.ksize, 0);
  std::vector<double> w(t.ksize);
  for (int i = 0; i < out; ++i) {
    const double center = (i + 0.5) * scale, ss = 1.0 / filterscale;
    const int lo = std::max(0, static_cast<int>(center - support + 0.5));
    const int n = std::min(in, static_cast<int>(center + support + 0.5)) - lo;
    double total = 0.0;
    for (int j = 0; j < n; ++j) {
      const double x = std::abs((j + lo - center + 0.5) * ss);
      w[j] = x < 1.0 ? 1.0 - x : 0.0;
      total += w[j];
    }
    for (int j = 0; j < n; ++j) {
      const double v = total != 0.0 ? w[j] / total : w[j];
      t.k[static_cast<size_t>(i) * t.ksize + j] =
          static_cast<int32_t>(v < 0 ? -0.5 + v * (1 << kResampleBits) : 0.5 + v * (1 << kResampleBits));
    }
    t.start[i] = lo;
    t.count[i] = n;
  }
  return t;
}

inline uint8_t clip8(int32_t acc) { return static_cast<uint8_t>(std::min(255, std::max(0, acc >> kResampleBits))); }

#if defined(__AVX512BW__)
// clip8 of 16 sums at once, as bytes
inline __m128i clip8x16(__m512i acc) {
  return _mm512_cvtepi32_epi8(_mm512_min_epi32(_mm512_max_epi32(_mm512_srai_epi32(acc, kResampleBits), _mm512_setzero_si512()),
                                               _mm512_set1_epi32(255)));
}
#endif

// One RGB image, uint8 [rows, width, 3]: a view of the caller's array or an owned buffer.
struct Rgb {
  const uint8_t* view;
  int rows, width;
  std::vector<uint8_t> own;
  const uint8_t* p() const { return own.empty() ? view : own.data(); }
};

// Output x of `t` as exactly t.ksize taps from `first[x]`, the window moved inside [0, in) and
// padded with zero weights (integer sums: the extra zero terms change nothing), so the
// horizontal pass runs a fixed-length loop.
inline void fixed_windows(const Taps& t, int in, std::vector<int>& first, std::vector<int32_t>& k) {
  const int n = static_cast<int>(t.start.size()), K = t.ksize;
  first.resize(n);
  k.assign(static_cast<size_t>(n) * K, 0);
  for (int x = 0; x < n; ++x) {
    const int f = std::max(0, std::min(t.start[x], in - K));
    first[x] = f;
    for (int j = 0; j < t.count[x]; ++j) k[static_cast<size_t>(x) * K + t.start[x] - f + j] = t.k[static_cast<size_t>(x) * K + j];
  }
}

// One row of the horizontal pass: output x sums taps k[x * K + j] times the pixels from first[x],
// for j < count[x] (or K when count is null: fixed windows). The path without AVX-512.
inline void horizontal_row(const uint8_t* row, const int* first, const int32_t* k, int K, const int* count, int out_w,
                           uint8_t* dst) {
  for (int x = 0; x < out_w; ++x, k += K) {
    const uint8_t* px = row + static_cast<size_t>(first[x]) * 3;
    int32_t a0 = 1 << (kResampleBits - 1), a1 = a0, a2 = a0;
    for (int j = 0; j < (count ? count[x] : K); ++j)
      a0 += px[3 * j] * k[j], a1 += px[3 * j + 1] * k[j], a2 += px[3 * j + 2] * k[j];
    dst[3 * x] = clip8(a0), dst[3 * x + 1] = clip8(a1), dst[3 * x + 2] = clip8(a2);
  }
}

#if defined(__AVX512BW__)
// The fixed-window horizontal pass 16 output bytes (channel values) at a time. Where a block's
// source bytes fit in 64 (upscales, mild shrinks), each tap's bytes are picked out of one load
// with a byte permute (AVX512-VBMI); else they are gathered. Sums and rounding as Pillow's.
inline void horizontal_rows_vec(const Rgb& in, int first, int n, const std::vector<int>& starts,
                                const std::vector<int32_t>& k, int K, Rgb& out) {
  const int width = out.width * 3, blocks = (width + 15) / 16;  // output bytes per row
  std::vector<int32_t> idx(static_cast<size_t>(K) * blocks * 16, 0), wts(idx.size(), 0);
  std::vector<int> base(blocks);
  std::vector<uint8_t> local(idx.size(), 0);  // idx - base, where the block fits in 64 bytes
  std::vector<bool> fits(blocks);
  for (int b = 0; b < blocks; ++b) {
    int lo = 1 << 30, hi = 0;
    for (int j = 0; j < K; ++j)
      for (int e = b * 16; e < std::min(width, b * 16 + 16); ++e) {
        const size_t at_ = (static_cast<size_t>(b) * K + j) * 16 + e - b * 16;
        idx[at_] = (starts[e / 3] + j) * 3 + e % 3;
        wts[at_] = k[static_cast<size_t>(e / 3) * K + j];
        lo = std::min(lo, idx[at_]), hi = std::max(hi, idx[at_]);
      }
    base[b] = lo;
    fits[b] = hi - lo < 64;
    for (int i = 0; i < K * 16 && fits[b]; ++i)
      local[static_cast<size_t>(b) * K * 16 + i] = static_cast<uint8_t>(std::max(0, idx[static_cast<size_t>(b) * K * 16 + i] - lo));
  }
  const __m512i half = _mm512_set1_epi32(1 << (kResampleBits - 1)), bytes = _mm512_set1_epi32(0xFF);
  at::parallel_for(0, n, kResizeRowsPerTask, [&, width, blocks, K](int64_t y0, int64_t y1) {  // copies: no aliasing
    std::vector<uint8_t> row(static_cast<size_t>(in.width) * 3 + 128, 0);  // room for any 64-byte load
    for (int64_t y = y0; y < y1; ++y) {
      std::memcpy(row.data(), in.p() + static_cast<size_t>(first + y) * in.width * 3, static_cast<size_t>(in.width) * 3);
      uint8_t* dst = out.own.data() + static_cast<size_t>(y) * width;
      for (int b = 0; b < blocks; ++b) {
        const int e = b * 16;
        const __mmask16 m = static_cast<__mmask16>(width - e >= 16 ? 0xFFFF : (1u << (width - e)) - 1);
        __m512i acc = half;
#if defined(__AVX512VBMI__)
        if (fits[b]) {
          const __m512i window = _mm512_loadu_si512(row.data() + base[b]);
          for (int j = 0; j < K; ++j) {
            const size_t at_ = (static_cast<size_t>(b) * K + j) * 16;
            const __m512i pick = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(&local[at_])));
            const __m512i v = _mm512_cvtepu8_epi32(_mm512_castsi512_si128(_mm512_permutexvar_epi8(pick, window)));
            acc = _mm512_add_epi32(acc, _mm512_mullo_epi32(v, _mm512_loadu_si512(&wts[at_])));
          }
        } else
#endif
        {
          for (int j = 0; j < K; ++j) {
            const size_t at_ = (static_cast<size_t>(b) * K + j) * 16;
            const __m512i v = _mm512_and_si512(
                _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, _mm512_loadu_si512(&idx[at_]), row.data(), 1), bytes);
            acc = _mm512_add_epi32(acc, _mm512_mullo_epi32(v, _mm512_loadu_si512(&wts[at_])));
          }
        }
        _mm_mask_storeu_epi8(dst + e, m, clip8x16(acc));
      }
    }
  });
}
#endif

// Pillow's horizontal pass: rows `first` .. `first + n - 1` of `in` to `out_w` columns.
inline Rgb horizontal_pass(const Rgb& in, int first, int n, int out_w) {
  const Taps t = bilinear_taps(in.width, out_w);
  Rgb out{nullptr, n, out_w, std::vector<uint8_t>(static_cast<size_t>(n) * out_w * 3)};
  if (t.ksize > in.width) {  // a window wider than the row: Pillow's variable-length windows
    for (int y = 0; y < n; ++y)
      horizontal_row(in.p() + static_cast<size_t>(first + y) * in.width * 3, t.start.data(), t.k.data(), t.ksize,
                     t.count.data(), out_w, out.own.data() + static_cast<size_t>(y) * out_w * 3);
    return out;
  }
  std::vector<int> starts;
  std::vector<int32_t> k;
  fixed_windows(t, in.width, starts, k);
#if defined(__AVX512BW__)
  horizontal_rows_vec(in, first, n, starts, k, t.ksize, out);
  return out;
#endif
  for (int y = 0; y < n; ++y)
    horizontal_row(in.p() + static_cast<size_t>(first + y) * in.width * 3, starts.data(), k.data(), t.ksize, nullptr,
                   out_w, out.own.data() + static_cast<size_t>(y) * out_w * 3);
  return out;
}

// Pillow's vertical pass with taps `t` (whose source rows start at `first` of the full image,
// `in` holding rows from `first` on) to t.start.size() rows.
inline Rgb vertical_pass(const Rgb& in, const Taps& t, int first) {
  const int out_h = static_cast<int>(t.start.size()), width = in.width * 3;
  Rgb out{nullptr, out_h, in.width, std::vector<uint8_t>(static_cast<size_t>(out_h) * width)};
  at::parallel_for(0, out_h, kResizeRowsPerTask, [&](int64_t y0, int64_t y1) {
    const int w = width;  // locals: a byte store may alias anything captured by reference
    std::vector<int32_t> acc(w);
    for (int64_t y = y0; y < y1; ++y) {
      std::fill(acc.begin(), acc.end(), 1 << (kResampleBits - 1));
      for (int j = 0; j < t.count[y]; ++j) {
        const uint8_t* row = in.p() + static_cast<size_t>(t.start[y] - first + j) * w;
        const int32_t kj = t.k[static_cast<size_t>(y) * t.ksize + j];
        int32_t* a = acc.data();
#pragma omp simd
        for (int e = 0; e < w; ++e) a[e] += row[e] * kj;
      }
      uint8_t* dst = out.own.data() + static_cast<size_t>(y) * w;
      const int32_t* a = acc.data();
      int e = 0;
#if defined(__AVX512BW__)
      for (; e + 16 <= w; e += 16) _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + e), clip8x16(_mm512_loadu_si512(a + e)));
#endif
      for (; e < w; ++e) dst[e] = clip8(a[e]);
    }
  });
  return out;
}

// screen: uint8 [H, W, 3]; affine: fp32 [2, 3], each channel's value = byte * affine[0][c] +
// affine[1][c]. Returns [3, S, S] fp32: the screen resized to content_h x content_w at the
// top-left, zeros (the padding) elsewhere. vertical_first: run the vertical pass first (Pillow >= 11
// does when the height shrinks by more than twice as many pixels as the width; the caller decides).
inline torch::Tensor screen_pixels(const torch::Tensor& screen, int64_t content_h, int64_t content_w, int64_t size,
                                   const torch::Tensor& affine, bool vertical_first) {
  TORCH_CHECK(screen.dim() == 3 && screen.size(2) == 3 && screen.scalar_type() == at::kByte && screen.is_contiguous(),
              "screen must be a contiguous uint8 [H, W, 3] array");
  TORCH_CHECK(affine.sizes() == at::IntArrayRef({2, 3}) && affine.scalar_type() == at::kFloat && affine.is_contiguous(),
              "affine must be fp32 [2, 3] (scale, shift per channel)");
  TORCH_CHECK(content_h >= 1 && content_w >= 1 && content_h <= size && content_w <= size, "content must fit the square");
  const int H = static_cast<int>(screen.size(0)), W = static_cast<int>(screen.size(1));
  const int ch = static_cast<int>(content_h), cw = static_cast<int>(content_w);
  Rgb img{screen.data_ptr<uint8_t>(), H, W, {}};
  const bool horizontal = W != cw, vertical = H != ch;  // Pillow skips a pass whose side keeps its size
  if (vertical_first) {
    if (vertical) img = vertical_pass(img, bilinear_taps(H, ch), 0);
    if (horizontal) img = horizontal_pass(img, 0, img.rows, cw);
  } else if (vertical) {  // the horizontal pass covers only the rows the vertical one reads
    const Taps tv = bilinear_taps(H, ch);
    const int first = tv.start[0], last = tv.start[ch - 1] + tv.count[ch - 1];
    if (horizontal) {
      img = horizontal_pass(img, first, last - first, cw);
      img = vertical_pass(img, tv, first);
    } else {
      img = vertical_pass(img, tv, 0);
    }
  } else if (horizontal) {
    img = horizontal_pass(img, 0, H, cw);
  }
  auto out = torch::empty({3, size, size}, affine.options());
  float* o = out.data_ptr<float>();
  const float* ab = affine.data_ptr<float>();
  float tables[3][256];  // byte -> value; volatile keeps the product's rounding apart from the sum's
  for (int c = 0; c < 3; ++c)
    for (int v = 0; v < 256; ++v) {
      volatile float scaled = static_cast<float>(v) * ab[c];
      tables[c][v] = scaled + ab[3 + c];
    }
  at::parallel_for(0, 3 * size, kResizeRowsPerTask, [&, size, ch, cw](int64_t r0, int64_t r1) {  // copies: no aliasing
    for (int64_t r = r0; r < r1; ++r) {
      const int c = static_cast<int>(r / size), y = static_cast<int>(r % size);
      const float* table = tables[c];
      float* dst = o + (static_cast<int64_t>(c) * size + y) * size;
      if (y >= ch) {
        std::fill(dst, dst + size, 0.f);
        continue;
      }
      const uint8_t* row = img.p() + static_cast<size_t>(y) * cw * 3;
      int x = 0;
#if defined(__AVX512VBMI__)
      // 16 pixels' channel-c bytes picked out of their 48 with one byte permute, then scaled and
      // shifted with explicitly rounded instructions (never fused into an FMA)
      alignas(64) uint8_t pick[64] = {};
      for (int i = 0; i < 16; ++i) pick[i] = static_cast<uint8_t>(3 * i + c);
      const __m512i sel = _mm512_load_si512(pick);
      const __m512 scale = _mm512_set1_ps(ab[c]), shift = _mm512_set1_ps(ab[3 + c]);
      constexpr int kNearest = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
      for (; x + 16 <= cw; x += 16) {
        const __m512i px = _mm512_maskz_loadu_epi8(0xFFFFFFFFFFFFull, row + 3 * x);  // 48 bytes
        const __m512 v = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm512_castsi512_si128(_mm512_permutexvar_epi8(sel, px))));
        _mm512_storeu_ps(dst + x, _mm512_add_round_ps(_mm512_mul_round_ps(v, scale, kNearest), shift, kNearest));
      }
#endif
      for (; x < cw; ++x) dst[x] = table[row[3 * x + c]];
      std::fill(dst + cw, dst + size, 0.f);
    }
  });
  return out;
}

}  // namespace autoui_cpu
