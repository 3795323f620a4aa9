"""What the arch table needs to know about the linear recurrent layers, without TensorFlow.

The layers themselves are in `harness.linear_layers`; this module holds their
state sizes, parameter counts, gates and options so that a TensorFlow-free
table (config, validation, memory checks) can read them.
"""

import math

ARCHS = ('mingru', 'minlstm', 'lru')
SCAN_KERNELS = ('auto', 'fused', 'sequential', 'chunked', 'associative', 'logcumsumexp')

# Options the builders read beyond the contract's (dtype, forget_bias, lstm_kernel).
DEFAULT_OPTIONS = {
    'scan_kernel': 'auto',
    # minGRU / minLSTM blocks: hidden width of the per-step MLP over units (0: no MLP).
    'mlp_expansion': 4,
    # LRU ring initialisation (Orvieto et al. 2023, Sec. 3.2 and their long-range settings):
    # |lambda| uniform on the ring [r_min, r_max] of the complex plane, phase in [0, max_phase].
    'lru_r_min': 0.9,
    'lru_r_max': 0.999,
    'lru_max_phase': 2 * math.pi,
}

# Per arch, its gates in `unroll` order and their kind: 'sigmoid' (in [0, 1], saturated below
# 0.1 or above 0.9), 'tanh' (saturated where |x| > 0.9) or None (neither).
GATES = {
    'mingru': (('update', 'sigmoid'), ('candidate', None)),
    'minlstm': (('forget', 'sigmoid'), ('input', 'sigmoid'), ('candidate', None)),
    'lru': (('modulus', None), ('phase', None)),
}

# What `unroll`'s perturbation [time, batch, n] is added to: b_t of h_t = a_t h_{t-1} + b_t
# (for the LRU, the real part of the complex b_t; n is the state size N).
PERTURBED = 'b_t (LRU: its real part)'


def options_with_defaults(options):
  return {**DEFAULT_OPTIONS, **{k: v for k, v in (options or {}).items() if k in DEFAULT_OPTIONS}}


def state_sizes(arch, units):
  """Sizes of one layer's state tensors: h [units]; the LRU's complex h as real and imaginary parts [N, N], N = units."""
  return [units, units] if arch == 'lru' else [units]


def parameter_count(arch, width_in, units, options=None):
  """Trainable parameters of one layer (block included) fed `width_in` features."""
  options = options_with_defaults(options)
  count = (width_in + 1) * units if width_in != units else 0  # The block's input projection.
  count += 2 * units  # The pre-norm's scale and offset.
  if arch == 'lru':
    state = units
    # nu, theta, gamma [N]; B (real, imaginary) [units, N]; C (real, imaginary) [N, units]; D [units];
    # the GLU's two Dense layers.
    return count + 3 * state + 4 * units * state + units + 2 * (units + 1) * units
  count += (2 if arch == 'mingru' else 3) * (units + 1) * units
  expansion = options['mlp_expansion']
  if expansion:
    hidden = expansion * units
    count += 2 * units + (units + 1) * hidden + (hidden + 1) * units  # Second norm, the MLP.
  return count
