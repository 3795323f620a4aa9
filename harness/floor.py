"""An arch's floor on this machine: the least time a training step can take, from measured rates.

  floor seconds per step = step FLOPs / product rate + step bytes / memory bandwidth

Both rates are measured here, on this machine and in this process
(`measure_rates`): the product rate is TensorFlow's MatMul on the step's
largest per-step product, [B*T, i] x [i, o] forward and its two backward
products, in the compute dtype; the bandwidth is a streaming elementwise pass
(y = x * c + z over 128 MiB tensors: two reads and one write).

What a step must do (`step_cost`, from the built model's trainable variables):
  FLOPs  2 per multiply-add and 3 products per weight matrix (forward, the
         input's gradient and the weight's): 6 * B * (T * sum of the per-step matrices' sizes + the head's, which
         reads one step). The LSTM's and GRU's recurrent kernels are per-step
         products too.
  bytes  each per-step product's input [i] and output [o] as the product needs
         them: forward reads i and writes o, backward reads o's gradient and i
         and writes i's gradient: (3 i + 2 o) values per position; and for the
         linear archs the scan's passes (forward reads a, b and writes h;
         backward reads a, h, dL/dh and writes da, db: 8 [T, B, N] passes; with
         the LRU's one a [N], 6), in the state's dtype (complex64: 8 bytes).
Everything else (norms, activations, residuals, the optimizer) is what a step
spends above its floor; so the share of the floor reached is at most 1 and
says how much of the step is overhead, not how fast the arch is.
"""

import dataclasses
import statistics
import time

import numpy as np
import tensorflow as tf

# The linear archs' scan passes over [T, B, N] per step (module docstring): per-step a, shared a.
_SCAN_PASSES = {False: 8, True: 6}
_BANDWIDTH_ELEMENTS = 32 * 2 ** 20  # 128 MiB of float32 per tensor: far past every cache.
_MAX_PRODUCT_ROWS = 2 ** 17  # The product rate's M: B * T up to this many rows.


@dataclasses.dataclass(frozen=True)
class StepCost:
  flops: float
  bytes: float
  largest_product: tuple  # (i, o) of the per-step product with the most weights.


@dataclasses.dataclass(frozen=True)
class Rates:
  product_flops_per_sec: float
  bytes_per_sec: float
  product_shape: tuple  # (M, i, o) it was measured at.
  dtype: str


def _scan_layers(model):
  """(state size N, bytes per state value, shared a) of each recurrent layer that runs a linear scan."""
  scans = []
  for layer in model.recurrent_layers:
    state_dtype = getattr(layer, 'STATE_DTYPE', None)  # Only harness.linear_layers' blocks have one.
    if state_dtype is not None:
      scans.append((layer.units, state_dtype.size, layer.SHARED_A))
  return scans


def step_cost(model, batch, steps):
  """The FLOPs and bytes of one training step of `model` on [batch, steps, features] (module docstring)."""
  head = {id(v) for v in model.head.trainable_variables}
  matrices = [tuple(v.shape) for v in model.trainable_variables if len(v.shape) == 2 and id(v) not in head]
  head_weights = sum(int(np.prod(v.shape)) for v in model.head.trainable_variables if len(v.shape) == 2)
  per_step = sum(i * o for i, o in matrices)
  flops = 6.0 * batch * (steps * per_step + head_weights)
  values = sum(3 * i + 2 * o for i, o in matrices) * batch * steps * 4.0
  for units, value_bytes, shared in _scan_layers(model):
    values += _SCAN_PASSES[shared] * steps * batch * units * value_bytes
  largest = max(matrices, key=lambda shape: shape[0] * shape[1]) if matrices else (1, 1)
  return StepCost(flops=flops, bytes=values, largest_product=largest)


def _median_seconds(function, *args, repeats=5):
  function(*args)  # Traces and warms up.
  seconds = []
  for _ in range(repeats):
    start = time.perf_counter()
    tf.nest.map_structure(lambda t: t.numpy(), function(*args))
    seconds.append(time.perf_counter() - start)
  return statistics.median(seconds)


def measure_rates(rows, product, dtype='float32'):
  """This machine's product rate at [rows, i] x [i, o] (forward and both backward products) and its bandwidth."""
  rows = min(rows, _MAX_PRODUCT_ROWS)
  inner, outer = product
  x = tf.random.normal([rows, inner], dtype=tf.float32)
  w = tf.random.normal([inner, outer], dtype=tf.float32)
  dy = tf.random.normal([rows, outer], dtype=tf.float32)
  x, w, dy = (tf.cast(t, dtype) for t in (x, w, dy))

  @tf.function
  def products(x, w, dy):
    # The three products of a trained Dense layer: y = x w, dx = dy w^T, dw = x^T dy.
    return tf.matmul(x, w), tf.matmul(dy, w, transpose_b=True), tf.matmul(x, dy, transpose_a=True)

  product_seconds = _median_seconds(products, x, w, dy)
  a = tf.random.normal([_BANDWIDTH_ELEMENTS])
  b = tf.random.normal([_BANDWIDTH_ELEMENTS])

  @tf.function
  def stream(a, b):
    return a * 1.0001 + b

  stream_seconds = _median_seconds(stream, a, b)
  return Rates(product_flops_per_sec=6.0 * rows * inner * outer / product_seconds,
               bytes_per_sec=3 * 4.0 * _BANDWIDTH_ELEMENTS / stream_seconds,
               product_shape=(rows, inner, outer), dtype=dtype)


def floor_report(cost, rates, batch):
  """The floor in examples/s and its parts, as the benchmark prints them."""
  product_seconds = cost.flops / rates.product_flops_per_sec
  memory_seconds = cost.bytes / rates.bytes_per_sec
  return {
      'step_gflop': round(cost.flops / 1e9, 3),
      'step_gbytes': round(cost.bytes / 1e9, 3),
      'product_gflops_per_sec': round(rates.product_flops_per_sec / 1e9, 1),
      'product_shape': list(rates.product_shape),
      'product_dtype': rates.dtype,
      'bandwidth_gbytes_per_sec': round(rates.bytes_per_sec / 1e9, 1),
      'floor_ms_per_step': {'products': round(1e3 * product_seconds, 1), 'memory': round(1e3 * memory_seconds, 1)},
      'floor_examples_per_sec': batch / (product_seconds + memory_seconds),
  }
