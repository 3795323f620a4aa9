// An LSTM and a GRU over a whole sequence, their matrix products in oneDNN's
// GEMM and their elementwise passes fused per step (fused_ops.cc has the math).
//
// The work is laid out as in oneDNN's RNN primitive (and PyTorch's CPU LSTM):
// the input products of all T steps are one GEMM [T*B, I] x [I, gates * H],
// only the recurrent product h_{t-1} U runs step by step, and in the backward
// pass each weight gradient is one GEMM over all steps. TensorFlow's BlockLSTM
// instead multiplies [x_t, h_{t-1}] by [W; U] at every step and sums the weight
// gradients step by step, in Eigen's small-matrix path; Keras's loop runs ~15
// ops per step forward and ~30 backward.

#include "fused_kernels.h"

#include <omp.h>

#include <cmath>
#include <cstring>

#include "oneapi/dnnl/dnnl.h"

// glibc's vector math library (libmvec) has SIMD expf (and from glibc 2.35
// tanhf), which make the gate loops vectorize; math.h declares them only under
// -ffast-math, whose assumptions (no inf, no NaN) this file does not take.
extern "C" {
#pragma omp declare simd notinbranch
float expf(float);
#if defined(__GLIBC_PREREQ) && __GLIBC_PREREQ(2, 35)
#pragma omp declare simd notinbranch
#endif
float tanhf(float);
}

