// Fused CPU kernels of the locally connected layers: forward, kernel gradient, input gradient.
//
// Layout: the passes read the padded input batch-innermost, x (H, W, C, B) ("cells"), which
// zoo_lc_to_cells makes from the layer's own (B, IH, IW, C) input (and zoo_lc_from_cells
// turns the input gradient back); the legacy kernel w (P, K, F), K = KH * KW * C in patch
// order (kh, kw, c); outputs and upstream gradients batch-major, (B, P, F), as TensorFlow
// holds them; P = OH * OW positions row-major. 1D layers are H = KH = 1. Each pass turns
// one position's (F, B) block of outputs or upstream gradients between the two layouts in a
// per-thread scratch that stays in the L1 cache, so no pass over memory is spent on layout
// changes of those tensors.
//
// Patch element k of position p is the input cell base(p) + rel[k] (a row of B floats),
// base(p) = (oy * SH * W + ox * SW) * C, rel[k] = (i * DH * W + j * DW) * C + c: the same
// offset table for every position, so no patch tensor is ever built. Each pass is one small
// matrix product per position whose columns are contiguous rows of B images or F filters:
// register tiles of up to kRows broadcast rows by two vectors of columns (GCC vector
// extensions, -march=native: 16-float AVX-512 vectors where the compiler targets them, 10
// rows; else 8-float AVX2 vectors, 6 rows; the width changes no sum's order, as each column
// is one lane); in the kernel gradient, two neighbouring positions share the broadcast rows
// of the cells both patches hold (`pair_tile`); the input gradient of 16 filters takes up
// to 14 rows (`dx_tile16`); on Zen 4 the kernel gradient's rows go out by non-temporal stores
// (kStreamKernelGradient). Threads split the positions: one each (or a pair) in the forward
// pass and the kernel gradient (each output element summed in a fixed order, so these do not
// depend on the number of threads), stripes of them in the input gradient.

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

#include <omp.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace {

typedef float v8 __attribute__((vector_size(32)));
#if defined(__AVX512F__)
typedef float vec __attribute__((vector_size(64)));
// 10 x 2 accumulators + 3 operands fit 32 registers, and 10 row pointers the 15 general
// ones: 12 rows spill pointers, and the kernel gradient (one vector of 16 filters) ran 1.5x
// slower for it.
constexpr int kRows = 10;
#else
typedef v8 vec;
constexpr int kRows = 6;  // 6 x 2 accumulators + 3 operands fit 16 registers
#endif
template <class V>
constexpr int kLanes = sizeof(V) / sizeof(float);

