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
// where the machine has them, -march=native). Threads split the positions: one each in the
// forward pass and the kernel gradient (each output element summed in a fixed order, so
// these do not depend on the number of threads), stripes of them in the input gradient.

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

// Where a product's operand element d lies: d * stride (a row-major matrix), or an entry of
// an offset table (the patch cells). Strided operands let the compiler index directly
// instead of loading every offset (the input gradient ran 25 % faster for it).
struct Strided {
  int64_t stride;
  int64_t operator[](int64_t d) const { return d * stride; }
};
struct Table {
  const int64_t* offsets;
  int64_t operator[](int64_t d) const { return offsets[d]; }
};

// out[r][c] (+)= sum_d a[r][ai[d]] * m[mi[d] + c] for columns c in [c0, c1): R rows
// broadcast, columns in NV vectors of 8. Every pass is this product with other operands.
template <int R, int NV, bool ADD, class AI, class MI>
void tile(const float* const* a, AI ai, const float* m, MI mi, int64_t depth, float* const* out) {
  v8 acc[R][NV] = {};
  for (int64_t d = 0; d < depth; ++d) {
    v8 mv[NV];
    const float* row = m + mi[d];
    for (int v = 0; v < NV; ++v) mv[v] = load(row + 8 * v);
    for (int r = 0; r < R; ++r) {
      const v8 s = splat(a[r][ai[d]]);
      for (int v = 0; v < NV; ++v) acc[r][v] += s * mv[v];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v)
      store(out[r] + 8 * v, ADD ? load(out[r] + 8 * v) + acc[r][v] : acc[r][v]);
}

template <int NV, bool ADD, class AI, class MI>
void tile_rows(int rows, const float* const* a, AI ai, const float* m, MI mi, int64_t depth,
               float* const* out) {
  switch (rows) {
    case 6: return tile<6, NV, ADD>(a, ai, m, mi, depth, out);
    case 5: return tile<5, NV, ADD>(a, ai, m, mi, depth, out);
    case 4: return tile<4, NV, ADD>(a, ai, m, mi, depth, out);
    case 3: return tile<3, NV, ADD>(a, ai, m, mi, depth, out);
    case 2: return tile<2, NV, ADD>(a, ai, m, mi, depth, out);
    default: return tile<1, NV, ADD>(a, ai, m, mi, depth, out);
  }
}

// The product for `rows` rows over columns [c0, c1): 16-wide tiles, 8-wide, then scalars.
template <bool ADD, class AI, class MI>
void product(int rows, const float* const* a, AI ai, const float* m, MI mi, int64_t depth,
             int64_t c0, int64_t c1, float* const* out) {
  int64_t c = c0;
  float* shifted[kRows];
  for (; c + 16 <= c1; c += 16) {
    for (int r = 0; r < rows; ++r) shifted[r] = out[r] + c;
    tile_rows<2, ADD>(rows, a, ai, m + c, mi, depth, shifted);
  }
  for (; c + 8 <= c1; c += 8) {
    for (int r = 0; r < rows; ++r) shifted[r] = out[r] + c;
    tile_rows<1, ADD>(rows, a, ai, m + c, mi, depth, shifted);
  }
  for (; c < c1; ++c)
    for (int r = 0; r < rows; ++r) {
      float s = 0.0f;
      for (int64_t d = 0; d < depth; ++d) s += a[r][ai[d]] * m[mi[d] + c];
      out[r][c] = ADD ? out[r][c] + s : s;
    }
}

}  // namespace

extern "C" {

// y[p, f, b] = sum_k w[p, k, f] * x[cell(p, k), b]   (rows: filters; columns: images)
void zoo_lc_forward(const int64_t* geometry, const float* x, const float* w, float* y) {
  const Geometry g = unpack(geometry);
  const int64_t P = g.P(), K = g.K(), F = g.F, B = g.B;
  const std::vector<int64_t> cells = g.rel(B);
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
      product<false>(rows, a, Strided{F}, x + g.base(p) * B, Table{cells.data()}, K, 0, B, out);
    }
  }
}

// dw[p, k, f] = sum_b x[cell(p, k), b] * dy[p, f, b]   (rows: patch elements; columns: filters)
void zoo_lc_kernel_gradient(const int64_t* geometry, const float* x, const float* dy,
                            float* dw) {
  const Geometry g = unpack(geometry);
  const int64_t P = g.P(), K = g.K(), F = g.F, B = g.B;
  const std::vector<int64_t> cells = g.rel(B);
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
        product<false>(rows, a, Strided{1}, dy_p.data(), Strided{F}, B, 0, F, out);
      }
    }
  }
}

// dx[cell(p, k), b] += sum_f w[p, k, f] * dy[p, f, b]   (rows: patch elements; columns: images)
// Positions overlap in dx, so the threads take stripes of output rows (of columns in a 1D
// layer) at least `reach` lines tall, where stripes two apart never touch the same input
// cell: the even stripes run in parallel, then the odd ones. Each thread thus reads only its
// own positions' kernel rows (the kernel streams from memory once, not once per thread) and
// writes whole rows of B images. There are 2 stripes per thread where the layer is tall
// enough, so the order in which an element of dx sums its terms depends on the number of
// threads (OMP_NUM_THREADS), not on the run: the same machine and settings give the same bits.
void zoo_lc_input_gradient(const int64_t* geometry, const float* dy, const float* w, float* dx) {
  const Geometry g = unpack(geometry);
  const int64_t K = g.K(), F = g.F, B = g.B;
  const std::vector<int64_t> cells = g.rel(B);
  const bool by_rows = g.OH > 1;
  const int64_t lines = by_rows ? g.OH : g.OW, across = by_rows ? g.OW : 1;
  const int64_t kernel = by_rows ? g.KH : g.KW, dilation = by_rows ? g.DH : g.DW;
  const int64_t stride = by_rows ? g.SH : g.SW;
  // A stripe of h output lines keeps the two beside it apart iff
  // (kernel - 1) * dilation < (h + 1) * stride.
  const int64_t reach = std::max<int64_t>(1, (kernel - 1) * dilation / stride);
  const int64_t stripes = std::max<int64_t>(
      1, std::min<int64_t>(2 * omp_get_max_threads(), lines / reach));
  std::memset(dx, 0, sizeof(float) * g.image() * B);
#pragma omp parallel
  {
    const float* a[kRows];
    float* out[kRows];
    for (int64_t parity = 0; parity < 2; ++parity) {
#pragma omp for schedule(dynamic, 1)
      for (int64_t s = parity; s < stripes; s += 2) {
        for (int64_t line = s * lines / stripes; line < (s + 1) * lines / stripes; ++line) {
          for (int64_t i = 0; i < across; ++i) {
            const int64_t p = line * across + i;
            float* dx_p = dx + g.base(p) * B;
            for (int64_t k0 = 0; k0 < K; k0 += kRows) {
              const int rows = static_cast<int>(std::min<int64_t>(kRows, K - k0));
              for (int r = 0; r < rows; ++r) {
                a[r] = w + (p * K + k0 + r) * F;
                out[r] = dx_p + cells[k0 + r];
              }
              product<true>(rows, a, Strided{1}, dy + p * F * B, Strided{B}, F, 0, B, out);
            }
          }
        }
      }
    }
  }
}

}  // extern "C"