namespace harness {
namespace {

// Row-major C[m, n] = op(A) op(B) + beta * C.
void Gemm(char trans_a, char trans_b, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
          int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {  // An empty product (no features): oneDNN refuses leading dimensions of 0.
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
    return;
  }
  dnnl_sgemm(trans_a, trans_b, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
}

inline float Sigmoid(float v) { return 1.0f / (1.0f + expf(-v)); }

// The gradients of the two products, each one GEMM over all steps: dkernel = x^T dxg,
// drecurrent_kernel = [h0; h_0 .. h_{T-2}]^T dhg, dx = dxg kernel^T, from dxg and
// dhg [time * batch, width], dL/d(x_t W) and dL/d(h_{t-1} U) of every step.
void ProductGradients(int64_t time, int64_t batch, int64_t features, int64_t units, int64_t width, const float* x,
                      const float* h0, const float* h, const float* kernel, const float* dxg, const float* dhg,
                      float* dx, float* dkernel, float* drecurrent_kernel) {
  Gemm('T', 'N', features, width, time * batch, x, features, dxg, width, 0.0f, dkernel, width);
  Gemm('T', 'N', units, width, batch, h0, units, dhg, width, 0.0f, drecurrent_kernel, width);
  if (time > 1)
    Gemm('T', 'N', units, width, (time - 1) * batch, h, units, dhg + batch * width, width, 1.0f, drecurrent_kernel,
         width);
  Gemm('N', 'T', time * batch, features, width, dxg, width, kernel, width, 0.0f, dx, features);
}

}  // namespace

void MatMul(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, int threads, const float* a,
            const float* b, float* c) {
  omp_set_num_threads(threads);
  Gemm(transpose_a ? 'T' : 'N', transpose_b ? 'T' : 'N', m, n, k, a, transpose_a ? m : k, b, transpose_b ? k : n,
       0.0f, c, n);
}

void LstmForward(int64_t time, int64_t batch, int64_t features, int64_t units, int threads, const float* x,
                 const float* h0, const float* c0, const float* kernel, const float* recurrent_kernel,
                 const float* bias, float* h, float* c, float* gates) {
  if (time == 0 || batch == 0) return;
  // OpenMP's thread count belongs to the calling thread: each sub-batch's op sets its own.
  omp_set_num_threads(threads);
  const int64_t width = 4 * units;
  // Every step's input product at once: gates[t, n, :] = x[t, n, :] W.
  Gemm('N', 'N', time * batch, width, features, x, features, kernel, width, 0.0f, gates, width);
  for (int64_t t = 0; t < time; ++t) {
    const float* h_prev = t ? h + (t - 1) * batch * units : h0;
    const float* c_prev = t ? c + (t - 1) * batch * units : c0;
    float* z = gates + t * batch * width;
    Gemm('N', 'N', batch, width, units, h_prev, units, recurrent_kernel, width, 1.0f, z, width);
    for (int64_t n = 0; n < batch; ++n) {
      float* zi = z + n * width;
      float* zf = zi + units;
      float* zg = zf + units;
      float* zo = zg + units;
      const float* cp = c_prev + n * units;
      float* cn = c + (t * batch + n) * units;
      float* hn = h + (t * batch + n) * units;
#pragma omp simd
      for (int64_t k = 0; k < units; ++k) {
        const float i = Sigmoid(zi[k] + bias[k]);
        const float f = Sigmoid(zf[k] + bias[units + k]);
        const float g = tanhf(zg[k] + bias[2 * units + k]);
        const float o = Sigmoid(zo[k] + bias[3 * units + k]);
        const float cell = f * cp[k] + i * g;
        zi[k] = i;
        zf[k] = f;
        zg[k] = g;
        zo[k] = o;
        cn[k] = cell;
        hn[k] = o * tanhf(cell);
      }
    }
  }
}

void LstmBackward(int64_t time, int64_t batch, int64_t features, int64_t units, int threads, const float* x,
                  const float* h0, const float* c0, const float* kernel, const float* recurrent_kernel,
                  const float* h, const float* c, const float* gates, const float* dh_in, const float* dc_in,
                  float* dz, float* dx, float* dh0, float* dc0, float* dkernel, float* drecurrent_kernel,
                  float* dbias) {
  const int64_t width = 4 * units;
  // dh0 holds dL/dh_t from the later steps' recurrent products, dc0 dL/dc_t carried
  // back through the forget gates; both end as the initial state's gradients.
  std::memset(dh0, 0, sizeof(float) * batch * units);
  std::memset(dc0, 0, sizeof(float) * batch * units);
  std::memset(dbias, 0, sizeof(float) * width);
  if (time == 0 || batch == 0) {
    std::memset(dkernel, 0, sizeof(float) * features * width);
    std::memset(drecurrent_kernel, 0, sizeof(float) * units * width);
    return;
  }
  omp_set_num_threads(threads);
  for (int64_t t = time - 1; t >= 0; --t) {
    const float* c_prev = t ? c + (t - 1) * batch * units : c0;
    for (int64_t n = 0; n < batch; ++n) {
      const int64_t row = (t * batch + n) * units;
      const float* gi = gates + (t * batch + n) * width;
      const float* gf = gi + units;
      const float* gg = gf + units;
      const float* go = gg + units;
      float* di = dz + (t * batch + n) * width;
      float* df = di + units;
      float* dg = df + units;
      float* d_o = dg + units;
      const float* cn = c + row;
      const float* cp = c_prev + n * units;
      float* dhn = dh0 + n * units;
      float* dcn = dc0 + n * units;
#pragma omp simd
      for (int64_t k = 0; k < units; ++k) {
        const float i = gi[k], f = gf[k], g = gg[k], o = go[k];
        const float tanh_c = tanhf(cn[k]);
        const float dh_t = dh_in[row + k] + dhn[k];
        const float dc_t = dc_in[row + k] + dcn[k] + dh_t * o * (1.0f - tanh_c * tanh_c);
        di[k] = dc_t * g * i * (1.0f - i);
        df[k] = dc_t * cp[k] * f * (1.0f - f);
        dg[k] = dc_t * i * (1.0f - g * g);
        d_o[k] = dh_t * tanh_c * o * (1.0f - o);
        dcn[k] = dc_t * f;
      }
    }
    // dL/dh_{t-1} = dz_t U^T.
    Gemm('N', 'T', batch, units, width, dz + t * batch * width, width, recurrent_kernel, width, 0.0f, dh0, units);
  }
  ProductGradients(time, batch, features, units, width, x, h0, h, kernel, dz, dz, dx, dkernel, drecurrent_kernel);
  for (int64_t r = 0; r < time * batch; ++r) {
    const float* dz_r = dz + r * width;
#pragma omp simd
    for (int64_t k = 0; k < width; ++k) dbias[k] += dz_r[k];
  }
}

void GruForward(int64_t time, int64_t batch, int64_t features, int64_t units, int threads, const float* x,
                const float* h0, const float* kernel, const float* recurrent_kernel, const float* bias, float* h,
                float* gates, float* recurrent_scratch) {
  if (time == 0 || batch == 0) return;
  omp_set_num_threads(threads);
  const int64_t width = 3 * units, stride = 4 * units;
  const float* input_bias = bias;
  const float* recurrent_bias = bias + width;
  // Every step's input product at once, into the first three quarters of each gates row.
  Gemm('N', 'N', time * batch, width, features, x, features, kernel, width, 0.0f, gates, stride);
  for (int64_t t = 0; t < time; ++t) {
    const float* h_prev = t ? h + (t - 1) * batch * units : h0;
    Gemm('N', 'N', batch, width, units, h_prev, units, recurrent_kernel, width, 0.0f, recurrent_scratch, width);
    for (int64_t n = 0; n < batch; ++n) {
      float* zg = gates + (t * batch + n) * stride;  // x W: z, r, candidate; then the candidate's recurrent term.
      float* rg = zg + units;
      float* cg = rg + units;
      float* recurrent_term = cg + units;
      const float* rz = recurrent_scratch + n * width;  // h_{t-1} U: z, r, candidate.
      const float* rr = rz + units;
      const float* rc = rr + units;
      const float* hp = h_prev + n * units;
      float* hn = h + (t * batch + n) * units;
#pragma omp simd
      for (int64_t k = 0; k < units; ++k) {
        const float z = Sigmoid(zg[k] + input_bias[k] + rz[k] + recurrent_bias[k]);
        const float r = Sigmoid(rg[k] + input_bias[units + k] + rr[k] + recurrent_bias[units + k]);
        const float term = rc[k] + recurrent_bias[2 * units + k];
        const float candidate = tanhf(cg[k] + input_bias[2 * units + k] + r * term);
        zg[k] = z;
        rg[k] = r;
        cg[k] = candidate;
        recurrent_term[k] = term;
        hn[k] = z * hp[k] + (1.0f - z) * candidate;
      }
    }
  }
}

void GruBackward(int64_t time, int64_t batch, int64_t features, int64_t units, int threads, const float* x,
                 const float* h0, const float* kernel, const float* recurrent_kernel, const float* h,
                 const float* gates, const float* dh_in, float* dx_gates, float* dh_gates, float* dx, float* dh0,
                 float* dkernel, float* drecurrent_kernel, float* dbias) {
  const int64_t width = 3 * units, stride = 4 * units;
  // dh0 holds dL/dh_t from the later steps and ends as the initial state's gradient.
  std::memset(dh0, 0, sizeof(float) * batch * units);
  std::memset(dbias, 0, sizeof(float) * 2 * width);
  if (time == 0 || batch == 0) {
    std::memset(dkernel, 0, sizeof(float) * features * width);
    std::memset(drecurrent_kernel, 0, sizeof(float) * units * width);
    return;
  }
  omp_set_num_threads(threads);
  for (int64_t t = time - 1; t >= 0; --t) {
    const float* h_prev = t ? h + (t - 1) * batch * units : h0;
    for (int64_t n = 0; n < batch; ++n) {
      const int64_t row = (t * batch + n) * units;
      const float* zg = gates + (t * batch + n) * stride;
      const float* rg = zg + units;
      const float* cg = rg + units;
      const float* recurrent_term = cg + units;
      float* dxz = dx_gates + (t * batch + n) * width;
      float* dxr = dxz + units;
      float* dxc = dxr + units;
      float* dhz = dh_gates + (t * batch + n) * width;
      float* dhr = dhz + units;
      float* dhc = dhr + units;
      const float* hp = h_prev + n * units;
      float* dhn = dh0 + n * units;
#pragma omp simd
      for (int64_t k = 0; k < units; ++k) {
        const float z = zg[k], r = rg[k], candidate = cg[k];
        const float dh_t = dh_in[row + k] + dhn[k];
        const float dcandidate = dh_t * (1.0f - z) * (1.0f - candidate * candidate);
        const float dz = dh_t * (hp[k] - candidate) * z * (1.0f - z);
        const float dr = dcandidate * recurrent_term[k] * r * (1.0f - r);
        dxz[k] = dz;
        dxr[k] = dr;
        dxc[k] = dcandidate;
        dhz[k] = dz;
        dhr[k] = dr;
        dhc[k] = dcandidate * r;
        dhn[k] = dh_t * z;  // The direct path h_t = z h_{t-1} + ...; the products through U are added next.
      }
    }
    // dL/dh_{t-1} += (dL/d(h_{t-1} U)) U^T.
    Gemm('N', 'T', batch, units, width, dh_gates + t * batch * width, width, recurrent_kernel, width, 1.0f, dh0,
         units);
  }
  ProductGradients(time, batch, features, units, width, x, h0, h, kernel, dx_gates, dh_gates, dx, dkernel,
                   drecurrent_kernel);
  for (int64_t r = 0; r < time * batch; ++r) {
    const float* dxg = dx_gates + r * width;
    const float* dhg = dh_gates + r * width;
#pragma omp simd
    for (int64_t k = 0; k < width; ++k) {
      dbias[k] += dxg[k];
      dbias[width + k] += dhg[k];
    }
  }
}

}  // namespace harness
