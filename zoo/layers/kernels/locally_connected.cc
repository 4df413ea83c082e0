// Fused CPU kernels of the locally connected layers: forward, kernel gradient, input gradient.
//
// Layout (what zoo.layers.fused passes): the padded input batch-innermost, x (H, W, C, B);
// the legacy kernel w (P, K, F), K = KH * KW * C in patch order (kh, kw, c); outputs and
// upstream gradients (P, F, B); P = OH * OW positions row-major. 1D layers are H = KH = 1.
//
// Patch element k of position p is the input cell base(p) + rel[k] (a row of B floats),
// base(p) = (oy * SH * W + ox * SW) * C, rel[k] = (i * DH * W + j * DW) * C + c: the same
// offset table for every position, so no patch tensor is ever built. Each pass is one small
// matrix product per position whose columns are contiguous rows of B images or F filters:
// register tiles of up to 6 broadcast rows by 16 columns (GCC vector extensions: AVX2 + FMA
// where the machine has them, -march=native). Threads split the positions (forward, kernel
// gradient) or the images (input gradient: positions overlap there). Each output element
// is summed in a fixed order, so results do not depend on the number of threads.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include <omp.h>

namespace {

typedef float v8 __attribute__((vector_size(32)));
constexpr int kRows = 6;  // tile rows: 6 x 2 accumulators + 3 operands fit 16 registers

inline v8 load(const float* p) {
  v8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store(float* p, v8 v) { std::memcpy(p, &v, sizeof v); }
inline v8 splat(float s) { return v8{s, s, s, s, s, s, s, s}; }

struct Geometry {
  int64_t B, H, W, C, OH, OW, KH, KW, SH, SW, DH, DW, F;
  int64_t P() const { return OH * OW; }
  int64_t K() const { return KH * KW * C; }
  int64_t image() const { return H * W * C; }
  int64_t base(int64_t p) const { return ((p / OW) * SH * W + (p % OW) * SW) * C; }
  // Offsets of a position's patch elements from its first cell, in floats of a (H, W, C, B)
  // input: `scale` = B.
  std::vector<int64_t> rel(int64_t scale) const {
    std::vector<int64_t> r(K());
    for (int64_t i = 0; i < KH; ++i)
      for (int64_t j = 0; j < KW; ++j)
        for (int64_t c = 0; c < C; ++c) r[(i * KW + j) * C + c] = ((i * DH * W + j * DW) * C + c) * scale;
    return r;
  }
};

Geometry unpack(const int64_t* g) {
  return Geometry{g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9], g[10], g[11], g[12]};
}

// out[r][c] (+)= sum_d a[r][arel[d]] * m[mrel[d] + c] for columns c in [c0, c1): R rows
// broadcast, columns in NV vectors of 8. Every pass is this product with other operands.
template <int R, int NV, bool ADD>
void tile(const float* const* a, const int64_t* arel, const float* m, const int64_t* mrel,
          int64_t depth, float* const* out) {
  v8 acc[R][NV] = {};
  for (int64_t d = 0; d < depth; ++d) {
    v8 mv[NV];
    const float* row = m + mrel[d];
    for (int v = 0; v < NV; ++v) mv[v] = load(row + 8 * v);
    for (int r = 0; r < R; ++r) {
      const v8 s = splat(a[r][arel[d]]);
      for (int v = 0; v < NV; ++v) acc[r][v] += s * mv[v];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v)
      store(out[r] + 8 * v, ADD ? load(out[r] + 8 * v) + acc[r][v] : acc[r][v]);
}

template <int NV, bool ADD>
void tile_rows(int rows, const float* const* a, const int64_t* arel, const float* m,
               const int64_t* mrel, int64_t depth, float* const* out) {
  switch (rows) {
    case 6: return tile<6, NV, ADD>(a, arel, m, mrel, depth, out);
    case 5: return tile<5, NV, ADD>(a, arel, m, mrel, depth, out);
    case 4: return tile<4, NV, ADD>(a, arel, m, mrel, depth, out);
    case 3: return tile<3, NV, ADD>(a, arel, m, mrel, depth, out);
    case 2: return tile<2, NV, ADD>(a, arel, m, mrel, depth, out);
    default: return tile<1, NV, ADD>(a, arel, m, mrel, depth, out);
  }
}

// The product for `rows` rows over columns [c0, c1): 16-wide tiles, 8-wide, then scalars.
template <bool ADD>
void product(int rows, const float* const* a, const int64_t* arel, const float* m,
             const int64_t* mrel, int64_t depth, int64_t c0, int64_t c1, float* const* out) {
  int64_t c = c0;
  float* shifted[kRows];
  for (; c + 16 <= c1; c += 16) {
    for (int r = 0; r < rows; ++r) shifted[r] = out[r] + c;
    tile_rows<2, ADD>(rows, a, arel, m + c, mrel, depth, shifted);
  }
  for (; c + 8 <= c1; c += 8) {
    for (int r = 0; r < rows; ++r) shifted[r] = out[r] + c;
    tile_rows<1, ADD>(rows, a, arel, m + c, mrel, depth, shifted);
  }
  for (; c < c1; ++c)
    for (int r = 0; r < rows; ++r) {
      float s = 0.0f;
      for (int64_t d = 0; d < depth; ++d) s += a[r][arel[d]] * m[mrel[d] + c];
      out[r][c] = ADD ? out[r][c] + s : s;
    }
}

std::vector<int64_t> strided(int64_t n, int64_t stride) {
  std::vector<int64_t> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = i * stride;
  return v;
}

}  // namespace

extern "C" {

// y[p, f, b] = sum_k w[p, k, f] * x[cell(p, k), b]   (rows: filters; columns: images)
void zoo_lc_forward(const int64_t* geometry, const float* x, const float* w, float* y) {
  const Geometry g = unpack(geometry);
  const int64_t P = g.P(), K = g.K(), F = g.F, B = g.B;
  const std::vector<int64_t> kernel_rows = strided(K, F), cells = g.rel(B);
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < P; ++p) {
    const float* a[kRows];
    float* out[kRows];
    for (int64_t f0 = 0; f0 < F; f0 += kRows) {
      const int rows = static_cast<int>(std::min<int64_t>(kRows, F - f0));
      for (int r = 0; r < rows; ++r) {
        a[r] = w + p * K * F + f0 + r;
        out[r] = y + (p * F + f0 + r) * B;
      }
      product<false>(rows, a, kernel_rows.data(), x + g.base(p) * B, cells.data(), K, 0, B, out);
    }
  }
}

// dw[p, k, f] = sum_b x[cell(p, k), b] * dy[p, f, b]   (rows: patch elements; columns: filters)
void zoo_lc_kernel_gradient(const int64_t* geometry, const float* x, const float* dy,
                            float* dw) {
  const Geometry g = unpack(geometry);
  const int64_t P = g.P(), K = g.K(), F = g.F, B = g.B;
  const std::vector<int64_t> cells = g.rel(B), images = strided(B, 1), upstream_rows = strided(B, F);
#pragma omp parallel
  {
    std::vector<float> dy_p(B * F);  // this position's upstream, (B, F)
    const float* a[kRows];
    float* out[kRows];
#pragma omp for schedule(static)
    for (int64_t p = 0; p < P; ++p) {
      for (int64_t f = 0; f < F; ++f)
        for (int64_t b = 0; b < B; ++b) dy_p[b * F + f] = dy[(p * F + f) * B + b];
      const float* x_p = x + g.base(p) * B;
      for (int64_t k0 = 0; k0 < K; k0 += kRows) {
        const int rows = static_cast<int>(std::min<int64_t>(kRows, K - k0));
        for (int r = 0; r < rows; ++r) {
          a[r] = x_p + cells[k0 + r];
          out[r] = dw + (p * K + k0 + r) * F;
        }
        product<false>(rows, a, images.data(), dy_p.data(), upstream_rows.data(), B, 0, F, out);
      }
    }
  }
}

// dx[cell(p, k), b] += sum_f w[p, k, f] * dy[p, f, b]   (rows: patch elements; columns: images)
// Positions overlap in dx, so the threads split the images (columns), not the positions.
void zoo_lc_input_gradient(const int64_t* geometry, const float* dy, const float* w, float* dx) {
  const Geometry g = unpack(geometry);
  const int64_t P = g.P(), K = g.K(), F = g.F, B = g.B;
  const std::vector<int64_t> cells = g.rel(B), filters = strided(F, 1), upstream_rows = strided(F, B);
#pragma omp parallel
  {
    const int64_t threads = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t vectors = (B + 7) / 8;  // split whole vectors of images between threads
    const int64_t c0 = std::min(B, 8 * (vectors * t / threads));
    const int64_t c1 = std::min(B, 8 * (vectors * (t + 1) / threads));
    const float* a[kRows];
    float* out[kRows];
    for (int64_t i = 0; i < g.image(); ++i)
      std::fill(dx + i * B + c0, dx + i * B + c1, 0.0f);
    for (int64_t p = 0; p < P && c0 < c1; ++p) {
      float* dx_p = dx + g.base(p) * B;
      for (int64_t k0 = 0; k0 < K; k0 += kRows) {
        const int rows = static_cast<int>(std::min<int64_t>(kRows, K - k0));
        for (int r = 0; r < rows; ++r) {
          a[r] = w + (p * K + k0 + r) * F;
          out[r] = dx_p + cells[k0 + r];
        }
        product<true>(rows, a, filters.data(), dy + p * F * B, upstream_rows.data(), F, c0, c1, out);
      }
    }
  }
}

}  // extern "C"