template <class V>
inline V load(const float* p) {
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <class V>
inline void store(float* p, V v) { std::memcpy(p, &v, sizeof v); }
template <class V>
inline V splat(float s) {  // one broadcast from memory (`V{} + s` adds, then shuffles)
  if constexpr (kLanes<V> == 16) return V{s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s};
  else return V{s, s, s, s, s, s, s, s};
}

// An L x L block in L vectors, transposed in registers: v[i][j] <- v[j][i]. Stage h swaps the
// h x h blocks off the diagonal of every 2h x 2h block, i.e. bit h of the row and column index.
#if defined(__AVX512F__)
constexpr std::array<int32_t, 16> swap_index(int h, bool second) {
  std::array<int32_t, 16> index{};  // 0-15: lanes of the first operand, 16-31: of the second
  for (int j = 0; j < 16; ++j)
    index[j] = (j & h) == 0 ? (second ? j + h : j) : (second ? 16 + j : 16 + j - h);
  return index;
}
template <int H>
inline void swap_stage(vec* v) {
  static constexpr std::array<int32_t, 16> first = swap_index(H, false);
  static constexpr std::array<int32_t, 16> second = swap_index(H, true);
  const __m512i lo = _mm512_loadu_si512(first.data()), hi = _mm512_loadu_si512(second.data());
  for (int i = 0; i < 16; ++i)
    if ((i & H) == 0) {
      const __m512 a = (__m512)v[i], b = (__m512)v[i + H];
      v[i] = (vec)_mm512_permutex2var_ps(a, lo, b);
      v[i + H] = (vec)_mm512_permutex2var_ps(a, hi, b);
    }
}
inline void transpose(vec* v) {
  swap_stage<8>(v);
  swap_stage<4>(v);
  swap_stage<2>(v);
  swap_stage<1>(v);
}
#elif defined(__AVX__)
inline void transpose(vec* v) {
  for (int i = 0; i < 4; ++i) {  // h = 4: 128-bit halves
    const __m256 a = (__m256)v[i], b = (__m256)v[i + 4];
    v[i] = (vec)_mm256_permute2f128_ps(a, b, 0x20);
    v[i + 4] = (vec)_mm256_permute2f128_ps(a, b, 0x31);
  }
  for (int i : {0, 1, 4, 5}) {  // h = 2: pairs
    const __m256 a = (__m256)v[i], b = (__m256)v[i + 2];
    v[i] = (vec)_mm256_shuffle_ps(a, b, _MM_SHUFFLE(1, 0, 1, 0));
    v[i + 2] = (vec)_mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 8; i += 2) {  // h = 1: single lanes
    const __m256 a = (__m256)v[i], b = (__m256)v[i + 1];
    v[i] = (vec)_mm256_blend_ps(a, _mm256_moveldup_ps(b), 0xAA);
    v[i + 1] = (vec)_mm256_blend_ps(_mm256_movehdup_ps(a), b, 0xAA);
  }
}
#else
inline void transpose(vec* v) {
  constexpr int L = kLanes<vec>;
  for (int i = 0; i < L; ++i)
    for (int j = i + 1; j < L; ++j) std::swap(v[i][j], v[j][i]);
}
#endif

// A store that bypasses the cache (non-temporal) where the CPU has one, for rows written far
// apart that nothing reads soon: a regular store first reads each line for ownership, one
// demand miss per row. Each thread that used it calls fence() before the pass returns.
inline void stream(float* p, vec v) {
#if defined(__AVX512F__)
  _mm512_stream_ps(p, (__m512)v);
#elif defined(__AVX__)
  _mm256_stream_ps(p, (__m256)v);
#else
  store<vec>(p, v);
#endif
}
inline void fence() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_sfence();
#endif
}

// Asks for the cache lines of `rows` rows of n floats, `stride` apart: the next position's
// upstream gradients, one short row per image far apart, which the hardware prefetcher does
// not follow. A prefetch past the end of an array never faults.
inline void prefetch_rows(const float* first, int64_t rows, int64_t stride, int64_t n) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t e = 0; e < n; e += 16) __builtin_prefetch(first + r * stride + e);
}

// dst[j * dst_stride + i] = src[i * src_stride + j] (+ add[i] if add) for i < n, j < m: an
// (n, m) block turned into m rows of n floats, in L x L tiles through registers (the rest one
// by one). STREAM: the tiles' rows by non-temporal stores, where dst allows aligned ones.
template <bool STREAM>
void turn(const float* src, int64_t src_stride, int64_t n, int64_t m, float* dst,
          int64_t dst_stride, const float* add) {
  constexpr int L = kLanes<vec>;
  const int64_t n1 = n - n % L, m1 = m - m % L;
  const bool aligned = reinterpret_cast<uintptr_t>(dst) % sizeof(vec) == 0 && dst_stride % L == 0;
  for (int64_t i0 = 0; i0 < n1; i0 += L) {
    const vec offset = add != nullptr ? load<vec>(add + i0) : vec{};
    for (int64_t j0 = 0; j0 < m1; j0 += L) {
      vec v[L];
      for (int i = 0; i < L; ++i) v[i] = load<vec>(src + (i0 + i) * src_stride + j0);
      transpose(v);
      for (int j = 0; j < L; ++j) {
        float* const row = dst + (j0 + j) * dst_stride + i0;
        if (STREAM && aligned) stream(row, v[j] + offset);
        else store<vec>(row, v[j] + offset);
      }
    }
  }
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i < n1 ? m1 : 0; j < m; ++j)
      dst[j * dst_stride + i] = src[i * src_stride + j] + (add != nullptr ? add[i] : 0.0f);
}

// Rows split into equal chunks of at most kRows (16 filters: 8 + 8, not 10 + 6).
inline int64_t chunk(int64_t n) {
  const int64_t chunks = (n + kRows - 1) / kRows;
  return (n + chunks - 1) / chunks;
}

// One (F, B) block per OpenMP thread, 64-byte aligned (its rows are the tiles' columns).
class Scratch {
 public:
  explicit Scratch(int64_t floats)
      : stride_((floats + 15) / 16 * 16),
        data_(static_cast<float*>(
            std::aligned_alloc(64, sizeof(float) * stride_ * omp_get_max_threads()))) {}
  float* mine() const { return data_.get() + stride_ * omp_get_thread_num(); }

