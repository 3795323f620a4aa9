// HarnessLstm, HarnessGru and their gradients: an LSTM or a GRU over a whole
// sequence as one CPU op (fused_kernels.cc does the work); HarnessLinearScan and
// its gradient: the linear recurrence of the linear archs (scan_kernels.cc).
//
// Same math and weights as keras.layers.LSTM (Hochreiter & Schmidhuber 1997,
// with the forget gate of Gers et al. 2000), gates in Keras order i, f, c, o:
//
//   z_t = x_t W + h_{t-1} U + b,   i, f, o = sigmoid(z), g = tanh(z)
//   c_t = f * c_{t-1} + i * g,     h_t = o * tanh(c_t)
//
// and as keras.layers.GRU with reset_after=True (Cho et al. 2014, in cuDNN's
// form), gates z, r, h, bias [input; recurrent]:
//
//   z, r = sigmoid(x_t W + b_i + h_{t-1} U + b_r),  h~ = tanh(x_t W_h + b_ih + r * (h_{t-1} U_h + b_rh))
//   h_t = z * h_{t-1} + (1 - z) * h~
//
// The GEMMs run on as many threads as the op's intra-op pool has: one when the
// harness trains sub-batches side by side (`harness.runtime.configure_threads`).

#include "absl/strings/str_cat.h"
#include "fused_kernels.h"
#include "scan_kernels.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/platform/threadpool.h"

namespace {

using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using tensorflow::shape_inference::DimensionHandle;
using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

const float* Data(const Tensor& tensor) { return tensor.flat<float>().data(); }
float* Data(Tensor* tensor) { return tensor->flat<float>().data(); }

int IntraOpThreads(OpKernelContext* context) {
  return context->device()->tensorflow_cpu_worker_threads()->num_threads;
}

// The scan's shards on the op's intra-op pool, one block each (the caller's thread takes part).
harness::RunShards PoolShards(OpKernelContext* context) {
  return [context](int shards, const std::function<void(int)>& work) {
    context->device()->tensorflow_cpu_worker_threads()->workers->ParallelFor(
        shards,
        tsl::thread::ThreadPool::SchedulingParams(tsl::thread::ThreadPool::SchedulingStrategy::kFixedBlockSize,
                                                  std::nullopt, 1),
        [&work](int64_t begin, int64_t end) {
          for (int64_t shard = begin; shard < end; ++shard) work(static_cast<int>(shard));
        });
  };
}

// Checks what all four ops take first: x [T, B, I] (input 0), h0 [B, H] (input 1), and the kernel
// [I, gates * H] and recurrent_kernel [H, gates * H] at inputs `kernel_input` and `kernel_input + 1`.
absl::Status CheckSequenceAndWeights(OpKernelContext* context, int gates, int kernel_input) {
  const Tensor &x = context->input(0), &h0 = context->input(1);
  if (x.dims() != 3) return absl::InvalidArgumentError("x must be [time, batch, features]");
  if (h0.dims() != 2 || h0.dim_size(0) != x.dim_size(1)) return absl::InvalidArgumentError("h0 must be [batch, units]");
  const int64_t units = h0.dim_size(1);
  if (context->input(kernel_input).shape() != TensorShape({x.dim_size(2), gates * units}))
    return absl::InvalidArgumentError(absl::StrCat("kernel must be [features, ", gates, " * units]"));
  if (context->input(kernel_input + 1).shape() != TensorShape({units, gates * units}))
    return absl::InvalidArgumentError(absl::StrCat("recurrent_kernel must be [units, ", gates, " * units]"));
  return absl::OkStatus();
}

// The LSTM ops' inputs 0-4: x, h0, c0 (as h0), kernel, recurrent_kernel.
absl::Status CheckLstmShapes(OpKernelContext* context) {
  TF_RETURN_IF_ERROR(CheckSequenceAndWeights(context, 4, 3));
  if (context->input(2).shape() != context->input(1).shape())
    return absl::InvalidArgumentError("c0 must be [batch, units]");
  return absl::OkStatus();
}

class HarnessLstmOp : public tensorflow::OpKernel {
 public:
  using OpKernel::OpKernel;

