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

Kernels (all exact up to rounding; fused on the CPU only, the others on every device):
  fused         the harness's HarnessLinearScan op and its gradient op
                (harness/kernels/scan_kernels.cc, built on first use with the
                fused LSTM/GRU ops): one pass through memory each way, every
                thread streaming its own columns (batch x units) through time,
                vectorized; float32, float64, complex64.
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

from harness import fused_ops
from harness import linear_specs

KERNELS = linear_specs.SCAN_KERNELS


def _per_step(a, t):
  """a_t of a [time, batch, units], or a itself when it is the same [units] at every step."""
  return a[t] if a.shape.rank == 3 else a


def _sequential_forward(a, b, initial_state):
  """h_t = a_t h_{t-1} + b_t by a while-loop over time: each step reads a_t, b_t once and writes h_t.

  a [time, batch, units] or [units], b [time, batch, units], initial_state [batch, units].
  """
  steps = tf.shape(b)[0]

  def body(t, h, states):
    h = _per_step(a, t) * h + b[t]
    return t + 1, h, states.write(t, h)

  _, _, states = tf.while_loop(lambda t, *_: t < steps, body,
                               (tf.constant(0), initial_state, tf.TensorArray(b.dtype, size=steps)))
  return states.stack()


def _sequential_backward(a, h, initial_state, upstream):
  """The reversed-time gradient loop (module docstring), dL/da summed in the loop where a is [units].

  Returns (dL/da shaped like a, dL/db [time, batch, units], dL/dh_0 [batch, units]).
  """
  steps = tf.shape(h)[0]
  shared = a.shape.rank != 3
  a_conj = tf.math.conj(a)

  def body(t, g, da_sum, db_steps, da_steps):
    # g_t = dL/dh_t + conj(a_{t+1}) g_{t+1}; at t = T - 1 g is still 0, so a_T's stand-in is harmless.
    g = upstream[t] + _per_step(a_conj, tf.minimum(t + 1, steps - 1)) * g
    h_previous = tf.where(t > 0, h[tf.maximum(t - 1, 0)], initial_state)
    da = g * tf.math.conj(h_previous)
    if shared:
      return t - 1, g, da_sum + tf.reduce_sum(da, 0), db_steps.write(t, g), da_steps
    return t - 1, g, da_sum, db_steps.write(t, g), da_steps.write(t, da)

  _, g, da_sum, db_steps, da_steps = tf.while_loop(
      lambda t, *_: t >= 0, body,
      (steps - 1, tf.zeros_like(initial_state), tf.zeros_like(a if shared else a[0, 0]),
       tf.TensorArray(h.dtype, size=steps), tf.TensorArray(h.dtype, size=steps if not shared else 0)))
  return da_sum if shared else da_steps.stack(), db_steps.stack(), _per_step(a_conj, 0) * g


def _sequential(a, b):
  """From h_0 = 0: the chunked kernel's scan over chunk ends. a, b [time, batch, units]."""
  return _sequential_forward(a, b, tf.zeros_like(b[0]))


def chunk_size(steps):
  """C for the chunked kernel: near sqrt(T), so the C unrolled and T/C looped steps balance."""
  return max(1, min(64, round(math.sqrt(steps))))


