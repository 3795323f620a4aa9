"""The harness's fused CPU recurrent ops (`harness/kernels`): built on first use, loaded, differentiated.

`HarnessLstm` and `HarnessGru` run an LSTM's or a GRU's whole sequence as one
op, `HarnessLstmGrad` and `HarnessGruGrad` its backward pass; their matrix
products are oneDNN's GEMM (the `onednn-cpu-gomp` wheel, a dependency on x86-64
Linux) and their gate math is fused per step. They do the input products of all
steps as one GEMM and each weight gradient as one GEMM over all steps, as
oneDNN's RNN primitive and PyTorch's CPU LSTM do; TensorFlow's `BlockLSTM` does
neither, and Keras's GRU runs ~45 small ops per step (BUILD.md › Benchmark has
the figures).

The library is compiled with the machine's C++ compiler (`$CXX`, else g++) against
the installed TensorFlow, once per machine: the library is cached under
$XDG_CACHE_HOME/harness/kernels (~/.cache/...) by a key of the sources, the
TensorFlow version and the CPU, and written there atomically, so processes
starting together (a sweep's trials) never load a half-written file. Where it
cannot be built (no compiler, no oneDNN, another OS), `load` says why in one
warning and returns None: the LSTM then runs `BlockLSTM`, the GRU Keras's loop.
"""

import functools
import hashlib
import importlib.metadata
import os
import pathlib
import platform
import shlex
import subprocess
import tempfile
import time

from absl import logging
import tensorflow as tf

KERNELS = pathlib.Path(__file__).parent / 'kernels'
SOURCES = ('fused_kernels.h', 'fused_kernels.cc', 'scan_kernels.h', 'scan_kernels.cc', 'fused_ops.cc')
# The kernel file is compiled for this CPU's vector units; it includes no TensorFlow header
# (Eigen's AVX-512 FP16 code in those does not compile with GCC 12 under -march=native).
KERNEL_FLAGS = ('-O3', '-march=native', '-fno-math-errno', '-fopenmp-simd', '-std=c++17')
OP_FLAGS = ('-O2', '-w')


class Unavailable(Exception):
  """Why the ops cannot be built or loaded on this machine (one line)."""


def _distribution_file(distribution, suffix):
  """The installed file of a pip distribution whose path ends with `suffix`."""
  try:
    files = importlib.metadata.files(distribution) or ()
  except importlib.metadata.PackageNotFoundError:
    raise Unavailable(f'{distribution} is not installed (pip install {distribution})') from None
  for file in files:
    if str(file).endswith(suffix):
      return pathlib.Path(file.locate()).resolve()
  raise Unavailable(f'{distribution} has no {suffix}')


def _onednn_dirs():
  """(include dir, lib dir) of oneDNN from the onednn-cpu-gomp and onednn-devel-cpu-gomp wheels."""
  header = _distribution_file('onednn-devel-cpu-gomp', 'include/oneapi/dnnl/dnnl.h')
  library = _distribution_file('onednn-cpu-gomp', '/libdnnl.so.3')
  return header.parents[2], library.parent


def _cpu_flags():
  try:
    with open('/proc/cpuinfo') as f:
      return next((line for line in f if line.startswith('flags')), '')
  except OSError:
    return ''


def _cache_dir():
  root = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return pathlib.Path(root) / 'harness' / 'kernels'


def _commands(compiler, include_dir, lib_dir, work, target):
  """The compile and link command lines that build the ops into `target`."""
  kernel, scan, op = [str(work / name) for name in ('fused_kernels.o', 'scan_kernels.o', 'fused_ops.o')]
  return [
      [*compiler, '-c', '-fPIC', *KERNEL_FLAGS, f'-I{include_dir}', str(KERNELS / 'fused_kernels.cc'), '-o', kernel],
      [*compiler, '-c', '-fPIC', *KERNEL_FLAGS, str(KERNELS / 'scan_kernels.cc'), '-o', scan],
      [*compiler, '-c', '-fPIC', *OP_FLAGS, *tf.sysconfig.get_compile_flags(), f'-I{KERNELS}',
       str(KERNELS / 'fused_ops.cc'), '-o', op],
      [*compiler, '-shared', kernel, scan, op, '-o', str(target), *tf.sysconfig.get_link_flags(), f'-L{lib_dir}',
       '-l:libdnnl.so.3', '-lgomp', f'-Wl,-rpath,{lib_dir}'],
  ]