  void Compute(OpKernelContext* context) override {
    OP_REQUIRES_OK(context, CheckLstmShapes(context));
    const Tensor &x = context->input(0), &h0 = context->input(1), &bias = context->input(5);
    const int64_t time = x.dim_size(0), batch = x.dim_size(1), units = h0.dim_size(1);
    OP_REQUIRES(context, bias.shape() == TensorShape({4 * units}),
                absl::InvalidArgumentError("bias must be [4 * units]"));
    Tensor *h, *c, *gates;
    OP_REQUIRES_OK(context, context->allocate_output(0, TensorShape({time, batch, units}), &h));
    OP_REQUIRES_OK(context, context->allocate_output(1, TensorShape({time, batch, units}), &c));
    OP_REQUIRES_OK(context, context->allocate_output(2, TensorShape({time, batch, 4 * units}), &gates));
    harness::LstmForward(time, batch, x.dim_size(2), units, IntraOpThreads(context), Data(x), Data(h0),
                         Data(context->input(2)), Data(context->input(3)), Data(context->input(4)), Data(bias),
                         Data(h), Data(c), Data(gates));
  }
};

class HarnessLstmGradOp : public tensorflow::OpKernel {
 public:
  using OpKernel::OpKernel;

  void Compute(OpKernelContext* context) override {
    OP_REQUIRES_OK(context, CheckLstmShapes(context));
    const Tensor &x = context->input(0), &h0 = context->input(1);
    const int64_t time = x.dim_size(0), batch = x.dim_size(1), units = h0.dim_size(1);
    const TensorShape states({time, batch, units});
    for (int i : {5, 6, 8, 9})
      OP_REQUIRES(context, context->input(i).shape() == states,
                  absl::InvalidArgumentError("h, c, dh and dc must be [time, batch, units]"));
    OP_REQUIRES(context, context->input(7).shape() == TensorShape({time, batch, 4 * units}),
                absl::InvalidArgumentError("gates must be [time, batch, 4 * units]"));
    Tensor* grads[6];
    for (int i = 0; i < 5; ++i) OP_REQUIRES_OK(context, context->allocate_output(i, context->input(i).shape(), &grads[i]));
    OP_REQUIRES_OK(context, context->allocate_output(5, TensorShape({4 * units}), &grads[5]));
    Tensor dz;
    OP_REQUIRES_OK(context, context->allocate_temp(tensorflow::DT_FLOAT, context->input(7).shape(), &dz));
    harness::LstmBackward(time, batch, x.dim_size(2), units, IntraOpThreads(context), Data(x), Data(h0),
                          Data(context->input(2)), Data(context->input(3)), Data(context->input(4)),
                          Data(context->input(5)), Data(context->input(6)), Data(context->input(7)),
                          Data(context->input(8)), Data(context->input(9)), Data(&dz), Data(grads[0]),
                          Data(grads[1]), Data(grads[2]), Data(grads[3]), Data(grads[4]), Data(grads[5]));
  }
};

// The GRU ops' inputs 0-3 (x, h0, kernel, recurrent_kernel) and, `with_bias`, 4: bias [2, 3H].
absl::Status CheckGruShapes(OpKernelContext* context, bool with_bias) {
  TF_RETURN_IF_ERROR(CheckSequenceAndWeights(context, 3, 2));
  if (with_bias && context->input(4).shape() != TensorShape({2, 3 * context->input(1).dim_size(1)}))
    return absl::InvalidArgumentError("bias must be [2, 3 * units]");
  return absl::OkStatus();
}

class HarnessGruOp : public tensorflow::OpKernel {
 public:
  using OpKernel::OpKernel;

  void Compute(OpKernelContext* context) override {
    OP_REQUIRES_OK(context, CheckGruShapes(context, /*with_bias=*/true));
    const Tensor &x = context->input(0), &h0 = context->input(1);
    const int64_t time = x.dim_size(0), batch = x.dim_size(1), units = h0.dim_size(1);
    Tensor *h, *gates, scratch;
    OP_REQUIRES_OK(context, context->allocate_output(0, TensorShape({time, batch, units}), &h));
    OP_REQUIRES_OK(context, context->allocate_output(1, TensorShape({time, batch, 4 * units}), &gates));
    OP_REQUIRES_OK(context, context->allocate_temp(tensorflow::DT_FLOAT, TensorShape({batch, 3 * units}), &scratch));
    harness::GruForward(time, batch, x.dim_size(2), units, IntraOpThreads(context), Data(x), Data(h0),
                        Data(context->input(2)), Data(context->input(3)), Data(context->input(4)), Data(h),
                        Data(gates), Data(&scratch));
  }
};

class HarnessGruGradOp : public tensorflow::OpKernel {
 public:
  using OpKernel::OpKernel;

