"""The linear recurrence h_t = a_t * h_{t-1} + b_t over [batch, time, units], with an exact custom gradient.

One primitive that every linear recurrent layer (minGRU, minLSTM, LRU) runs:

  h = linear_scan(a, b, initial_state, kernel)   # a, b [batch, time, units]; h_0 [batch, units]

real (float32, float64) or complex (complex64, complex128). The initial state is
folded into the first step (b_1 <- a_1 h_0 + b_1), so every kernel scans from zero.

The gradient is not differentiation through the kernel's ops: it is the same
recurrence run backwards in time (by the same kernel),

  g_t = dL/dh_t + conj(a_{t+1}) g_{t+1}     (g_{T+1} = 0)
  dL/db_t = g_t,  dL/da_t = g_t conj(h_{t-1}),  dL/dh_0 = conj(a_1) g_1

in TensorFlow's complex convention (the gradient of a real loss with respect to
z = x + iy is dL/dx + i dL/dy, as its own `Mul` gradient assumes); for real
tensors conj is the identity. So backward costs one more scan and a few
elementwise ops, and keeps only h.

Kernels (all exact up to rounding, on every device):
  sequential    a tf.while_loop over T steps of two elementwise ops; its cost is
                the loop's per-iteration overhead, not arithmetic.
  chunked       T split into chunks of C: the scan inside every chunk at once
                (C unrolled steps over [batch, chunks, units]), a sequential scan
                over the T/C chunk ends, then one fix-up h = local + A * carry.
                About 2 sqrt(T) steps instead of T; no division, so products of
                a that underflow to 0 are simply 0.
  associative   `keras.ops.associative_scan` (a work-efficient odd/even scan,
                2 log2 T levels of full-size slicing ops).
  logcumsumexp  the log-space form of Heinsen (2023), used by minGRU/minLSTM:
                log h_t = a*_t + logcumsumexp_k<=t(log b_k - a*_k), a*_t = sum_k<=t log a_k.
                Only where a > 0 and b > 0 (and h_0 >= 0) hold: real inputs whose
                a never underflows to 0 (then a* = -inf and h is NaN). Its
                precision falls with |a*_T| (float32 adds a*_t and a term of the
                same size back: relative error ~ |a*_T| * 6e-8). Its backward
                runs `auto`'s kernel, since dL/dh has either sign.
  auto          the fastest measured here for the shape and device, never
                logcumsumexp (see `choose_kernel`).
"""

import math

import keras
import tensorflow as tf

from harness import linear_specs

KERNELS = linear_specs.SCAN_KERNELS


def _sequential(a, b):
  """h_t = a_t h_{t-1} + b_t from h_0 = 0 by a while-loop over time. a, b [batch, time, units]."""
  a_steps = tf.TensorArray(a.dtype, size=0, dynamic_size=True).unstack(tf.transpose(a, [1, 0, 2]))
  b_steps = tf.TensorArray(b.dtype, size=0, dynamic_size=True).unstack(tf.transpose(b, [1, 0, 2]))
  steps = tf.shape(a)[1]

  def body(t, h, outputs):
    h = a_steps.read(t) * h + b_steps.read(t)
    return t + 1, h, outputs.write(t, h)

  _, _, outputs = tf.while_loop(
      lambda t, *_: t < steps, body,
      (tf.constant(0), tf.zeros_like(b[:, 0]), tf.TensorArray(b.dtype, size=steps)))
  return tf.transpose(outputs.stack(), [1, 0, 2])


def chunk_size(steps):
  """C for the chunked kernel: near sqrt(T), so the C unrolled and T/C looped steps balance."""
  return max(1, min(64, round(math.sqrt(steps))))


