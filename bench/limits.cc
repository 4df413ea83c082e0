// What this machine can do, as the benchmarks' denominators: the FMA peak (independent
// fused multiply-add chains in registers) and the stream bandwidths (read, write, and
// write with non-temporal stores) over arrays far larger than the caches, on every
// OpenMP thread. Built and run by limits.py; prints one JSON object.
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#if defined(__AVX512F__)
constexpr int kLanes = 16, kChains = 16;  // 32 vector registers: 16 accumulators + 2 constants
#elif defined(__AVX__)
constexpr int kLanes = 8, kChains = 10;  // 16 vector registers
#else
constexpr int kLanes = 4, kChains = 8;
#endif
typedef float V __attribute__((vector_size(kLanes * sizeof(float))));

static void nontemporal_store(float* p, V v) {
#if defined(__AVX512F__)
  _mm512_stream_ps(p, (__m512)v);
#elif defined(__AVX__)
  _mm256_stream_ps(p, (__m256)v);
#else
  _mm_stream_ps(p, (__m128)v);
#endif
}

static double fma_gflops(long steps) {
  double start = omp_get_wtime(), sink = 0;
#pragma omp parallel reduction(+ : sink)
  {
    V x[kChains];
    for (int k = 0; k < kChains; ++k) x[k] = V{} + 1e-3f * k;
    const V m = V{} + 0.999f, c = V{} + 1e-4f;
    for (long s = 0; s < steps; ++s)
      for (int k = 0; k < kChains; ++k) x[k] = x[k] * m + c;  // one FMA (-ffp-contract=fast)
    for (int k = 0; k < kChains; ++k) sink += x[k][0];
  }
  double seconds = omp_get_wtime() - start;
  if (sink == 42) std::puts("");  // keeps the chains alive
  return 2.0 * kLanes * kChains * steps * omp_get_max_threads() / seconds / 1e9;
}

int main(int argc, char** argv) {
  const long floats = (argc > 1 ? atol(argv[1]) : 256) << 18;  // MiB -> floats
  const int repeats = argc > 2 ? atoi(argv[2]) : 5;
  float* a = static_cast<float*>(aligned_alloc(64, floats * sizeof(float)));
  float* b = static_cast<float*>(aligned_alloc(64, floats * sizeof(float)));
#pragma omp parallel for schedule(static)
  for (long i = 0; i < floats; ++i) a[i] = b[i] = 1.0f;  // first touch, by the same threads
  std::vector<double> read, write, stream, fma;
  const double gb = floats * sizeof(float) / 1e9;
  for (int r = 0; r < repeats; ++r) {
    double start = omp_get_wtime(), total = 0;
#pragma omp parallel reduction(+ : total)
    {
      V s0{}, s1{}, s2{}, s3{};  // four sums: the adds' latency hides under the loads
#pragma omp for schedule(static)
      for (long i = 0; i < floats; i += 4 * kLanes) {
        s0 += *(V*)(a + i);
        s1 += *(V*)(a + i + kLanes);
        s2 += *(V*)(a + i + 2 * kLanes);
        s3 += *(V*)(a + i + 3 * kLanes);
      }
      V s = (s0 + s1) + (s2 + s3);
      for (int k = 0; k < kLanes; ++k) total += s[k];
    }
    read.push_back(gb / (omp_get_wtime() - start));
    if (total < 0) std::puts("");
    const V value = V{} + static_cast<float>(r);
    start = omp_get_wtime();
#pragma omp parallel for schedule(static)
    for (long i = 0; i < floats; i += kLanes) *(V*)(b + i) = value;
    write.push_back(gb / (omp_get_wtime() - start));
    start = omp_get_wtime();
#pragma omp parallel for schedule(static)
    for (long i = 0; i < floats; i += kLanes) nontemporal_store(b + i, value);
    _mm_sfence();
    stream.push_back(gb / (omp_get_wtime() - start));
    fma.push_back(fma_gflops(20000000));
  }
  auto print = [](const char* name, std::vector<double> v, const char* end) {
    std::sort(v.begin(), v.end());
    std::printf("\"%s\": {\"best\": %.1f, \"median\": %.1f}%s", name, v.back(), v[v.size() / 2], end);
  };
  std::printf("{\"threads\": %d, \"lanes\": %d, \"mib\": %ld, ", omp_get_max_threads(), kLanes,
              floats >> 18);
  print("fma_gflops", fma, ", ");
  print("read_gbs", read, ", ");
  print("write_gbs", write, ", ");
  print("nontemporal_write_gbs", stream, "}\n");
  std::free(a);
  std::free(b);
}