  void Compute(OpKernelContext* context) override {
    OP_REQUIRES_OK(context, CheckGruShapes(context, /*with_bias=*/false));
    const Tensor &x = context->input(0), &h0 = context->input(1);
    const int64_t time = x.dim_size(0), batch = x.dim_size(1), units = h0.dim_size(1);
    OP_REQUIRES(context,
                context->input(4).shape() == TensorShape({time, batch, units}) &&
                    context->input(6).shape() == TensorShape({time, batch, units}),
                absl::InvalidArgumentError("h and dh must be [time, batch, units]"));
    OP_REQUIRES(context, context->input(5).shape() == TensorShape({time, batch, 4 * units}),
                absl::InvalidArgumentError("gates must be [time, batch, 4 * units]"));
    Tensor* grads[5];
    for (int i = 0; i < 4; ++i) OP_REQUIRES_OK(context, context->allocate_output(i, context->input(i).shape(), &grads[i]));
    OP_REQUIRES_OK(context, context->allocate_output(4, TensorShape({2, 3 * units}), &grads[4]));
    Tensor dx_gates, dh_gates;
    const TensorShape gate_shape({time, batch, 3 * units});
    OP_REQUIRES_OK(context, context->allocate_temp(tensorflow::DT_FLOAT, gate_shape, &dx_gates));
    OP_REQUIRES_OK(context, context->allocate_temp(tensorflow::DT_FLOAT, gate_shape, &dh_gates));
    harness::GruBackward(time, batch, x.dim_size(2), units, IntraOpThreads(context), Data(x), Data(h0),
                         Data(context->input(2)), Data(context->input(3)), Data(context->input(4)),
                         Data(context->input(5)), Data(context->input(6)), Data(&dx_gates), Data(&dh_gates),
                         Data(grads[0]), Data(grads[1]), Data(grads[2]), Data(grads[3]), Data(grads[4]));
  }
};

// Forward ops: `state_outputs` outputs [T, B, H] (h, and c for the LSTM), then the gates [T, B, 4H].
absl::Status ForwardShape(InferenceContext* c, int state_outputs) {
  ShapeHandle x, h0;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &x));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 2, &h0));
  DimensionHandle width;
  TF_RETURN_IF_ERROR(c->Multiply(c->Dim(h0, 1), 4, &width));
  for (int i = 0; i < state_outputs; ++i) c->set_output(i, c->MakeShape({c->Dim(x, 0), c->Dim(x, 1), c->Dim(h0, 1)}));
  c->set_output(state_outputs, c->MakeShape({c->Dim(x, 0), c->Dim(x, 1), width}));
  return absl::OkStatus();
}

absl::Status LstmShape(InferenceContext* c) { return ForwardShape(c, 2); }

absl::Status LstmGradShape(InferenceContext* c) {
  for (int i = 0; i < 5; ++i) c->set_output(i, c->input(i));
  ShapeHandle kernel;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(3), 2, &kernel));
  c->set_output(5, c->Vector(c->Dim(kernel, 1)));
  return absl::OkStatus();
}

absl::Status GruShape(InferenceContext* c) { return ForwardShape(c, 1); }

absl::Status GruGradShape(InferenceContext* c) {
  for (int i = 0; i < 4; ++i) c->set_output(i, c->input(i));
  ShapeHandle kernel;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 2, &kernel));
  c->set_output(4, c->MakeShape({2, c->Dim(kernel, 1)}));
  return absl::OkStatus();
}

// a [time, batch, units] or [units] (shared), b [time, batch, units], h0 [batch, units].
absl::Status CheckScanShapes(const Tensor& a, const Tensor& b, const Tensor& h0) {
  if (b.dims() != 3) return absl::InvalidArgumentError("b must be [time, batch, units]");
  if (h0.shape() != TensorShape({b.dim_size(1), b.dim_size(2)}))
    return absl::InvalidArgumentError("h0 must be [batch, units]");
  if (a.shape() != b.shape() && a.shape() != TensorShape({b.dim_size(2)}))
    return absl::InvalidArgumentError("a must be [time, batch, units] or [units]");
  return absl::OkStatus();
}

