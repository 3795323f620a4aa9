// The linear scan h_t = a_t h_{t-1} + b_t (Martin & Cundy 2018; the recurrence of
// minGRU, minLSTM and the LRU) and its exact reversed-time gradient.
//
// On a CPU the scan is bound by memory, not arithmetic: forward reads a and b and
// writes h once (3 passes), backward reads a, h and dL/dh and writes da and db
// (5 passes). So each thread owns a contiguous range of the [batch * units]
// columns and walks it through time, step after step: every pass streams through
// memory in order, the state of its columns stays in L1/L2, and the inner loop
// over units vectorizes. Columns, not time, are split between threads: a scan
// split over time (chunks, then the carry) reads and writes everything twice,
// and even batch 16 x 128 units gives each of 16 threads 128 columns.

#include "scan_kernels.h"

#include <algorithm>
#include <cmath>
#include <vector>

// glibc's vector math library has SIMD expf and log1pf-free forms below (as in fused_kernels.cc):
// declared here so that the gate loops vectorize without -ffast-math.
extern "C" {
#pragma omp declare simd notinbranch
float expf(float);
#pragma omp declare simd notinbranch
float logf(float);
}

namespace harness {
namespace {

// Products and conjugates without std::complex's C99 Annex G checks for inf and NaN
// (which keep GCC from vectorizing): the plain formulas, as for real numbers.
inline float Conj(float v) { return v; }
inline double Conj(double v) { return v; }
inline std::complex<float> Conj(std::complex<float> v) { return {v.real(), -v.imag()}; }
inline float Mul(float x, float y) { return x * y; }
inline double Mul(double x, double y) { return x * y; }
inline std::complex<float> Mul(std::complex<float> x, std::complex<float> y) {
  return {x.real() * y.real() - x.imag() * y.imag(), x.real() * y.imag() + x.imag() * y.real()};
}

// Below this many elements (time x batch x units) one thread does all: handing work to the pool costs ~10 us.
constexpr int64_t kMinParallelElements = 1 << 16;

// The columns [begin, end) of a [batch * units] slab, cut at row ends: `visit(column, unit, count)`
// for each run of `count` columns from `column` whose units start at `unit`.
template <typename Visit>
void ForEachRun(int64_t begin, int64_t end, int64_t units, Visit visit) {
  for (int64_t column = begin; column < end;) {
    const int64_t unit = column % units;
    const int64_t count = std::min(end - column, units - unit);
    visit(column, unit, count);
    column += count;
  }
}

// Splits [0, columns) into `threads` ranges (multiples of 16 columns, a cache line of floats)
// and runs `work(thread, begin, end)` on each, in parallel where the scan is large enough.
template <typename Work>
void ParallelColumns(int64_t time, int64_t columns, int threads, const RunShards& run, Work work) {
  if (time * columns < kMinParallelElements) threads = 1;
  threads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, columns / 16)));
  const int64_t share = (columns + threads - 1) / threads;
  const int64_t step = (share + 15) / 16 * 16;
  if (threads == 1) {
    work(0, 0, columns);
    return;
  }
  run(threads, [&](int thread) {
    const int64_t begin = std::min(columns, thread * step), end = std::min(columns, begin + step);
    if (begin < end) work(thread, begin, end);
  });
}

}  // namespace

template <typename T>
void LinearScanForward(int64_t time, int64_t batch, int64_t units, bool shared, int threads, const RunShards& run,
                       const T* a, const T* b, const T* h0, T* h) {
  const int64_t columns = batch * units;
  if (time == 0 || columns == 0) return;
  ParallelColumns(time, columns, threads, run, [&](int, int64_t begin, int64_t end) {
    for (int64_t t = 0; t < time; ++t) {
      const T* h_prev = t ? h + (t - 1) * columns : h0;
      const int64_t offset = t * columns;
      ForEachRun(begin, end, units, [&](int64_t column, int64_t unit, int64_t count) {
        const T* at = shared ? a + unit : a + offset + column;
        const T* bt = b + offset + column;
        const T* hp = h_prev + column;
        T* ht = h + offset + column;
#pragma omp simd
        for (int64_t k = 0; k < count; ++k) ht[k] = Mul(at[k], hp[k]) + bt[k];
      });
    }
  });
}