 private:
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  int64_t stride_;
  std::unique_ptr<float, Free> data_;
};

struct Geometry {
  int64_t B, H, W, C, OH, OW, KH, KW, SH, SW, DH, DW, F;
  int64_t P() const { return OH * OW; }
  int64_t K() const { return KH * KW * C; }
  int64_t image() const { return H * W * C; }
  int64_t base(int64_t p) const { return ((p / OW) * SH * W + (p % OW) * SW) * C; }
  // How many kernel columns right of position p's patch that of p + 1 (same output row) lies,
  // where that is a whole number (the stride a multiple of the dilation) below KW, so the two
  // patches share cells: in each kernel row, p's elements from column `shift` on are p + 1's
  // from column 0 on. 0 where they share none.
  int64_t shift() const { return SW % DW == 0 && SW / DW < KW ? SW / DW : 0; }
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

// How a tile writes its block: set, add to what is there, or set by non-temporal stores
// (`stream`; rows 64-byte aligned, the caller's check) where the rows go far apart and are
// not read soon (the kernel gradient, on the CPUs of kStreamKernelGradient).
enum class Store { kSet, kAdd, kStream };

// Non-temporal stores of the kernel gradient: on Zen 4 (a Zen core with AVX-512; GCC 12 calls
// it znver3) they made that pass 1.18-1.30x faster at L4-L6 batch 32 and 1.04-1.07x at batch
// 128, same bits (the rows are written once, and a regular store first reads each line); on
// the AVX-512 Xeon and on Zen 3 they were 0.91-1.00x (bench/RESULTS.md, rounds 3-7 and 10).
// Only for outputs larger than the caches hold: the lcn MNIST layer's 0.9 MB, which stays in
// L2, ran 0.92x with them (its next reader then goes to memory).
#if defined(__AVX512F__) && (defined(__znver3__) || defined(__znver4__) || defined(__znver5__))
constexpr bool kStreamKernelGradient = true;
#else
constexpr bool kStreamKernelGradient = false;
#endif
constexpr int64_t kStreamMinBytes = int64_t{8} << 20;

// out[r][c] (+)= sum_d a[r][ai[d]] * m[mi[d] + c] for columns c in [c0, c1): R rows
// broadcast, columns in NV vectors V. Every pass is this product with other operands.
template <class V, int R, int NV, Store S, class AI, class MI>
void tile(const float* const* a, AI ai, const float* m, MI mi, int64_t depth, float* const* out) {
  constexpr int L = kLanes<V>;
  V acc[R][NV] = {};
  for (int64_t d = 0; d < depth; ++d) {
    V mv[NV];
    const float* row = m + mi[d];
    for (int v = 0; v < NV; ++v) mv[v] = load<V>(row + L * v);
    // Rows a whole cache line apart (the forward pass's kernel, depth-major): ask for the
    // line 32 steps ahead, which the hardware prefetcher alone fetched too late (forward at
    // L4 b32: 24.7 -> 19.7 ms on AVX-512). A prefetch past the end never faults.
    if constexpr (std::is_same_v<AI, Strided>)
      if (ai.stride >= 16) __builtin_prefetch(a[0] + ai[d + 32]);
    for (int r = 0; r < R; ++r) {
      const V s = splat<V>(a[r][ai[d]]);
      for (int v = 0; v < NV; ++v) acc[r][v] += s * mv[v];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) {
      float* const row = out[r] + L * v;
      if constexpr (S == Store::kAdd) store<V>(row, load<V>(row) + acc[r][v]);
      else if constexpr (S == Store::kStream && std::is_same_v<V, vec>) stream(row, acc[r][v]);
      else store<V>(row, acc[r][v]);
    }
}

// visit(std::integral_constant<int, rows>{}) for 1 <= rows <= Max: a tile has one instance per
// row count, picked at run time.
template <class Visit, int... Rs>
inline void by_rows(int rows, Visit& visit, std::integer_sequence<int, Rs...>) {
  (void)((rows == Rs + 1 && (visit(std::integral_constant<int, Rs + 1>{}), true)) || ...);
}
template <int Max, class Visit>
inline void by_rows(int rows, Visit visit) {
  by_rows(rows, visit, std::make_integer_sequence<int, Max>{});
}

template <class V, int NV, Store S, class AI, class MI>
int64_t tiles(int rows, const float* const* a, AI ai, const float* m, MI mi, int64_t depth,
              int64_t c, int64_t c1, float* const* out) {
  constexpr int64_t width = NV * kLanes<V>;
  float* shifted[kRows];
  for (; c + width <= c1; c += width) {
    for (int r = 0; r < rows; ++r) shifted[r] = out[r] + c;
    by_rows<kRows>(rows, [&](auto R) {
      tile<V, decltype(R)::value, NV, S>(a, ai, m + c, mi, depth, shifted);
    });
  }
  return c;
}

// The product for `rows` rows over columns [c0, c1): tiles of two vectors, of one, of
// 8 floats (AVX-512), then scalars.
template <Store S, class AI, class MI>
void product(int rows, const float* const* a, AI ai, const float* m, MI mi, int64_t depth,
             int64_t c0, int64_t c1, float* const* out) {
  int64_t c = tiles<vec, 2, S>(rows, a, ai, m, mi, depth, c0, c1, out);
  c = tiles<vec, 1, S>(rows, a, ai, m, mi, depth, c, c1, out);
  if constexpr (kLanes<vec> > 8) c = tiles<v8, 1, S>(rows, a, ai, m, mi, depth, c, c1, out);
  for (; c < c1; ++c)
    for (int r = 0; r < rows; ++r) {
      float s = 0.0f;
      for (int64_t d = 0; d < depth; ++d) s += a[r][ai[d]] * m[mi[d] + c];
      out[r][c] = S == Store::kAdd ? out[r][c] + s : s;
    }
}

// Two positions' kernel gradients over cells that both patches hold: out0[r][c] =
// sum_d a[r][d] * m0[d * stride + c] and out1[r][c] the same with m1, R rows by one vector of
// columns. Each broadcast feeds two FMAs (one product alone: 11 loads for 10 FMAs, load-bound),
// and every sum runs in the same order as in `tile`.
template <int R, Store S>
void pair_tile(const float* const* a, const float* m0, const float* m1, int64_t stride,
               int64_t depth, float* const* out0, float* const* out1, int64_t c) {
  vec acc0[R] = {}, acc1[R] = {};
  for (int64_t d = 0; d < depth; ++d) {
    const vec v0 = load<vec>(m0 + d * stride + c), v1 = load<vec>(m1 + d * stride + c);
    for (int r = 0; r < R; ++r) {
      const vec s = splat<vec>(a[r][d]);
      acc0[r] += s * v0;
      acc1[r] += s * v1;
    }
  }
  for (int r = 0; r < R; ++r) {
    if constexpr (S == Store::kStream) {
      stream(out0[r] + c, acc0[r]);
      stream(out1[r] + c, acc1[r]);
    } else {
      store<vec>(out0[r] + c, acc0[r]);
      store<vec>(out1[r] + c, acc1[r]);
    }
  }
}

// dw[p, k, f] = sum_b x[cell(p, k), b] * dy[b, p, f]   (rows: patch elements; columns: filters)
// and db[p, f] = sum_b dy[b, p, f] (if db) for positions p .. p + n - 1 of one output row
// (n = 2: the cells both patches hold, see Geometry::shift, go through `pair_tile` once for
// both); dy_p: n * B * F floats of scratch. Flattened: every tile inlined, as with one caller
// (the tiles called out of line ran the 1D case 0.86x).
template <int64_t n, Store S>
[[gnu::flatten]] void kernel_gradient_at(const Geometry& g, const int64_t* cells, const float* x,
                                         const float* dy, float* dw, float* db, int64_t p,
                                         float* dy_p) {
  const int64_t K = g.K(), F = g.F, B = g.B, row = g.KW * g.C, ahead = g.shift() * g.C;
  for (int64_t b = 0; b < B; ++b)  // (B, n * F): position q's filters at q * F
    std::memcpy(dy_p + b * n * F, dy + (b * g.P() + p) * F, sizeof(float) * n * F);
  prefetch_rows(dy + (p + n) * F, B, g.P() * F, n * F);
  if (db != nullptr)  // images in order, filters side by side (vectorised)
    for (int64_t q = 0; q < n; ++q) {
      float* const db_q = db + (p + q) * F;
      std::fill(db_q, db_q + F, 0.0f);
      for (int64_t b = 0; b < B; ++b)
        for (int64_t f = 0; f < F; ++f) db_q[f] += dy_p[b * n * F + q * F + f];
    }
  const float* a[kRows];
  float* out[kRows];
  // Elements [e0, e1) of position p + q alone.
  auto alone = [&](int64_t q, int64_t e0, int64_t e1) {
    const float* x_q = x + g.base(p + q) * B;
    const int64_t step = chunk(e1 - e0);
    for (int64_t k0 = e0; k0 < e1; k0 += step) {
      const int rows = static_cast<int>(std::min<int64_t>(step, e1 - k0));
      for (int r = 0; r < rows; ++r) {
        a[r] = x_q + cells[k0 + r];
        out[r] = dw + ((p + q) * K + k0 + r) * F;
      }
      product<S>(rows, a, Strided{1}, dy_p + q * F, Strided{n * F}, B, 0, F, out);
    }
  };
  if constexpr (n == 1) {
    alone(0, 0, K);
  } else {
    const float* x_p = x + g.base(p) * B;
    const int64_t whole = F - F % kLanes<vec>;  // columns in whole vectors
    float* out1[kRows];
    for (int64_t i0 = 0; i0 < K; i0 += row) {  // one kernel row: p's elements [i0, i0 + row)
      alone(0, i0, i0 + ahead);
      alone(1, i0 + row - ahead, i0 + row);
      const int64_t step = chunk(row - ahead);
      for (int64_t k0 = i0 + ahead; k0 < i0 + row; k0 += step) {  // p's k0: p + 1's k0 - ahead
        const int rows = static_cast<int>(std::min<int64_t>(step, i0 + row - k0));
        for (int r = 0; r < rows; ++r) {
          a[r] = x_p + cells[k0 + r];
          out[r] = dw + (p * K + k0 + r) * F;
          out1[r] = dw + ((p + 1) * K + k0 + r - ahead) * F;
        }
        for (int64_t c = 0; c < whole; c += kLanes<vec>)
          by_rows<kRows>(rows, [&](auto R) {
            pair_tile<decltype(R)::value, S>(a, dy_p, dy_p + F, 2 * F, B, out, out1, c);
          });
        if (whole < F) {
          product<Store::kSet>(rows, a, Strided{1}, dy_p, Strided{2 * F}, B, whole, F, out);
          product<Store::kSet>(rows, a, Strided{1}, dy_p + F, Strided{2 * F}, B, whole, F, out1);
        }
      }
    }
  }
}

#if defined(__AVX512F__)
// The input gradient's tile for 16 filters: R kernel rows 16 floats apart broadcast from one
// pointer (constant displacements), so R is not bounded by the general registers (14 x 2
// accumulators + 3 operands fill the 32 vector registers); the same sums, in the same order,
// as `tile`. out[r][c..c+32) += sum_d a[r * 16 + d] * m[d * B + c..].
constexpr int kRows16 = 14;
template <int R>
void dx_tile16(const float* a, const float* m, int64_t B, float* const* out, int64_t c) {
  vec acc[R][2] = {};
  for (int d = 0; d < 16; ++d) {
    const vec m0 = load<vec>(m + d * B + c), m1 = load<vec>(m + d * B + c + 16);
    for (int r = 0; r < R; ++r) {
      const vec s = splat<vec>(a[r * 16 + d]);
      acc[r][0] += s * m0;
      acc[r][1] += s * m1;
    }
  }
  for (int r = 0; r < R; ++r) {
    store<vec>(out[r] + c, load<vec>(out[r] + c) + acc[r][0]);
    store<vec>(out[r] + c + 16, load<vec>(out[r] + c + 16) + acc[r][1]);
  }
}
#endif

// dx[cell(p, k), b] += sum_f w[p, k, f] * dy[b, p, f]   (rows: patch elements; columns:
// images) for one position; dy_p: F * B floats of scratch.
void input_gradient_at(const Geometry& g, const int64_t* cells, int64_t step, const float* dy,
                       const float* w, float* dx, int64_t p, float* dy_p) {
  const int64_t K = g.K(), F = g.F, B = g.B;
  const float* a[kRows];
  float* out[kRows];
  turn<false>(dy + p * F, g.P() * F, B, F, dy_p, B, nullptr);
  prefetch_rows(dy + (p + 1) * F, B, g.P() * F, F);
  float* dx_p = dx + g.base(p) * B;
#if defined(__AVX512F__)
  if (F == 16 && B >= 32) {  // DeepFace's layers: tiles of up to 14 rows (`dx_tile16`)
    const int64_t chunks = (K + kRows16 - 1) / kRows16, tall = (K + chunks - 1) / chunks;
    float* rows_out[kRows16];
    for (int64_t k0 = 0; k0 < K; k0 += tall) {
      const int rows = static_cast<int>(std::min<int64_t>(tall, K - k0));
      const float* a0 = w + (p * K + k0) * 16;
      for (int r = 0; r < rows; ++r) rows_out[r] = dx_p + cells[k0 + r];
      for (int64_t e = 0; e < rows * 16; e += 16) __builtin_prefetch(a0 + 40 * 16 + e);
      int64_t c = 0;
      for (; c + 32 <= B; c += 32)
        by_rows<kRows16>(rows, [&](auto R) {
          dx_tile16<decltype(R)::value>(a0, dy_p, B, rows_out, c);
        });
      for (int64_t r0 = 0; c < B && r0 < rows; r0 += kRows) {  // the last columns
        const int part = std::min<int>(kRows, rows - static_cast<int>(r0));
        for (int r = 0; r < part; ++r) {
          a[r] = a0 + (r0 + r) * 16;
          out[r] = rows_out[r0 + r];
        }
        product<Store::kAdd>(part, a, Strided{1}, dy_p, Strided{B}, F, c, B, out);
      }
    }
    return;
  }
#endif
  for (int64_t k0 = 0; k0 < K; k0 += step) {
    const int rows = static_cast<int>(std::min<int64_t>(step, K - k0));
    for (int r = 0; r < rows; ++r) {
      a[r] = w + (p * K + k0 + r) * F;
      out[r] = dx_p + cells[k0 + r];
    }
    // The kernel rows 40 ahead, as in `tile` (22.9 -> 18.1 ms at L4 b32 on AVX-512).
    for (int64_t e = 0; e < rows * F; e += 16) __builtin_prefetch(a[0] + 40 * F + e);
    product<Store::kAdd>(rows, a, Strided{1}, dy_p, Strided{B}, F, 0, B, out);
  }
}

// In how many blocks of output columns the input gradient goes down a stripe's rows: one
// where the band of dx that an output row's patches cover ((KH - 1) * DH + 1 input rows, all
// columns) fits the L2 cache, else as few equal blocks as have bands that fit. Going down a
// block, the band's rows that the next output row shares are still in L2; going down whole
// rows, a batch-128 band (L4: 4.6 MB, L5: 3.1 MB) had left Zen 4's 1 MiB L2 by then, and every
// shared line of dx went to L3 and back, which costs when both cores do it (the pass 1.06x
// faster at L4 batch 128 with two threads, 1.01x with one; bench/RESULTS.md, round 11).
int64_t column_blocks(const Geometry& g) {
#if defined(_SC_LEVEL2_CACHE_SIZE)
  const long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);  // per core; 0 where the system cannot tell
#else
  const long l2 = 0;
#endif
  const int64_t budget = l2 > 0 ? l2 : int64_t{1} << 20;
  const int64_t column = ((g.KH - 1) * g.DH + 1) * g.C * g.B * int64_t{sizeof(float)};
  auto band = [&](int64_t cols) { return ((cols - 1) * g.SW + (g.KW - 1) * g.DW + 1) * column; };
  int64_t blocks = 1;
  while (blocks < g.OW && band((g.OW + blocks - 1) / blocks) > budget) ++blocks;
  return blocks;
}

// Runs visit(p) for every position, in stripes that keep two threads from ever adding to the
// same input cell. Positions overlap in dx, so the threads take stripes of output rows (of
// columns in a 1D layer) at least `reach` lines tall, where stripes two apart never touch the
// same input cell: the even stripes run in parallel, then the odd ones. Each thread thus reads
// only its own positions' kernel rows (the kernel streams from memory once, not once per
// thread) and writes whole rows of B images. There are 2 stripes per thread where the layer is
// tall enough, so the order in which an element of dx sums its terms depends on the number of
// threads (OMP_NUM_THREADS) and the L2 cache's size (column_blocks), not on the run: the same
// machine and settings give the same bits. A stripe of output rows goes block by block.
template <class Visit>
void in_stripes(const Geometry& g, Visit visit) {
  const bool by_rows = g.OH > 1;
  const int64_t lines = by_rows ? g.OH : g.OW, across = by_rows ? g.OW : 1;
  const int64_t kernel = by_rows ? g.KH : g.KW, dilation = by_rows ? g.DH : g.DW;
  const int64_t stride = by_rows ? g.SH : g.SW;
  // A stripe of h output lines keeps the two beside it apart iff
  // (kernel - 1) * dilation < (h + 1) * stride.
  const int64_t reach = std::max<int64_t>(1, (kernel - 1) * dilation / stride);
  const int64_t stripes = std::max<int64_t>(
      1, std::min<int64_t>(2 * omp_get_max_threads(), lines / reach));
  const int64_t blocks = by_rows ? column_blocks(g) : 1;
#pragma omp parallel
  for (int64_t parity = 0; parity < 2; ++parity) {
#pragma omp for schedule(dynamic, 1)
    for (int64_t s = parity; s < stripes; s += 2)
      for (int64_t block = 0; block < blocks; ++block)
        for (int64_t line = s * lines / stripes; line < (s + 1) * lines / stripes; ++line)
          for (int64_t i = block * across / blocks; i < (block + 1) * across / blocks; ++i)
            visit(line * across + i);
  }
}

// Runs visit(y, c0, c1) over rows y < rows of n floats, cut into pieces [c0, c1) (whole
// vectors) so that every thread gets some even when there are few rows (a 1D layer has one).
template <class Visit>
void by_pieces(int64_t rows, int64_t n, Visit visit) {
  const int64_t cuts = std::max<int64_t>(1, (2 * omp_get_max_threads() + rows - 1) / rows);
  const int64_t L = kLanes<vec>, piece = ((n + cuts - 1) / cuts + L - 1) / L * L;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t y = 0; y < rows; ++y)
    for (int64_t c = 0; c < cuts; ++c)
      if (c * piece < n) visit(y, c * piece, std::min(n, (c + 1) * piece));
}

}  // namespace