// The scan's element types: TensorFlow's complex64 is std::complex<float>, as in scan_kernels.h.
template <typename T>
class HarnessLinearScanOp : public tensorflow::OpKernel {
 public:
  using OpKernel::OpKernel;

  void Compute(OpKernelContext* context) override {
    const Tensor &a = context->input(0), &b = context->input(1), &h0 = context->input(2);
    OP_REQUIRES_OK(context, CheckScanShapes(a, b, h0));
    Tensor* h;
    OP_REQUIRES_OK(context, context->allocate_output(0, b.shape(), &h));
    harness::LinearScanForward<T>(b.dim_size(0), b.dim_size(1), b.dim_size(2), a.dims() == 1,
                                  IntraOpThreads(context), PoolShards(context), a.flat<T>().data(), b.flat<T>().data(),
                                  h0.flat<T>().data(), h->flat<T>().data());
  }
};

template <typename T>
class HarnessLinearScanGradOp : public tensorflow::OpKernel {
 public:
  using OpKernel::OpKernel;

  void Compute(OpKernelContext* context) override {
    const Tensor &a = context->input(0), &h = context->input(1), &h0 = context->input(2), &dh = context->input(3);
    OP_REQUIRES_OK(context, CheckScanShapes(a, h, h0));
    OP_REQUIRES(context, dh.shape() == h.shape(), absl::InvalidArgumentError("dh must be shaped as h"));
    Tensor *da, *db, *dh0;
    OP_REQUIRES_OK(context, context->allocate_output(0, a.shape(), &da));
    OP_REQUIRES_OK(context, context->allocate_output(1, h.shape(), &db));
    OP_REQUIRES_OK(context, context->allocate_output(2, h0.shape(), &dh0));
    harness::LinearScanBackward<T>(h.dim_size(0), h.dim_size(1), h.dim_size(2), a.dims() == 1,
                                   IntraOpThreads(context), PoolShards(context), a.flat<T>().data(), h.flat<T>().data(),
                                   h0.flat<T>().data(), dh.flat<T>().data(), da->flat<T>().data(),
                                   db->flat<T>().data(), dh0->flat<T>().data());
  }
};

// The gated scans' `cell` attribute -> the gates folded in (scan_kernels.h).
absl::Status GatesOf(tensorflow::OpKernelConstruction* context, harness::Gates* gates) {
  std::string cell;
  TF_RETURN_IF_ERROR(context->GetAttr("cell", &cell));
  *gates = cell == "mingru" ? harness::Gates::kMinGru : harness::Gates::kMinLstm;
  return absl::OkStatus();
}

// k [time, batch, gates * units], h0 [batch, units].
absl::Status CheckGatedShapes(const Tensor& k, const Tensor& h0, harness::Gates gates) {
  if (k.dims() != 3) return absl::InvalidArgumentError("k must be [time, batch, gates * units]");
  if (h0.dims() != 2 || h0.dim_size(0) != k.dim_size(1) ||
      k.dim_size(2) != static_cast<int64_t>(gates) * h0.dim_size(1))
    return absl::InvalidArgumentError(
        absl::StrCat("h0 must be [batch, units] and k [time, batch, ", static_cast<int>(gates), " * units]"));
  return absl::OkStatus();
}

class HarnessGatedScanOp : public tensorflow::OpKernel {
 public:
  explicit HarnessGatedScanOp(tensorflow::OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, GatesOf(context, &gates_));
  }

  void Compute(OpKernelContext* context) override {
    const Tensor &k = context->input(0), &h0 = context->input(1);
    OP_REQUIRES_OK(context, CheckGatedShapes(k, h0, gates_));
    Tensor* h;
    OP_REQUIRES_OK(context,
                   context->allocate_output(0, TensorShape({k.dim_size(0), k.dim_size(1), h0.dim_size(1)}), &h));
    harness::GatedScanForward(gates_, k.dim_size(0), k.dim_size(1), h0.dim_size(1), IntraOpThreads(context),
                              PoolShards(context), Data(k), Data(h0), Data(h));
  }

 private:
  harness::Gates gates_;
};