template <typename T>
void LinearScanBackward(int64_t time, int64_t batch, int64_t units, bool shared, int threads, const RunShards& run,
                        const T* a, const T* h, const T* h0, const T* dh, T* da, T* db, T* dh0) {
  const int64_t columns = batch * units;
  if (shared) std::fill(da, da + units, T(0));
  if (columns == 0) return;
  if (time == 0) {
    std::fill(dh0, dh0 + columns, T(0));
    return;
  }
  const int max_threads = std::max(1, threads);
  // Shared a: each thread sums its own da over steps and rows; the sums are added after.
  std::vector<T> partial_da(shared ? static_cast<size_t>(max_threads) * units : 0, T(0));
  ParallelColumns(time, columns, threads, run, [&](int thread, int64_t begin, int64_t end) {
    T* da_sum = shared ? partial_da.data() + thread * units : nullptr;
    for (int64_t t = time - 1; t >= 0; --t) {
      const int64_t offset = t * columns;
      const T* h_prev = t ? h + (t - 1) * columns : h0;
      ForEachRun(begin, end, units, [&](int64_t column, int64_t unit, int64_t count) {
        const T* upstream = dh + offset + column;
        const T* hp = h_prev + column;
        T* g = db + offset + column;
        if (t == time - 1) {
#pragma omp simd
          for (int64_t k = 0; k < count; ++k) g[k] = upstream[k];
        } else {
          const T* a_next = shared ? a + unit : a + offset + columns + column;
          const T* g_next = g + columns;
#pragma omp simd
          for (int64_t k = 0; k < count; ++k) g[k] = upstream[k] + Mul(Conj(a_next[k]), g_next[k]);
        }
        if (shared) {
          T* sum = da_sum + unit;
#pragma omp simd
          for (int64_t k = 0; k < count; ++k) sum[k] += Mul(g[k], Conj(hp[k]));
        } else {
          T* da_t = da + offset + column;
#pragma omp simd
          for (int64_t k = 0; k < count; ++k) da_t[k] = Mul(g[k], Conj(hp[k]));
        }
      });
    }
    ForEachRun(begin, end, units, [&](int64_t column, int64_t unit, int64_t count) {
      const T* a0 = shared ? a + unit : a + column;
      const T* g0 = db + column;
#pragma omp simd
      for (int64_t k = 0; k < count; ++k) dh0[column + k] = Mul(Conj(a0[k]), g0[k]);
    });
  });
  if (shared)
    for (int thread = 0; thread < max_threads; ++thread)
      for (int64_t u = 0; u < units; ++u) da[u] += partial_da[thread * units + u];
}

#define HARNESS_INSTANTIATE_SCAN(T)                                                                       \
  template void LinearScanForward<T>(int64_t, int64_t, int64_t, bool, int, const RunShards&, const T*, const T*, \
                                     const T*, T*);                                                              \
  template void LinearScanBackward<T>(int64_t, int64_t, int64_t, bool, int, const RunShards&, const T*, const T*, \
                                      const T*, const T*, T*, T*, T*);
HARNESS_INSTANTIATE_SCAN(float)
HARNESS_INSTANTIATE_SCAN(double)
HARNESS_INSTANTIATE_SCAN(std::complex<float>)
#undef HARNESS_INSTANTIATE_SCAN

