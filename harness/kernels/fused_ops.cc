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

// Checks the inputs both ops share: x [T, B, I], h0 and c0 [B, H], kernel [I, 4H], recurrent_kernel [H, 4H].
absl::Status CheckLstmShapes(OpKernelContext* context) {
  const Tensor &x = context->input(0), &h0 = context->input(1), &c0 = context->input(2);
  const Tensor &kernel = context->input(3), &recurrent_kernel = context->input(4);
  if (x.dims() != 3) return absl::InvalidArgumentError("x must be [time, batch, features]");
  if (h0.dims() != 2 || h0.dim_size(0) != x.dim_size(1)) return absl::InvalidArgumentError("h0 must be [batch, units]");
  if (c0.shape() != h0.shape()) return absl::InvalidArgumentError("c0 must be [batch, units]");
  const int64_t units = h0.dim_size(1);
  if (kernel.shape() != TensorShape({x.dim_size(2), 4 * units}))
    return absl::InvalidArgumentError("kernel must be [features, 4 * units]");
  if (recurrent_kernel.shape() != TensorShape({units, 4 * units}))
    return absl::InvalidArgumentError("recurrent_kernel must be [units, 4 * units]");
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

// Checks x [T, B, I], h0 [B, H], kernel [I, 3H], recurrent_kernel [H, 3H], bias [2, 3H] (inputs 0-4 of both ops).
absl::Status CheckGruShapes(OpKernelContext* context, bool with_bias) {
  const Tensor &x = context->input(0), &h0 = context->input(1);
  if (x.dims() != 3) return absl::InvalidArgumentError("x must be [time, batch, features]");
  if (h0.dims() != 2 || h0.dim_size(0) != x.dim_size(1)) return absl::InvalidArgumentError("h0 must be [batch, units]");
  const int64_t units = h0.dim_size(1);
  if (context->input(2).shape() != TensorShape({x.dim_size(2), 3 * units}))
    return absl::InvalidArgumentError("kernel must be [features, 3 * units]");
  if (context->input(3).shape() != TensorShape({units, 3 * units}))
    return absl::InvalidArgumentError("recurrent_kernel must be [units, 3 * units]");
  if (with_bias && context->input(4).shape() != TensorShape({2, 3 * units}))
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

absl::Status LstmShape(InferenceContext* c) {
  ShapeHandle x, h0;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &x));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 2, &h0));
  DimensionHandle width;
  TF_RETURN_IF_ERROR(c->Multiply(c->Dim(h0, 1), 4, &width));
  ShapeHandle states = c->MakeShape({c->Dim(x, 0), c->Dim(x, 1), c->Dim(h0, 1)});
  c->set_output(0, states);
  c->set_output(1, states);
  c->set_output(2, c->MakeShape({c->Dim(x, 0), c->Dim(x, 1), width}));
  return absl::OkStatus();
}

absl::Status LstmGradShape(InferenceContext* c) {
  for (int i = 0; i < 5; ++i) c->set_output(i, c->input(i));
  ShapeHandle kernel;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(3), 2, &kernel));
  c->set_output(5, c->Vector(c->Dim(kernel, 1)));
  return absl::OkStatus();
}

absl::Status GruShape(InferenceContext* c) {
  ShapeHandle x, h0;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &x));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 2, &h0));
  DimensionHandle width;
  TF_RETURN_IF_ERROR(c->Multiply(c->Dim(h0, 1), 4, &width));
  c->set_output(0, c->MakeShape({c->Dim(x, 0), c->Dim(x, 1), c->Dim(h0, 1)}));
  c->set_output(1, c->MakeShape({c->Dim(x, 0), c->Dim(x, 1), width}));
  return absl::OkStatus();
}

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