class HarnessGatedScanGradOp : public tensorflow::OpKernel {
 public:
  explicit HarnessGatedScanGradOp(tensorflow::OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, GatesOf(context, &gates_));
  }

  void Compute(OpKernelContext* context) override {
    const Tensor &k = context->input(0), &h = context->input(1), &h0 = context->input(2), &dh = context->input(3);
    OP_REQUIRES_OK(context, CheckGatedShapes(k, h0, gates_));
    const TensorShape states({k.dim_size(0), k.dim_size(1), h0.dim_size(1)});
    OP_REQUIRES(context, h.shape() == states && dh.shape() == states,
                absl::InvalidArgumentError("h and dh must be [time, batch, units]"));
    Tensor *dk, *dh0;
    OP_REQUIRES_OK(context, context->allocate_output(0, k.shape(), &dk));
    OP_REQUIRES_OK(context, context->allocate_output(1, h0.shape(), &dh0));
    harness::GatedScanBackward(gates_, k.dim_size(0), k.dim_size(1), h0.dim_size(1), IntraOpThreads(context),
                               PoolShards(context), Data(k), Data(h), Data(h0), Data(dh), Data(dk), Data(dh0));
  }

 private:
  harness::Gates gates_;
};

class HarnessMatMulOp : public tensorflow::OpKernel {
 public:
  explicit HarnessMatMulOp(tensorflow::OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("transpose_a", &transpose_a_));
    OP_REQUIRES_OK(context, context->GetAttr("transpose_b", &transpose_b_));
  }

  void Compute(OpKernelContext* context) override {
    const Tensor &a = context->input(0), &b = context->input(1);
    OP_REQUIRES(context, a.dims() == 2 && b.dims() == 2, absl::InvalidArgumentError("a and b must be matrices"));
    const int64_t m = a.dim_size(transpose_a_ ? 1 : 0), k = a.dim_size(transpose_a_ ? 0 : 1);
    const int64_t n = b.dim_size(transpose_b_ ? 0 : 1);
    OP_REQUIRES(context, b.dim_size(transpose_b_ ? 1 : 0) == k,
                absl::InvalidArgumentError(absl::StrCat("inner sizes differ: ", k, " and ",
                                                        b.dim_size(transpose_b_ ? 1 : 0))));
    Tensor* c;
    OP_REQUIRES_OK(context, context->allocate_output(0, TensorShape({m, n}), &c));
    harness::MatMul(transpose_a_, transpose_b_, m, n, k, IntraOpThreads(context), Data(a), Data(b), Data(c));
  }

 private:
  bool transpose_a_, transpose_b_;
};

}  // namespace

REGISTER_OP("HarnessMatMul")
    .Input("a: float")
    .Input("b: float")
    .Output("product: float")
    .Attr("transpose_a: bool = false")
    .Attr("transpose_b: bool = false")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle a, b;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 2, &a));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 2, &b));
      bool transpose_a, transpose_b;
      TF_RETURN_IF_ERROR(c->GetAttr("transpose_a", &transpose_a));
      TF_RETURN_IF_ERROR(c->GetAttr("transpose_b", &transpose_b));
      c->set_output(0, c->Matrix(c->Dim(a, transpose_a ? 1 : 0), c->Dim(b, transpose_b ? 0 : 1)));
      return absl::OkStatus();
    });

REGISTER_KERNEL_BUILDER(Name("HarnessMatMul").Device(tensorflow::DEVICE_CPU), HarnessMatMulOp);

REGISTER_OP("HarnessGatedScan")
    .Input("k: float")
    .Input("h0: float")
    .Output("h: float")
    .Attr("cell: {'mingru', 'minlstm'}")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle k, h0;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &k));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 2, &h0));
      c->set_output(0, c->MakeShape({c->Dim(k, 0), c->Dim(k, 1), c->Dim(h0, 1)}));
      return absl::OkStatus();
    });

REGISTER_OP("HarnessGatedScanGrad")
    .Input("k: float")
    .Input("h: float")
    .Input("h0: float")
    .Input("dh: float")
    .Output("dk: float")
    .Output("dh0: float")
    .Attr("cell: {'mingru', 'minlstm'}")
    .SetShapeFn([](InferenceContext* c) {
      c->set_output(0, c->input(0));
      c->set_output(1, c->input(2));
      return absl::OkStatus();
    });