def library_path():
  """Where this machine's build of the ops is (built, if it is not there yet); raises Unavailable."""
  if platform.system() != 'Linux' or platform.machine() != 'x86_64':
    raise Unavailable(f'it is built for x86-64 Linux only, not {platform.system()} {platform.machine()}')
  include_dir, lib_dir = _onednn_dirs()
  compiler = shlex.split(os.environ.get('CXX') or 'g++')  # 'ccache g++' too.
  key = hashlib.sha256()
  for name in SOURCES:
    key.update((KERNELS / name).read_bytes())
  for part in (tf.__version__, compiler, str(include_dir), str(lib_dir), _cpu_flags(), KERNEL_FLAGS, OP_FLAGS):
    key.update(repr(part).encode())
  target = _cache_dir() / f'harness_fused_{key.hexdigest()[:16]}.so'
  if target.exists():
    return target
  target.parent.mkdir(parents=True, exist_ok=True)
  logging.info('fused_ops: building the CPU LSTM and GRU ops into %s (once per machine, 10-30 s) ...', target)
  start = time.monotonic()
  with tempfile.TemporaryDirectory(dir=target.parent) as work:
    work = pathlib.Path(work)
    for command in _commands(compiler, include_dir, lib_dir, work, work / target.name):
      try:
        subprocess.run(command, check=True, capture_output=True, text=True, errors='replace')
      except FileNotFoundError:
        raise Unavailable(f'no C++ compiler {shlex.join(compiler)!r} (install g++, or set $CXX)') from None
      except subprocess.CalledProcessError as error:
        lines = error.stderr.strip().splitlines()
        first_error = next((line for line in lines if 'error' in line), lines[-1] if lines else 'no output')
        raise Unavailable(f'{shlex.join(command[:len(compiler) + 1])} ... failed: {first_error.strip()}') from None
    os.replace(work / target.name, target)  # Atomic: a process starting beside this one sees all or nothing.
  logging.info('fused_ops: built in %.0f s', time.monotonic() - start)
  return target


@functools.cache
def load():
  """The ops' module (`harness_lstm`, `harness_gru` and their gradients), or None with one warning saying why."""
  try:
    path = library_path()
  except (Unavailable, OSError) as reason:  # OSError: a cache folder it cannot write, say.
    logging.warning('fused_ops: the harness\'s CPU LSTM and GRU ops are unavailable (%s); LSTMs run '
                    'TensorFlow\'s BlockLSTM and GRUs Keras\'s loop, slower.', reason)
    return None
  try:
    module = tf.load_op_library(str(path))
  except (OSError, tf.errors.OpError) as error:
    logging.warning('fused_ops: could not load %s (%s); LSTMs run TensorFlow\'s BlockLSTM and GRUs Keras\'s '
                    'loop, slower.', path, str(error).strip().splitlines()[-1])
    return None

  # An output no loss reaches may get None for its gradient.
  @tf.RegisterGradient('HarnessLstm')
  def _lstm_gradient(op, dh, dc, unused_dgates):
    """Gradients of (x, h0, c0, kernel, recurrent_kernel, bias) from those of the outputs h and c."""
    h, c, gates = op.outputs
    dh = tf.zeros_like(h) if dh is None else dh
    dc = tf.zeros_like(c) if dc is None else dc
    return module.harness_lstm_grad(*op.inputs[:5], h, c, gates, dh, dc)

  @tf.RegisterGradient('HarnessGru')
  def _gru_gradient(op, dh, unused_dgates):
    """Gradients of (x, h0, kernel, recurrent_kernel, bias) from that of the output h."""
    h, gates = op.outputs
    dh = tf.zeros_like(h) if dh is None else dh
    return module.harness_gru_grad(*op.inputs[:4], h, gates, dh)

  return module


def matmul(module, a, b):
  """a [m, k] @ b [k, n] float32 by oneDNN's GEMM (HarnessMatMul), differentiable: dA = dC b^T, dB = a^T dC."""

  @tf.custom_gradient
  def product(a, b):

    def gradient(upstream):
      return (module.harness_mat_mul(upstream, b, transpose_b=True),
              module.harness_mat_mul(a, upstream, transpose_a=True))

    return module.harness_mat_mul(a, b), gradient

  # Tensors, not variables: the tape differentiates the variables' reads, the custom gradient the product.
  return product(tf.convert_to_tensor(a), tf.convert_to_tensor(b))


def lstm(module, x, h0, c0, kernel, recurrent_kernel, bias):
  """The LSTM over time-major x [time, batch, features] from h0, c0 [batch, units].

  Weights in Keras's layout and gate order (i, f, c, o): kernel [features, 4 units],
  recurrent_kernel [units, 4 units], bias [4 units].

  Returns:
    (h [time, batch, units], c [time, batch, units]): every step's output and cell state.
  """
  h, c, _ = module.harness_lstm(x=x, h0=h0, c0=c0, kernel=kernel, recurrent_kernel=recurrent_kernel, bias=bias)
  return h, c


def gru(module, x, h0, kernel, recurrent_kernel, bias):
  """The GRU (Keras's, reset_after=True) over time-major x [time, batch, features] from h0 [batch, units].

  Weights in Keras's layout and gate order (z, r, h): kernel [features, 3 units],
  recurrent_kernel [units, 3 units], bias [2, 3 units] (input bias, recurrent bias).

  Returns:
    h [time, batch, units]: every step's output.
  """
  h, _ = module.harness_gru(x=x, h0=h0, kernel=kernel, recurrent_kernel=recurrent_kernel, bias=bias)
  return h
