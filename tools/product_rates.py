"""GFLOP/s of the matrix products a training step runs, by path, against the cores' peak.

  python tools/product_rates.py --rows=100352 --shapes=128x256,128x512,128x1024 --rounds=3

For each [rows, i] x [i, o] product (the linear archs' projections and MLPs over
all B*T positions; the LSTM's input product is i x 4u), times its forward
product and both backward ones (dx = dy w^T, dw = x^T dy) by each path:
  tf_float32      TensorFlow's MatMul (Eigen or oneDNN, as TensorFlow dispatches it)
  tf_bfloat16     the same on bfloat16 tensors
  onednn_sgemm    oneDNN's dnnl_sgemm called directly (the fused LSTM/GRU ops' GEMM), on all cores
and prints the median GFLOP/s over interleaved rounds, its min-max and its share of
the peak: cores x FMA lanes x 2 FLOPs x the clock /proc/cpuinfo reports (the base
clock: a core that boosts past it can pass 100 %).
"""

import ctypes
import os
import statistics
import time

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from harness import fused_ops
from harness import runtime

_ROWS = flags.DEFINE_integer('rows', 128 * 784, 'M: positions, B * T.')
_SHAPES = flags.DEFINE_list('shapes', ['128x256', '128x384', '128x512', '128x1024', '512x128'], 'i x o per product.')
_ROUNDS = flags.DEFINE_integer('rounds', 3, 'Interleaved rounds.')
_PATHS = flags.DEFINE_list('paths', ['tf_float32', 'tf_bfloat16', 'onednn_sgemm'], 'Paths to time.')


def _peak_flops():
  """(FLOP/s, how it was computed) at the base clock: 32 float32 FLOPs a cycle a core with two 256-bit FMA
  pipes (AVX2), 64 with AVX-512 on two pipes; the model cannot tell one 512-bit pipe from two."""
  with open('/proc/cpuinfo') as f:
    text = f.read()
  mhz = float(next(line.split(':')[1] for line in text.splitlines() if line.startswith('cpu MHz')))
  flags_ = set(next(line.split(':')[1] for line in text.splitlines() if line.startswith('flags')).split())
  per_cycle = 64 if 'avx512f' in flags_ else 32
  count = len(os.sched_getaffinity(0))
  return count * per_cycle * mhz * 1e6, f'{count} cores x {per_cycle} FLOP/cycle x {mhz:.0f} MHz'


def _tf_products(dtype):
  @tf.function
  def products(x, w, dy):
    return tf.matmul(x, w), tf.matmul(dy, w, transpose_b=True), tf.matmul(x, dy, transpose_a=True)

  def run(x, w, dy):
    x, w, dy = (tf.cast(t, dtype) for t in (x, w, dy))
    products(x, w, dy)  # Traces.

    def call():
      tf.nest.map_structure(lambda t: t.numpy(), products(x, w, dy))

    return call

  return run


def _onednn_products():
  library = ctypes.CDLL(str(fused_ops.library_path()))  # Linked to libdnnl.so.3: its dnnl_sgemm resolves.
  sgemm = library.dnnl_sgemm
  pointer = np.ctypeslib.ndpointer(np.float32, flags='C_CONTIGUOUS')
  sgemm.argtypes = [ctypes.c_char, ctypes.c_char] + [ctypes.c_int64] * 3 + [ctypes.c_float, pointer, ctypes.c_int64,
                                                                            pointer, ctypes.c_int64, ctypes.c_float,
                                                                            pointer, ctypes.c_int64]

  def run(x, w, dy):
    x, w, dy = (np.ascontiguousarray(t.numpy()) for t in (x, w, dy))
    (m, k), n = x.shape, w.shape[1]
    y, dx, dw = np.empty([m, n], np.float32), np.empty([m, k], np.float32), np.empty([k, n], np.float32)

    def call():
      sgemm(b'N', b'N', m, n, k, 1.0, x, k, w, n, 0.0, y, n)
      sgemm(b'N', b'T', m, k, n, 1.0, dy, n, w, n, 0.0, dx, k)
      sgemm(b'T', b'N', k, n, m, 1.0, x, k, dy, n, 0.0, dw, n)

    return call

  return run


def main(argv):
  del argv
  peak, how = _peak_flops()
  print(f'{runtime.describe_cpu()}; peak {peak / 1e9:.0f} GFLOP/s float32 ({how})')
  builders = {'tf_float32': _tf_products(tf.float32), 'tf_bfloat16': _tf_products(tf.bfloat16),
              'onednn_sgemm': _onednn_products()}
  print(f'{"[M, i] x [i, o]":>26} {"path":>13} {"GFLOP/s":>8} {"min-max":>13} {"of peak":>8}')
  for shape in _SHAPES.value:
    inner, outer = (int(n) for n in shape.split('x'))
    x, w, dy = (tf.random.normal(s) for s in ([_ROWS.value, inner], [inner, outer], [_ROWS.value, outer]))
    flops = 6.0 * _ROWS.value * inner * outer
    calls = {path: builders[path](x, w, dy) for path in _PATHS.value}
    samples = {path: [] for path in calls}
    for _ in range(_ROUNDS.value):
      for path, call in calls.items():
        start = time.perf_counter()
        call()
        samples[path].append(flops / (time.perf_counter() - start) / 1e9)
    for path, rates in samples.items():
      median = statistics.median(rates)
      print(f'{f"[{_ROWS.value}, {inner}] x [{inner}, {outer}]":>26} {path:>13} {median:8.1f} '
            f'{min(rates):6.1f}-{max(rates):<6.1f} {100 * median * 1e9 / peak:7.0f}%', flush=True)


if __name__ == '__main__':
  app.run(main)