namespace {

inline float Sigmoid(float v) { return 1.0f / (1.0f + expf(-v)); }
// softplus(x) = log(1 + e^x), as max(x, 0) + log(1 + e^-|x|) so that it neither overflows nor loses x.
inline float Softplus(float v) { return std::max(v, 0.0f) + logf(1.0f + expf(-std::fabs(v))); }
// minGRU's candidate activation g and its derivative.
inline float Candidate(float v) { return v >= 0.0f ? v + 0.5f : Sigmoid(v); }
inline float CandidateSlope(float v) {
  const float s = Sigmoid(v);
  return v >= 0.0f ? 1.0f : s * (1.0f - s);
}

// The recurrence's coefficients at one position from its gate pre-activations (Gates' comment).
struct Coefficients {
  float a, b;
};

template <Gates kGates>
inline Coefficients Coefficient(const float* k, int64_t units, int64_t i) {
  if (kGates == Gates::kMinGru) {
    // a = sigmoid(-k_z), not 1 - z: it rounds to 0 only for k_z > 88, as in MinGRU.
    return {Sigmoid(-k[i]), Sigmoid(k[i]) * Candidate(k[units + i])};
  }
  const float d = Softplus(-k[i]) - Softplus(-k[units + i]);
  return {Sigmoid(-d), Sigmoid(d) * Candidate(k[2 * units + i])};
}

// dL/dk at one position from g = dL/dh_t (the scan's reversed state) and h_{t-1}:
//   dL/da = g h_{t-1}, dL/db = g, through a(k) and b(k).
template <Gates kGates>
inline void CoefficientGradient(const float* k, int64_t units, int64_t i, float g, float h_prev, float* dk) {
  if (kGates == Gates::kMinGru) {
    // a = 1 - z, b = z c: dL/dk_z = z (1 - z) g (c - h_{t-1}), dL/dk_h = g z c'.
    const float z = Sigmoid(k[i]), kh = k[units + i];
    dk[i] = z * (1.0f - z) * g * (Candidate(kh) - h_prev);
    dk[units + i] = g * z * CandidateSlope(kh);
    return;
  }
  // a = f' = sigmoid(-d), b = i' c with i' = 1 - f': dL/dd = f' i' g (c - h_{t-1});
  // dd/dk_f = -sigmoid(-k_f), dd/dk_i = sigmoid(-k_i).
  const float kf = k[i], ki = k[units + i], kh = k[2 * units + i];
  const float d = Softplus(-kf) - Softplus(-ki);
  const float forget = Sigmoid(-d), input = Sigmoid(d);
  const float d_gradient = forget * input * g * (Candidate(kh) - h_prev);
  dk[i] = -d_gradient * Sigmoid(-kf);
  dk[units + i] = d_gradient * Sigmoid(-ki);
  dk[2 * units + i] = g * input * CandidateSlope(kh);
}

// Per row n of a step, k's row is n * gates * units wide; the runs of ForEachRun give (column, unit, count).
template <Gates kGates>
void GatedForward(int64_t time, int64_t batch, int64_t units, int threads, const RunShards& run, const float* k,
                  const float* h0, float* h) {
  const int64_t columns = batch * units, width = static_cast<int64_t>(kGates) * units;
  ParallelColumns(time, columns, threads, run, [&](int, int64_t begin, int64_t end) {
    for (int64_t t = 0; t < time; ++t) {
      const float* h_prev = t ? h + (t - 1) * columns : h0;
      ForEachRun(begin, end, units, [&](int64_t column, int64_t unit, int64_t count) {
        const float* kn = k + t * batch * width + (column / units) * width + unit;
        const float* hp = h_prev + column;
        float* ht = h + t * columns + column;
#pragma omp simd
        for (int64_t i = 0; i < count; ++i) {
          const Coefficients c = Coefficient<kGates>(kn, units, i);
          ht[i] = c.a * hp[i] + c.b;
        }
      });
    }
  });
}

template <Gates kGates>
void GatedBackward(int64_t time, int64_t batch, int64_t units, int threads, const RunShards& run, const float* k,
                   const float* h, const float* h0, const float* dh, float* dk, float* dh0) {
  const int64_t columns = batch * units, width = static_cast<int64_t>(kGates) * units;
  ParallelColumns(time, columns, threads, run, [&](int, int64_t begin, int64_t end) {
    // g_{t+1} of each column, carried from step to step: dh0 holds it (dh0 = a_1 g_1 at the end).
    ForEachRun(begin, end, units, [&](int64_t column, int64_t, int64_t count) {
      std::fill(dh0 + column, dh0 + column + count, 0.0f);
    });
    for (int64_t t = time - 1; t >= 0; --t) {
      const float* h_prev = t ? h + (t - 1) * columns : h0;
      ForEachRun(begin, end, units, [&](int64_t column, int64_t unit, int64_t count) {
        const int64_t row_offset = t * batch * width + (column / units) * width + unit;
        const float* kn = k + row_offset;
        const float* k_next = t + 1 < time ? kn + batch * width : nullptr;
        const float* upstream = dh + t * columns + column;
        const float* hp = h_prev + column;
        float* carry = dh0 + column;
        float* dkn = dk + row_offset;
#pragma omp simd
        for (int64_t i = 0; i < count; ++i) {
          // g_t = dh_t + a_{t+1} g_{t+1}; the carry holds g_{t+1} (0 at t = T - 1).
          const float a_next = k_next ? Coefficient<kGates>(k_next, units, i).a : 0.0f;
          const float g = upstream[i] + a_next * carry[i];
          CoefficientGradient<kGates>(kn, units, i, g, hp[i], dkn);
          carry[i] = g;
        }
      });
    }
    ForEachRun(begin, end, units, [&](int64_t column, int64_t unit, int64_t count) {
      // dL/dh0 = a_1 g_1.
      for (int64_t n = column / units, i = 0; i < count; ++i)
        dh0[column + i] *= Coefficient<kGates>(k + n * width + unit, units, i).a;
    });
  });
}

}  // namespace