def _chunked(a, b):
  """The two-level scan of the module docstring. a, b [time, batch, units] with a static time."""
  steps, batch, units = b.shape[0], tf.shape(b)[1], tf.shape(b)[2]
  size = chunk_size(steps)
  chunks = -(-steps // size)
  pad = chunks * size - steps
  if pad:  # Steps past the end with a = 1, b = 0 change nothing before them.
    a = tf.concat([a, tf.ones([pad, batch, units], a.dtype)], 0)
    b = tf.concat([b, tf.zeros([pad, batch, units], b.dtype)], 0)
  # [size, chunks, batch, units]: step j of every chunk is one slice.
  a_steps = tf.unstack(tf.transpose(tf.reshape(a, [chunks, size, batch, units]), [1, 0, 2, 3]), num=size)
  b_steps = tf.unstack(tf.transpose(tf.reshape(b, [chunks, size, batch, units]), [1, 0, 2, 3]), num=size)
  # Within each chunk from zero: products A_j = a_1 ... a_j and local states H_j.
  products, local = [a_steps[0]], [b_steps[0]]
  for a_j, b_j in zip(a_steps[1:], b_steps[1:]):
    products.append(a_j * products[-1])
    local.append(a_j * local[-1] + b_j)
  if chunks > 1:
    # h at each chunk's end, then h entering each chunk.
    ends = _sequential(products[-1], local[-1])
    carry = tf.concat([tf.zeros_like(ends[:1]), ends[:-1]], 0)
    local = [h_j + a_j * carry for h_j, a_j in zip(local, products)]
  h = tf.reshape(tf.transpose(tf.stack(local), [1, 0, 2, 3]), [chunks * size, batch, units])
  return h[:steps]


def _combine(earlier, later):
  a_1, b_1 = earlier
  a_2, b_2 = later
  return a_2 * a_1, a_2 * b_1 + b_2


def _associative(a, b):
  return keras.ops.associative_scan(_combine, (a, b), axis=0)[1]


def _logcumsumexp(a, b):
  log_products = tf.cumsum(tf.math.log(a), axis=0)
  return tf.exp(log_products + tf.math.cumulative_logsumexp(tf.math.log(b) - log_products, axis=0))


_FORWARD = {'chunked': _chunked, 'associative': _associative, 'logcumsumexp': _logcumsumexp}


# The dtypes the fused op takes.
_FUSED_DTYPES = (tf.float32, tf.float64, tf.complex64)


def _fused_available(dtype):
  return dtype in _FUSED_DTYPES and fused_ops.load() is not None


def choose_kernel(steps, batch, units, dtype, on_gpu, fused=True):
  """The kernel `auto` runs for this shape (static T; None where unknown) and device; never logcumsumexp.

  CPU: the fused op wherever it is built and takes the dtype, unless `fused` is
  False (a caller whose whole pass XLA compiles: XLA cannot compile the op);
  else, as measured by `python -m harness.scan_bench` (forward + backward, time-major,
  float32, medians of 3 interleaved rounds on the 2 shared cores under load ~10,
  so absolute times are inflated ~3-5x; the ranking held in every round):

    batch x T x units   sequential  chunked  associative  logcumsumexp   (ms)
    128 x   28 x 128          13.8     29.0         77.4          92.3
    128 x  112 x 128         120      235          886           774
    128 x  256 x 128         446      770         2740          2020
    128 x  784 x 128        2339     5712        13965          8910
    128 x  784 x 256        1986     5856        12731          8643
     32 x  784 x  64         164       98          629           353
     64 x  784 x  64         326      207            -             -
    128 x  784 x  64         274      724            -             -
    128 x 2048 x 128        2861     8194            -             -
    128 x  784 x 128 c64    3487     7376            -             -   (a per step)
    128 x  784 x 128 c64    2783     7367            -             -   (a shared [units], the LRU)
     32 x  784 x  64 c64     324      378            -             -   (a shared; a tie within spread)

  The fused while-loop wins wherever a step's slab (batch x units) is large enough
  to hide the loop's per-iteration overhead; below ~8k elements per step the
  chunked kernel's ~2 sqrt(T) iterations win. The parallel forms only add passes
  over memory on a CPU. GPU: not measured on this project's machines;
  associative's 2 log2 T levels of large ops suit a device where launches, not
  bytes, cost.
  """
  if on_gpu:
    return 'associative'
  if fused and _fused_available(dtype):
    return 'fused'
  small_steps = batch is not None and units is not None and batch * units < _SEQUENTIAL_MIN_SLAB
  return 'chunked' if small_steps and steps is not None and steps > _CHUNKED_MIN_STEPS else 'sequential'


# Elements per step (batch x units) from which the while-loop beats the chunked kernel (scan_bench).
_SEQUENTIAL_MIN_SLAB = 8192
# Below this T the chunks are too short to pay for their extra passes.
_CHUNKED_MIN_STEPS = 32


_KERNEL_WORDS = {
    'fused': 'fused (the harness\'s HarnessLinearScan op, vectorized over batch x units on the intra-op threads)',
    'sequential': 'sequential (a tf.while_loop over time)',
    'chunked': 'chunked (a loop over chunks of ~sqrt(T) steps done at once)',
    'associative': 'associative (keras.ops.associative_scan)',
    'logcumsumexp': 'logcumsumexp (log-space cumulative sums)',
}


def describe(kernel, units, fused=True):
  """Which kernel runs a scan over `units`, in words (`auto`: its rule on this device; `fused` as in choose_kernel)."""
  prefix = 'linear scan (harness.scan), exact reversed-time gradient; '
  if kernel != 'auto':
    return prefix + _KERNEL_WORDS[kernel]
  if tf.config.list_logical_devices('GPU'):
    return prefix + 'auto: ' + _KERNEL_WORDS['associative'] + ' (GPU)'
  if fused and fused_ops.load() is not None:
    return prefix + 'auto: ' + _KERNEL_WORDS['fused']
  rows = -(-_SEQUENTIAL_MIN_SLAB // units)
  return (prefix + f'auto: {_KERNEL_WORDS["sequential"]} for batches of {rows}+ rows, else '
          f'{_KERNEL_WORDS["chunked"]} over T > {_CHUNKED_MIN_STEPS}')


def _resolve_name(kernel, steps, batch, units, dtype):
  """The kernel to run for b [steps, batch, units] of `dtype` (static sizes or None)."""
  if kernel not in KERNELS:
    raise ValueError(f'linear_scan: unknown kernel {kernel!r}; one of {", ".join(KERNELS)}')
  if kernel == 'auto':
    kernel = choose_kernel(steps, batch, units, dtype, bool(tf.config.list_logical_devices('GPU')))
  if kernel == 'fused' and not _fused_available(dtype):
    # Like the fused LSTM: where the op cannot be built (fused_ops has warned why), or for complex128.
    kernel = choose_kernel(steps, batch, units, dtype, on_gpu=False, fused=False)
  if kernel == 'chunked' and steps is None:
    kernel = 'sequential'  # The chunk layout needs a static T.
  if kernel == 'logcumsumexp' and dtype.is_complex:
    raise ValueError('linear_scan: the logcumsumexp kernel needs real a > 0 and b > 0')
  return kernel


def _resolve(kernel, b):
  """The kernel to run for b [time, batch, units]."""
  return _resolve_name(kernel, b.shape[0], b.shape[1], b.shape[-1], b.dtype)


def linear_scan(a, b, initial_state=None, kernel='auto', time_major=False):
  """All states of h_t = a_t * h_{t-1} + b_t.

  Args:
    a: [batch, time, units], or [units] when every step and example has the same a
      (the LRU's lambda), float or complex.
    b: [batch, time, units] ([time, batch, units] if time_major), a's dtype.
    initial_state: None (zeros) or h_0 [batch, units], a's dtype.
    kernel: one of KERNELS.
    time_major: whether a (when per step) and b and the result are [time, batch, units]:
      every kernel runs time-major, so a caller that is already saves two transposes.

  Returns:
    h [batch, time, units] (or [time, batch, units]): h_1 ... h_T.
  """
  b = tf.convert_to_tensor(b)
  a = tf.convert_to_tensor(a, b.dtype)
  if not time_major:
    b = tf.transpose(b, [1, 0, 2])
    a = tf.transpose(a, [1, 0, 2]) if a.shape.rank == 3 else a
  if initial_state is None:
    initial_state = tf.zeros_like(b[0])
  name = _resolve(kernel, b)
  backward = _resolve('auto', b) if name == 'logcumsumexp' else name
  h = _scan(a, b, tf.convert_to_tensor(initial_state, b.dtype), name, backward)
  return h if time_major else tf.transpose(h, [1, 0, 2])


def fused_kernel_runs(kernel, steps, batch, units, dtype):
  """Whether `linear_scan(kernel=kernel)` runs the fused op for b [steps, batch, units] of `dtype` here (sizes or None)."""
  return kernel in ('auto', 'fused') and _resolve_name(kernel, steps, batch, units, dtype) == 'fused'


def gated_scan(cell, k, initial_state=None):
  """minGRU's or minLSTM's recurrence with its gates folded into the fused op (HarnessGatedScan).

  The same h as `linear_scan` of the layers' coefficients (harness.linear_layers:
  minGRU a = sigmoid(-k_z), b = sigmoid(k_z) g(k_h); minLSTM through the normalised
  gates), but a and b are computed inside the op from k, never written, and
  recomputed by the backward op, which returns dL/dk directly: one pass over k and
  h each way instead of the ~10 elementwise passes of the gates and their gradients.
  CPU, float32, only where the fused ops are built (`fused_kernel_runs`).

  Args:
    cell: 'mingru' (k = [k_z, k_h]) or 'minlstm' (k = [k_f, k_i, k_h]).
    k: the block's projection, time-major [time, batch, gates * units] float32.
    initial_state: None (zeros) or h_0 [batch, units] float32.

  Returns:
    h [time, batch, units].
  """
  module = fused_ops.load()
  units = k.shape[-1] // (2 if cell == 'mingru' else 3)
  if initial_state is None:
    initial_state = tf.zeros(tf.stack([tf.shape(k)[1], units]), k.dtype)

  @tf.custom_gradient
  def scan(k, initial_state):
    h = module.harness_gated_scan(k, initial_state, cell=cell)

    def gradient(upstream):
      return module.harness_gated_scan_grad(k, h, initial_state, upstream, cell=cell)

    return h, gradient

  return scan(k, tf.convert_to_tensor(initial_state, k.dtype))


def _scan(a, b, initial_state, forward, backward):
  """Kernel `forward` with the exact reversed-time gradient (kernel `backward`) of the module docstring; time-major."""

  @tf.custom_gradient
  def scan(a, b, initial_state):
    if forward == 'fused':
      h = fused_ops.load().harness_linear_scan(a, b, initial_state)
    elif forward == 'sequential':
      h = _sequential_forward(a, b, initial_state)
    else:
      a_steps = a if a.shape.rank == 3 else tf.broadcast_to(a, tf.shape(b))
      h = _FORWARD[forward](a_steps, tf.concat([b[:1] + a_steps[:1] * initial_state, b[1:]], 0))
    h = tf.ensure_shape(h, b.shape)  # associative_scan's output has no static shape in a graph.

    def gradient(upstream):
      upstream = tf.ensure_shape(upstream, b.shape)  # A graph's upstream gradient arrives without a shape.
      if backward == 'fused':
        return fused_ops.load().harness_linear_scan_grad(a, h, initial_state, upstream)
      if backward == 'sequential':
        return _sequential_backward(a, h, initial_state, upstream)
      a_steps = a if a.shape.rank == 3 else tf.broadcast_to(a, tf.shape(b))
      # a_{t+1} for t < T; the last entry multiplies g_{T+1} = 0, so any value does.
      a_next = tf.math.conj(tf.concat([a_steps[1:], tf.zeros_like(a_steps[:1])], 0))
      g = tf.reverse(_FORWARD[backward](tf.reverse(a_next, [0]), tf.reverse(upstream, [0])), [0])
      da = g * tf.math.conj(tf.concat([initial_state[None], h[:-1]], 0))
      da = da if a.shape.rank == 3 else tf.reduce_sum(da, [0, 1])
      return da, g, tf.math.conj(a_steps[0]) * g[0]

    return h, gradient

  return scan(a, b, initial_state)