def _chunked(a, b):
  """The two-level scan of the module docstring. a, b [batch, time, units] with a static time."""
  batch, steps, units = tf.shape(a)[0], a.shape[1], tf.shape(a)[2]
  size = chunk_size(steps)
  chunks = -(-steps // size)
  pad = chunks * size - steps
  if pad:  # Steps past the end with a = 1, b = 0 change nothing before them.
    a = tf.concat([a, tf.ones([batch, pad, units], a.dtype)], 1)
    b = tf.concat([b, tf.zeros([batch, pad, units], b.dtype)], 1)
  # [size, batch, chunks, units]: step j of every chunk is one contiguous slice.
  a_steps = tf.unstack(tf.transpose(tf.reshape(a, [batch, chunks, size, units]), [2, 0, 1, 3]), num=size)
  b_steps = tf.unstack(tf.transpose(tf.reshape(b, [batch, chunks, size, units]), [2, 0, 1, 3]), num=size)
  # Within each chunk from zero: products A_j = a_1 ... a_j and local states H_j.
  products, local = [a_steps[0]], [b_steps[0]]
  for a_j, b_j in zip(a_steps[1:], b_steps[1:]):
    products.append(a_j * products[-1])
    local.append(a_j * local[-1] + b_j)
  if chunks > 1:
    # h at each chunk's end, then h entering each chunk.
    ends = _sequential(products[-1], local[-1])
    carry = tf.concat([tf.zeros_like(ends[:, :1]), ends[:, :-1]], 1)
    local = [h_j + a_j * carry for h_j, a_j in zip(local, products)]
  h = tf.reshape(tf.transpose(tf.stack(local), [1, 2, 0, 3]), [batch, chunks * size, units])
  return h[:, :steps]


def _combine(earlier, later):
  a_1, b_1 = earlier
  a_2, b_2 = later
  return a_2 * a_1, a_2 * b_1 + b_2


def _associative(a, b):
  return keras.ops.associative_scan(_combine, (a, b), axis=1)[1]


def _logcumsumexp(a, b):
  log_products = tf.cumsum(tf.math.log(a), axis=1)
  return tf.exp(log_products + tf.math.cumulative_logsumexp(tf.math.log(b) - log_products, axis=1))


_FORWARD = {'sequential': _sequential, 'chunked': _chunked, 'associative': _associative,
            'logcumsumexp': _logcumsumexp}


def choose_kernel(steps, batch, units, dtype, on_gpu):
  """The kernel `auto` runs for this shape (static T) and device; never logcumsumexp (its preconditions).

  CPU figures: `python -m harness.scan_bench` (forward + backward medians, see its output
  in BUILD.md). GPU: not measured on this project's machines; associative's 2 log2 T
  levels of large ops suit a device where every launched op costs alike.
  """
  del batch, units, dtype  # The measured winner on this CPU depends on T only (see BUILD.md).
  if on_gpu:
    return 'associative'
  return 'sequential' if steps is None or steps <= _SEQUENTIAL_MAX_STEPS else 'chunked'


# The longest T for which the while-loop beats the chunked kernel on this CPU (scan_bench).
_SEQUENTIAL_MAX_STEPS = 32


def _resolve(kernel, a):
  if kernel not in KERNELS:
    raise ValueError(f'linear_scan: unknown kernel {kernel!r}; one of {", ".join(KERNELS)}')
  if kernel == 'auto':
    on_gpu = 'GPU' in (a.device or '') or bool(tf.config.list_logical_devices('GPU'))
    kernel = choose_kernel(a.shape[1], a.shape[0], a.shape[-1], a.dtype, on_gpu)
  if kernel == 'chunked' and a.shape[1] is None:
    kernel = 'sequential'  # The chunk layout needs a static T.
  if kernel == 'logcumsumexp' and a.dtype.is_complex:
    raise ValueError('linear_scan: the logcumsumexp kernel needs real a > 0 and b > 0')
  return kernel


def linear_scan(a, b, initial_state=None, kernel='auto'):
  """All states of h_t = a_t * h_{t-1} + b_t.

  Args:
    a: [batch, time, units], float or complex.
    b: [batch, time, units], a's dtype.
    initial_state: None (zeros) or h_0 [batch, units], a's dtype.
    kernel: one of KERNELS.

  Returns:
    h [batch, time, units]: h_1 ... h_T.
  """
  a = tf.convert_to_tensor(a)
  b = tf.convert_to_tensor(b, a.dtype)
  if initial_state is None:
    initial_state = tf.zeros_like(b[:, 0])
  name = _resolve(kernel, a)
  forward = _FORWARD[name]
  backward = _FORWARD[_resolve('auto', a) if name == 'logcumsumexp' else name]
  return _scan(a, b, tf.convert_to_tensor(initial_state, a.dtype), forward, backward)


def _scan(a, b, initial_state, forward, backward):
  """`forward` with the exact reversed-time gradient of the module docstring."""

  @tf.custom_gradient
  def scan(a, b, initial_state):
    h = forward(a, tf.concat([b[:, :1] + a[:, :1] * initial_state[:, None], b[:, 1:]], 1))
    h = tf.ensure_shape(h, b.shape)  # associative_scan's output has no static shape in a graph.

    def gradient(upstream):
      upstream = tf.ensure_shape(upstream, b.shape)  # A graph's upstream gradient arrives without a shape.
      # a_{t+1} for t < T; the last entry multiplies g_{T+1} = 0, so any value does.
      a_next = tf.math.conj(tf.concat([a[:, 1:], tf.zeros_like(a[:, :1])], 1))
      g = tf.reverse(backward(tf.reverse(a_next, [1]), tf.reverse(upstream, [1])), [1])
      h_previous = tf.concat([initial_state[:, None], h[:, :-1]], 1)
      return g * tf.math.conj(h_previous), g, tf.math.conj(a[:, 0]) * g[:, 0]

    return h, gradient

  return scan(a, b, initial_state)
