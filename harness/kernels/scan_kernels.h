// The linear recurrence h_t = a_t h_{t-1} + b_t and its reversed-time gradient on
// raw row-major arrays, apart from TensorFlow's headers so that it is compiled for
// the machine's own vector units (harness/scan.py has the math).
#ifndef HARNESS_KERNELS_SCAN_KERNELS_H_
#define HARNESS_KERNELS_SCAN_KERNELS_H_

#include <complex>
#include <cstdint>
#include <functional>

namespace harness {

// Runs work(0) ... work(shards - 1), in parallel where it can: the op's intra-op thread pool
// (fused_ops.cc), so that the scan shares TensorFlow's threads rather than starting its own.
using RunShards = std::function<void(int shards, const std::function<void(int shard)>& work)>;

// a [time, batch, units], or [units] when `shared` (the same a at every step and
// row); b [time, batch, units]; h0 [batch, units] -> h [time, batch, units].
template <typename T>
void LinearScanForward(int64_t time, int64_t batch, int64_t units, bool shared, int threads, const RunShards& run,
                       const T* a, const T* b, const T* h0, T* h);

// From a, the forward pass's h, h0 and dL/dh [time, batch, units]:
//   g_t = dh_t + conj(a_{t+1}) g_{t+1},  db = g,  da_t = g_t conj(h_{t-1}),  dh0 = conj(a_1) g_1,
// da shaped as a (summed over steps and rows when `shared`).
template <typename T>
void LinearScanBackward(int64_t time, int64_t batch, int64_t units, bool shared, int threads, const RunShards& run,
                        const T* a, const T* h, const T* h0, const T* dh, T* da, T* db, T* dh0);

// minGRU's and minLSTM's gates folded into the scan (Feng et al. 2024; harness/linear_layers.py),
// float32, from the block's projection k [time, batch, gates * units] (gates z, h~ or f, i, h~):
//   minGRU:  a = sigmoid(-k_z),  b = sigmoid(k_z) g(k_h)
//   minLSTM: d = softplus(-k_f) - softplus(-k_i),  a = sigmoid(-d),  b = sigmoid(d) g(k_h)
// with g(x) = x + 0.5 for x >= 0, sigmoid(x) below. The coefficients are never written: forward
// reads k and writes h; backward recomputes them from k and writes dL/dk.
enum class Gates { kMinGru = 2, kMinLstm = 3 };

void GatedScanForward(Gates gates, int64_t time, int64_t batch, int64_t units, int threads, const RunShards& run,
                      const float* k, const float* h0, float* h);

// From k, the forward pass's h, h0 and dL/dh [time, batch, units]: dk shaped as k, dh0 [batch, units].
void GatedScanBackward(Gates gates, int64_t time, int64_t batch, int64_t units, int threads, const RunShards& run,
                       const float* k, const float* h, const float* h0, const float* dh, float* dk, float* dh0);

}  // namespace harness

// The plain single-threaded loop of the same float32 recurrence and gradient (per-step a), the
// floor `python -m harness.scan_bench` sets the kernels beside; called through ctypes.
extern "C" void HarnessPlainScanF32(int64_t time, int64_t columns, const float* a, const float* b, const float* h0,
                                    const float* dh, float* h, float* da, float* db, float* dh0);

#endif  // HARNESS_KERNELS_SCAN_KERNELS_H_