REGISTER_KERNEL_BUILDER(Name("HarnessGatedScan").Device(tensorflow::DEVICE_CPU), HarnessGatedScanOp);
REGISTER_KERNEL_BUILDER(Name("HarnessGatedScanGrad").Device(tensorflow::DEVICE_CPU), HarnessGatedScanGradOp);

REGISTER_OP("HarnessLinearScan")
    .Input("a: T")
    .Input("b: T")
    .Input("h0: T")
    .Output("h: T")
    .Attr("T: {float, double, complex64}")
    .SetShapeFn([](InferenceContext* c) {
      c->set_output(0, c->input(1));
      return absl::OkStatus();
    });

REGISTER_OP("HarnessLinearScanGrad")
    .Input("a: T")
    .Input("h: T")
    .Input("h0: T")
    .Input("dh: T")
    .Output("da: T")
    .Output("db: T")
    .Output("dh0: T")
    .Attr("T: {float, double, complex64}")
    .SetShapeFn([](InferenceContext* c) {
      for (int i = 0; i < 3; ++i) c->set_output(i, c->input(i));
      return absl::OkStatus();
    });

#define HARNESS_REGISTER_SCAN(T)                                                                       \
  REGISTER_KERNEL_BUILDER(Name("HarnessLinearScan").Device(tensorflow::DEVICE_CPU).TypeConstraint<T>("T"), \
                          HarnessLinearScanOp<T>);                                                     \
  REGISTER_KERNEL_BUILDER(                                                                             \
      Name("HarnessLinearScanGrad").Device(tensorflow::DEVICE_CPU).TypeConstraint<T>("T"),            \
      HarnessLinearScanGradOp<T>);
HARNESS_REGISTER_SCAN(float)
HARNESS_REGISTER_SCAN(double)
HARNESS_REGISTER_SCAN(tensorflow::complex64)
#undef HARNESS_REGISTER_SCAN

REGISTER_OP("HarnessGru")
    .Input("x: float")
    .Input("h0: float")
    .Input("kernel: float")
    .Input("recurrent_kernel: float")
    .Input("bias: float")
    .Output("h: float")
    .Output("gates: float")
    .SetShapeFn(GruShape);

REGISTER_OP("HarnessGruGrad")
    .Input("x: float")
    .Input("h0: float")
    .Input("kernel: float")
    .Input("recurrent_kernel: float")
    .Input("h: float")
    .Input("gates: float")
    .Input("dh: float")
    .Output("dx: float")
    .Output("dh0: float")
    .Output("dkernel: float")
    .Output("drecurrent_kernel: float")
    .Output("dbias: float")
    .SetShapeFn(GruGradShape);

REGISTER_KERNEL_BUILDER(Name("HarnessGru").Device(tensorflow::DEVICE_CPU), HarnessGruOp);
REGISTER_KERNEL_BUILDER(Name("HarnessGruGrad").Device(tensorflow::DEVICE_CPU), HarnessGruGradOp);

REGISTER_OP("HarnessLstm")
    .Input("x: float")
    .Input("h0: float")
    .Input("c0: float")
    .Input("kernel: float")
    .Input("recurrent_kernel: float")
    .Input("bias: float")
    .Output("h: float")
    .Output("c: float")
    .Output("gates: float")
    .SetShapeFn(LstmShape);

REGISTER_OP("HarnessLstmGrad")
    .Input("x: float")
    .Input("h0: float")
    .Input("c0: float")
    .Input("kernel: float")
    .Input("recurrent_kernel: float")
    .Input("h: float")
    .Input("c: float")
    .Input("gates: float")
    .Input("dh: float")
    .Input("dc: float")
    .Output("dx: float")
    .Output("dh0: float")
    .Output("dc0: float")
    .Output("dkernel: float")
    .Output("drecurrent_kernel: float")
    .Output("dbias: float")
    .SetShapeFn(LstmGradShape);

REGISTER_KERNEL_BUILDER(Name("HarnessLstm").Device(tensorflow::DEVICE_CPU), HarnessLstmOp);
REGISTER_KERNEL_BUILDER(Name("HarnessLstmGrad").Device(tensorflow::DEVICE_CPU), HarnessLstmGradOp);
