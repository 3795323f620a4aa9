// HarnessLstm, HarnessGru and their gradients: an LSTM or a GRU over a whole
// sequence as one CPU op (fused_kernels.cc does the work).
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
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

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

}  // namespace

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