void GatedScanForward(Gates gates, int64_t time, int64_t batch, int64_t units, int threads, const RunShards& run,
                      const float* k, const float* h0, float* h) {
  if (time == 0 || batch * units == 0) return;
  if (gates == Gates::kMinGru)
    GatedForward<Gates::kMinGru>(time, batch, units, threads, run, k, h0, h);
  else
    GatedForward<Gates::kMinLstm>(time, batch, units, threads, run, k, h0, h);
}

void GatedScanBackward(Gates gates, int64_t time, int64_t batch, int64_t units, int threads, const RunShards& run,
                       const float* k, const float* h, const float* h0, const float* dh, float* dk, float* dh0) {
  if (batch * units == 0) return;
  if (time == 0) {
    std::fill(dh0, dh0 + batch * units, 0.0f);
    return;
  }
  if (gates == Gates::kMinGru)
    GatedBackward<Gates::kMinGru>(time, batch, units, threads, run, k, h, h0, dh, dk, dh0);
  else
    GatedBackward<Gates::kMinLstm>(time, batch, units, threads, run, k, h, h0, dh, dk, dh0);
}

}  // namespace harness

extern "C" void HarnessPlainScanF32(int64_t time, int64_t columns, const float* a, const float* b, const float* h0,
                                    const float* dh, float* h, float* da, float* db, float* dh0) {
  for (int64_t t = 0; t < time; ++t)
    for (int64_t j = 0; j < columns; ++j)
      h[t * columns + j] = a[t * columns + j] * (t ? h[(t - 1) * columns + j] : h0[j]) + b[t * columns + j];
  for (int64_t t = time - 1; t >= 0; --t)
    for (int64_t j = 0; j < columns; ++j) {
      const int64_t i = t * columns + j;
      db[i] = dh[i] + (t + 1 < time ? a[i + columns] * db[i + columns] : 0.0f);
      da[i] = db[i] * (t ? h[i - columns] : h0[j]);
    }
  for (int64_t j = 0; j < columns && time > 0; ++j) dh0[j] = a[j] * db[j];
}
