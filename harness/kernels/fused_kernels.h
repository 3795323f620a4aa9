// The LSTM and GRU of fused_ops.cc on raw row-major float arrays, apart from
// TensorFlow's headers so that they can be compiled for the machine's own vector units.
#ifndef HARNESS_KERNELS_FUSED_KERNELS_H_
#define HARNESS_KERNELS_FUSED_KERNELS_H_

#include <cstdint>

namespace harness {

// x [time, batch, features], h0 and c0 [batch, units], kernel [features, 4 units],
// recurrent_kernel [units, 4 units], bias [4 units] (gates i, f, c, o) ->
// h and c [time, batch, units], gates [time, batch, 4 units] (activated).
void LstmForward(int64_t time, int64_t batch, int64_t features, int64_t units, int threads, const float* x,
                 const float* h0, const float* c0, const float* kernel, const float* recurrent_kernel,
                 const float* bias, float* h, float* c, float* gates);

// From the forward pass's inputs and outputs and dL/dh, dL/dc [time, batch, units]:
// dx, dh0, dc0, dkernel, drecurrent_kernel, dbias shaped as their variables;
// dz [time, batch, 4 units] is scratch (dL/dz of every step).
void LstmBackward(int64_t time, int64_t batch, int64_t features, int64_t units, int threads, const float* x,
                  const float* h0, const float* c0, const float* kernel, const float* recurrent_kernel,
                  const float* h, const float* c, const float* gates, const float* dh_in, const float* dc_in,
                  float* dz, float* dx, float* dh0, float* dc0, float* dkernel, float* drecurrent_kernel,
                  float* dbias);

// x [time, batch, features], h0 [batch, units], kernel [features, 3 units],
// recurrent_kernel [units, 3 units], bias [2, 3 units] (input and recurrent
// biases; gates z, r, h) -> h [time, batch, units] and gates [time, batch,
// 4 units]: z, r, the candidate and the candidate's recurrent term h_{t-1} U_h + b_rh.
void GruForward(int64_t time, int64_t batch, int64_t features, int64_t units, int threads, const float* x,
                const float* h0, const float* kernel, const float* recurrent_kernel, const float* bias, float* h,
                float* gates, float* recurrent_scratch);

// From the forward pass's inputs and outputs and dL/dh [time, batch, units]: dx, dh0,
// dkernel, drecurrent_kernel, dbias shaped as their variables; dx_gates and
// dh_gates [time, batch, 3 units] are scratch (dL/d(x W) and dL/d(h U) of every step).
void GruBackward(int64_t time, int64_t batch, int64_t features, int64_t units, int threads, const float* x,
                 const float* h0, const float* kernel, const float* recurrent_kernel, const float* h,
                 const float* gates, const float* dh_in, float* dx_gates, float* dh_gates, float* dx, float* dh0,
                 float* dkernel, float* drecurrent_kernel, float* dbias);

// Row-major c [m, n] = op(a) op(b), op = transpose where asked: oneDNN's GEMM on `threads` threads
// (TensorFlow's MatMul reaches a half to a third of its rate at the linear archs' shapes: BUILD.md).
void MatMul(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, int threads, const float* a,
            const float* b, float* c);

}  // namespace harness

#endif  // HARNESS_KERNELS_FUSED_KERNELS_H_