extern "C" {

// y[b, p, f] = sum_k w[p, k, f] * x[cell(p, k), b] + bias[p, f]   (rows: filters; columns:
// images; bias (P, F) or null), each position's (F, B) block computed into the thread's
// scratch, then stored turned, a row of F floats per image.
void zoo_lc_forward(const int64_t* geometry, const float* x, const float* w, const float* bias,
                    float* y) {
  const Geometry g = unpack(geometry);
  const int64_t P = g.P(), K = g.K(), F = g.F, B = g.B;
  const std::vector<int64_t> cells = g.rel(B);
  const int64_t step = chunk(F);
  const Scratch scratch(F * B);
#pragma omp parallel
  {
    float* const y_p = scratch.mine();
#pragma omp for schedule(static) nowait
    for (int64_t p = 0; p < P; ++p) {
      const float* a[kRows];
      float* out[kRows];
      for (int64_t f0 = 0; f0 < F; f0 += step) {
        const int rows = static_cast<int>(std::min<int64_t>(step, F - f0));
        for (int r = 0; r < rows; ++r) {
          a[r] = w + p * K * F + f0 + r;
          out[r] = y_p + (f0 + r) * B;
        }
        product<Store::kSet>(rows, a, Strided{F}, x + g.base(p) * B, Table{cells.data()}, K, 0, B,
                             out);
      }
      turn<true>(y_p, B, F, B, y + p * F, P * F, bias != nullptr ? bias + p * F : nullptr);
    }
    fence();  // this thread's streaming stores, before the region's closing barrier
  }
}

// dw (and db, if not null) of every position, each by one thread in a fixed order (independent
// of the thread count). Threads take pairs of neighbours in an output row where their patches
// share cells (Geometry::shift) and the filters fill less than two vectors, else single
// positions: with two vectors of filters one product's tile already spends 12 loads on 20
// FMAs, and pairs (a vector at a time) were no faster (the 1D case, 32 filters: 0.99x).
void zoo_lc_kernel_gradient(const int64_t* geometry, const float* x, const float* dy, float* dw,
                            float* db) {
  const Geometry g = unpack(geometry);
  const std::vector<int64_t> cells = g.rel(g.B);
  const int64_t n = g.shift() > 0 && g.F < 2 * kLanes<vec> ? 2 : 1;  // positions per unit
  const int64_t per_row = (g.OW + n - 1) / n;
  const Scratch scratch(n * g.B * g.F);
  auto all = [&](auto store) {
    constexpr Store S = decltype(store)::value;
#pragma omp parallel
    {
      float* const dy_p = scratch.mine();
#pragma omp for schedule(static)
      for (int64_t u = 0; u < g.OH * per_row; ++u) {
        const int64_t first = u % per_row * n, p = u / per_row * g.OW + first;
        if (n == 2 && first + 1 < g.OW)
          kernel_gradient_at<2, S>(g, cells.data(), x, dy, dw, db, p, dy_p);
        else
          kernel_gradient_at<1, S>(g, cells.data(), x, dy, dw, db, p, dy_p);
      }
      if constexpr (S == Store::kStream) fence();
    }
  };
  // Every row of dw starts on a vector boundary: F whole vectors, dw itself aligned.
  const bool aligned =
      reinterpret_cast<uintptr_t>(dw) % sizeof(vec) == 0 && g.F % kLanes<vec> == 0;
  const bool large = g.P() * g.K() * g.F * int64_t{sizeof(float)} >= kStreamMinBytes;
  if (kStreamKernelGradient && aligned && large)
    all(std::integral_constant<Store, Store::kStream>{});
  else
    all(std::integral_constant<Store, Store::kSet>{});
}

// The layer's input x (B, IH, IW, C) as the passes' padded cells (H, W, C, B), zeros in the
// padding (pads: top, bottom, left, right; a 1D layer's top and bottom are 0): each image's
// row of IW * C floats turned into IW * C rows of B, in register tiles. TensorFlow's own
// transpose and pad ops cost the layer 1.1-1.2x in the forward pass at L5 and L6.
void zoo_lc_to_cells(const int64_t* geometry, const int64_t* pads, const float* x, float* cells) {
  const Geometry g = unpack(geometry);
  const int64_t IH = g.H - pads[0] - pads[1], IW = g.W - pads[2] - pads[3];
  const int64_t row = IW * g.C, line = g.W * g.C * g.B, left = pads[2] * g.C * g.B;
  by_pieces(g.H, row, [&](int64_t y, int64_t c0, int64_t c1) {
    float* const out = cells + y * line;
    const int64_t iy = y - pads[0];
    if (iy < 0 || iy >= IH) {  // a padding row, zeroed by its pieces
      std::memset(out + left + c0 * g.B, 0, sizeof(float) * (c1 - c0) * g.B);
    } else {
      turn<false>(x + iy * row + c0, IH * row, g.B, c1 - c0, out + left + c0 * g.B, g.B, nullptr);
    }
    if (c0 == 0) std::memset(out, 0, sizeof(float) * left);  // the left and right padding
    if (c1 == row) std::memset(out + left + row * g.B, 0, sizeof(float) * (line - left - row * g.B));
  });
}

// The cells' gradient (H, W, C, B) back in the layer's input layout (B, IH, IW, C), the
// padding dropped: the inverse of zoo_lc_to_cells.
void zoo_lc_from_cells(const int64_t* geometry, const int64_t* pads, const float* cells,
                       float* x) {
  const Geometry g = unpack(geometry);
  const int64_t IH = g.H - pads[0] - pads[1], IW = g.W - pads[2] - pads[3], row = IW * g.C;
  by_pieces(IH, row, [&](int64_t iy, int64_t c0, int64_t c1) {
    const float* const in = cells + ((iy + pads[0]) * g.W + pads[2]) * g.C * g.B;
    turn<false>(in + c0 * g.B, g.B, c1 - c0, g.B, x + iy * row + c0, IH * row, nullptr);
  });
}

// dx: zeroed, then every position's terms added, in stripes (see in_stripes).
void zoo_lc_input_gradient(const int64_t* geometry, const float* dy, const float* w, float* dx) {
  const Geometry g = unpack(geometry);
  const std::vector<int64_t> cells = g.rel(g.B);
  const int64_t step = chunk(g.K());
  const Scratch scratch(g.F * g.B);
  std::memset(dx, 0, sizeof(float) * g.image() * g.B);
  in_stripes(g, [&](int64_t p) {
    input_gradient_at(g, cells.data(), step, dy, w, dx, p, scratch.mine());
  });
}

}  // extern "C"
