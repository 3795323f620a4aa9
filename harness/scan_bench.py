"""Micro-benchmark of the linear-scan kernels: forward + backward seconds per shape, interleaved rounds.

  python -m harness.scan_bench --rounds=5 --repeats=3

For each (batch, time, units, dtype) of the grid, every kernel runs one compiled
step (a time-major scan, as the layers call it, a weighted sum, the gradient with
respect to a, b and h_0); after one
warm-up call per kernel, each round times `repeats` calls of every kernel in
turn, so machine drift hits all alike. Prints, per shape, each kernel's median
milliseconds, its spread (min-max over rounds) and its ratio to the fastest, and
the kernel `auto` picks. logcumsumexp runs on positive real inputs only. A shape
ending in c is complex64; in s, complex64 with one a [units] for all steps (the LRU).

`plain_c` is the floor: the same float32 recurrence and its gradient as a plain
single-threaded C loop (HarnessPlainScanF32 in harness/kernels/scan_kernels.cc,
-O3 -march=native), called on numpy arrays outside TensorFlow. `--threads` sets
TensorFlow's intra-op threads, which the fused op runs on (0: TensorFlow's
default, one per core): run it with 1 and 2 to see how it scales.
"""

import ctypes
import statistics
import time

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from harness import fused_ops
from harness import runtime
from harness import scan

_ROUNDS = flags.DEFINE_integer('rounds', 5, 'Interleaved rounds.', lower_bound=1)
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Calls per kernel and round (their mean is one sample).', lower_bound=1)
_KERNELS = flags.DEFINE_list('kernels', [k for k in scan.KERNELS if k != 'auto'] + ['plain_c'],
                             'Kernels to time (plain_c: the plain C loop, float32 with a per-step a only).')
_THREADS = flags.DEFINE_integer('threads', 0, 'TensorFlow\'s intra-op threads (0: its default).', lower_bound=0)
_GRID = flags.DEFINE_list(
    'grid', ['128x28x128', '128x112x128', '128x256x128', '128x784x128', '128x784x256', '32x784x64',
             '128x2048x128', '128x784x128c', '128x784x128s'],
    'Shapes batch x time x units; a trailing c: complex64; s: complex64, a shared [units].')


def _step(kernel):

  @tf.function
  def step(a, b, h0, weights):
    with tf.GradientTape() as tape:
      tape.watch([a, b, h0])
      loss = tf.reduce_sum(tf.math.real(scan.linear_scan(a, b, h0, kernel=kernel, time_major=True) * weights))
    return tape.gradient(loss, [a, b, h0])

  return step


def _plain_c_step():
  """The plain C loop's forward + backward as a callable on the time-major inputs, or None where it is not built."""
  if fused_ops.load() is None:
    return None
  library = ctypes.CDLL(str(fused_ops.library_path()))
  function = library.HarnessPlainScanF32
  function.restype = None
  pointer = np.ctypeslib.ndpointer(np.float32, flags='C_CONTIGUOUS')
  function.argtypes = [ctypes.c_int64, ctypes.c_int64] + [pointer] * 8

  outputs = {}

  def step(a, b, h0, weights):
    a, b, h0, dh = (np.ascontiguousarray(x.numpy()) for x in (a, b, h0, weights))
    # Outputs allocated once per shape, as TensorFlow's allocator reuses its buffers: no page faults timed.
    if b.shape not in outputs:
      outputs[b.shape] = np.empty_like(b), np.empty_like(b), np.empty_like(b), np.empty_like(h0)
    h, da, db, dh0 = outputs[b.shape]
    function(b.shape[0], b.shape[1] * b.shape[2], a, b, h0, dh, h, da, db, dh0)
    return da, db, dh0

  return step


def _inputs(shape, kind):
  """Time-major a, b, h_0 and loss weights; kind '' (float32), 'c' (complex64) or 's' (complex64, a [units])."""
  batch, steps, units = shape
  a = tf.random.uniform([units] if kind == 's' else [steps, batch, units], 0.5, 1.0)
  b = tf.random.uniform([steps, batch, units], 0.1, 1.0)
  h0 = tf.random.uniform([batch, units], 0.0, 1.0)
  if kind:
    phase = tf.random.uniform(a.shape, -3.0, 3.0)
    a = tf.complex(a * tf.cos(phase), a * tf.sin(phase))
    b, h0 = tf.complex(b, b), tf.complex(h0, h0)
  return a, b, h0, tf.cast(tf.random.normal([steps, batch, units]), b.dtype)


def measure(shape, kind, kernels, rounds, repeats):
  """{kernel: [seconds per call, one per round]} for forward + backward at this shape."""
  kernels = [k for k in kernels if not (kind and k in ('logcumsumexp', 'plain_c'))]
  inputs = _inputs(shape, kind)
  steps = {kernel: _plain_c_step() if kernel == 'plain_c' else _step(kernel) for kernel in kernels}
  steps = {kernel: step for kernel, step in steps.items() if step is not None}
  for step in steps.values():
    step(*inputs)
  samples = {kernel: [] for kernel in steps}
  for _ in range(rounds):
    for kernel, step in steps.items():
      # The plain loop's time includes copying its four inputs out of TensorFlow (~1 % at 128x784x128).
      start = time.perf_counter()
      for _ in range(repeats):
        np.asarray(step(*inputs)[0])
      samples[kernel].append((time.perf_counter() - start) / repeats)
  return samples


def _parse(entry):
  kind = entry[-1] if entry[-1] in 'cs' else ''
  return tuple(int(n) for n in entry.rstrip('cs').split('x')), kind


def main(argv):
  del argv
  if _THREADS.value:
    tf.config.threading.set_intra_op_parallelism_threads(_THREADS.value)
  print(runtime.describe_cpu())
  print(f'{"batch x time x units":>22} {"kernel":>13} {"median ms":>10} {"min-max ms":>16} {"x fastest":>9}')
  for entry in _GRID.value:
    shape, kind = _parse(entry)
    samples = measure(shape, kind, _KERNELS.value, _ROUNDS.value, _REPEATS.value)
    medians = {kernel: statistics.median(s) for kernel, s in samples.items()}
    fastest = min(medians.values())
    label = 'x'.join(map(str, shape)) + {'': ' f32', 'c': ' c64', 's': ' c64 a[u]'}[kind]
    for kernel, s in samples.items():
      print(f'{label:>22} {kernel:>13} {1e3 * medians[kernel]:10.1f} '
            f'{1e3 * min(s):7.1f}-{1e3 * max(s):<8.1f} {medians[kernel] / fastest:9.2f}')
    dtype = tf.complex64 if kind else tf.float32
    print(f'{label:>22} {"auto picks":>13} {scan.choose_kernel(shape[1], shape[0], shape[2], dtype, False)}',
          flush=True)


if __name__ == '__main__':
  app.run(main)
