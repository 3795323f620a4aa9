"""Linear recurrent layers, each in the block its paper trains it in: minGRU, minLSTM and the LRU.

Each layer is one block over [batch, time, features] and runs its recurrence
h_t = a_t * h_{t-1} + b_t with `harness.scan.linear_scan` (in float32 / complex64
even under a bfloat16 policy: the projections run in the compute dtype, the
scan's coefficients are cast up first). Where the input width differs from
`units`, a linear projection (the papers' "encoder") maps it to `units` first,
so that the residual adds like to like.

  minGRU, minLSTM (Feng et al. 2024, "Were RNNs All We Needed?"), in the
  pre-norm residual block of their language-model code (lucidrains/minGRU-pytorch
  `minGRULM`, with LayerNorm for RMSNorm):
    x <- x + minRNN(LayerNorm(x));  x <- x + MLP(LayerNorm(x)),  MLP = Dense(e u), GELU, Dense(u)
  (e = options['mlp_expansion']; 0 drops the MLP half). No dropout: the
  harness has none to set.

  LRU (Orvieto et al. 2023, "Resurrecting Recurrent Neural Networks for Long
  Sequences"), in their pre-norm block (the paper's Fig. 1; NicolasZucchet/minimal-LRU
  `SequenceLayer` with prenorm): x <- x + GLU(GELU(LRU(LayerNorm(x)))),
  GLU(y) = Dense(y) * sigmoid(Dense'(y)). LayerNorm, not BatchNorm, so that a
  carried state gives the same outputs as one long call. No dropout.

The state a layer returns is the recurrence's h_T (the LRU's as real and
imaginary parts), float32; outputs are in the compute dtype.
"""

import math

import keras
import numpy as np
import tensorflow as tf

from harness import fused_ops
from harness import linear_specs
from harness import scan


class _GemmDense(keras.layers.Dense):
  """keras.layers.Dense whose product runs oneDNN's GEMM (`fused_ops.matmul`) where `gemm` and in float32.

  The same variables and function; on the CPU at the linear blocks' shapes
  ([B*T, u] x [u, k]) oneDNN reaches 2-3x TensorFlow's MatMul (BUILD.md › The
  linear scan). Elsewhere (bfloat16, no fused ops) it is a plain Dense.
  """

  def __init__(self, units, gemm=False, **kwargs):
    super().__init__(units, **kwargs)
    self.gemm = gemm

  def call(self, inputs, training=None):
    if not self.gemm or self.compute_dtype != 'float32':
      return super().call(inputs, training=training)
    return self.activation(_matmul(inputs, self.kernel) + self.bias)  # Keras's activation: linear when none.


def _matmul(x, w):
  """x [..., i] @ w [i, o] by oneDNN's GEMM over all leading positions at once."""
  flat = fused_ops.matmul(fused_ops.load(), tf.reshape(x, [-1, x.shape[-1]]), w)
  return tf.reshape(flat, tf.concat([tf.shape(x)[:-1], [w.shape[-1]]], 0))


def _g(x):
  """minGRU's candidate activation (Feng et al. 2024, App. B.3): x + 0.5 for x >= 0, sigmoid(x) below; always > 0."""
  return tf.where(x >= 0, x + 0.5, tf.sigmoid(x))


class LinearRecurrentBlock(keras.layers.Layer):
  """The block shared by the three layers: input projection, pre-norm, recurrence, residual, channel mixer.

  Subclasses give `_build_recurrence`, `_coefficients` (a, b and the gates) and
  `_readout` (the recurrence's output per step), and `_build_mixer` / `_mix`.
  """

  STATE_DTYPE = tf.float32  # What the scan runs in.
  SHARED_A = False  # Whether a is one [units] for every step and row (the LRU's lambda).
  # --scan_kernel=auto never takes the fused op here: each arch XLA-compiles its block's whole pass
  # (`archs.Arch.jit_compile`), which fuses the norms, gates and residuals too and measured faster
  # than the fused op beside TensorFlow's unfused ones (BUILD.md › The linear scan); XLA cannot
  # compile the op. --scan_kernel=fused takes it (and oneDNN's GEMM for the products) without XLA.
  AUTO_KERNEL = None  # What auto runs on every device, or None: `scan.choose_kernel`'s rule.

  def __init__(self, units, scan_kernel='auto', **kwargs):
    super().__init__(**kwargs)
    self.units = units
    self.scan_kernel = scan_kernel

  def kernel_description(self):
    """Which scan kernel runs this layer (`models.recurrent_kernel_name`)."""
    if self.scan_kernel == 'auto' and self.AUTO_KERNEL:
      return scan.describe(self.AUTO_KERNEL, self.units).replace('; ', '; auto: ', 1)
    return scan.describe(self.scan_kernel, self.units, fused=False)

  def _kernel(self, kernel, steps, batch):
    """The kernel a call runs: `auto` as AUTO_KERNEL says, else `scan.choose_kernel`'s rule without the fused op."""
    if kernel != 'auto':
      return kernel
    if self.AUTO_KERNEL:
      return self.AUTO_KERNEL
    return scan.choose_kernel(steps, batch, self.units, self.STATE_DTYPE,
                              on_gpu=bool(tf.config.list_logical_devices('GPU')), fused=False)

  def _dense(self, units, name, activation=None):
    return _GemmDense(units, gemm=self._gemm, activation=activation, name=name, dtype=self.dtype_policy)

  def _product(self, x, w):
    """x [..., i] @ w [i, o], on oneDNN's GEMM where this block runs fused ops in float32."""
    return _matmul(x, w) if self._gemm and x.dtype == tf.float32 else tf.matmul(x, w)

  def build(self, input_shape):
    # Where the scan runs the fused op, the pass is not XLA-compiled: its products take oneDNN's GEMM too.
    self._gemm = self.runs_fused_op()
    width = input_shape[-1]
    self.encoder = self._dense(self.units, 'encoder') if width != self.units else None
    self.norm = keras.layers.LayerNormalization(epsilon=1e-5, name='norm', dtype=self.dtype_policy)
    self._build_recurrence()
    self._build_mixer()
    self.built = True  # The Dense and norm sublayers build at the first call.

  def run(self, inputs, initial_state=None, perturbation=None, kernel=None):
    """(outputs [batch, time, units], h [time, batch, n] float32 or complex64, {gate: [time, batch, n]}).

    Inside, everything runs time-major ([time, batch, .]; the per-step layers do not
    care), so the scan reads its coefficients without transposing them: the scan is
    memory-bound, and each transpose costs as much as one pass over them.

    perturbation: None or [time, batch, n] float32, added to b_t (the LRU: to its real part).
    """
    x = tf.transpose(inputs, [1, 0, 2])
    x = self.encoder(x) if self.encoder is not None else x
    normed = self.norm(x)
    h0 = None if initial_state is None else self._state_in(initial_state)
    kernel = self._kernel(kernel or self.scan_kernel, normed.shape[0], normed.shape[1])
    if perturbation is None and self._folds_gates(kernel, normed):
      h, gates = self._gated_recurrence(normed, h0), {}
    else:
      a, b, gates = self._coefficients(normed)
      if perturbation is not None:
        b += tf.cast(perturbation, b.dtype)
      h = scan.linear_scan(a, b, h0, kernel=kernel, time_major=True)
    return tf.transpose(self._mix(x, self._readout(h, normed)), [1, 0, 2]), h, gates

  def _folds_gates(self, kernel, normed):
    """Whether the gates run inside the fused scan op (`scan.gated_scan`): never for the LRU."""
    del kernel, normed
    return False

  def runs_fused_op(self):
    """Whether this layer's scan runs a fused op of the harness (which XLA cannot compile)."""
    return scan.fused_kernel_runs(self._kernel(self.scan_kernel, None, None), None, None, self.units,
                                  self.STATE_DTYPE)

  def call(self, inputs, initial_state=None, training=False, perturbation=None, gates=False):
    """[outputs [batch, time, units], *final state [batch, n] float32], or with gates=True (`unroll`)
    (outputs, {gate: [batch, time, n]}) from the sequential kernel with the perturbation added to b_t."""
    del training  # No dropout, no batch statistics.
    if gates:
      outputs, _, step_gates = self.run(inputs, initial_state, perturbation, kernel='sequential')
      return outputs, {name: tf.transpose(gate, [1, 0, 2]) for name, gate in step_gates.items()}
    outputs, h, _ = self.run(inputs, initial_state, perturbation)
    return [outputs, *self._state_out(h[-1])]

  def _state_in(self, state):
    return tf.convert_to_tensor(state[0], tf.float32)

  def _state_out(self, h_last):
    return [h_last]


class _MinRNNBlock(LinearRecurrentBlock):
  """minGRU / minLSTM: the pre-norm residual block with a per-step MLP (module docstring)."""

  def __init__(self, units, mlp_expansion=4, **kwargs):
    super().__init__(units, **kwargs)
    self.mlp_expansion = mlp_expansion

  def _build_recurrence(self):
    self.projection = self._dense(self.GATE_COUNT * self.units, 'projection')

  def _build_mixer(self):
    if self.mlp_expansion:
      self.mlp_norm = keras.layers.LayerNormalization(epsilon=1e-5, name='mlp_norm', dtype=self.dtype_policy)
      self.mlp_in = self._dense(self.mlp_expansion * self.units, 'mlp_in', activation='gelu')
      self.mlp_out = self._dense(self.units, 'mlp_out')

  def _folds_gates(self, kernel, normed):
    return scan.fused_kernel_runs(kernel, normed.shape[0], normed.shape[1], self.units, tf.float32)

  def _gated_recurrence(self, normed, h0):
    return scan.gated_scan(self.CELL, tf.cast(self.projection(normed), tf.float32), h0)

  def _readout(self, h, normed):
    return tf.cast(h, normed.dtype)

  def _mix(self, x, y):
    x += y
    return x + self.mlp_out(self.mlp_in(self.mlp_norm(x))) if self.mlp_expansion else x


class MinGRU(_MinRNNBlock):
  """minGRU (Feng et al. 2024): h_t = (1 - z_t) h_{t-1} + z_t h~_t, z_t = sigmoid(W_z x_t), h~_t = g(W_h x_t).

  g (App. B.3) keeps h~ > 0 and so h > 0 from h_0 >= 0: the paper's log-space
  form log h_t = log-cumsum-exp of log(1 - z) and log z + log g(.), which the
  `logcumsumexp` scan kernel computes; a = 1 - z is taken as sigmoid(-k) so it
  only underflows for k > 88. Weights: one Dense [units, 2 units] + bias (z, h~).
  """

  GATE_COUNT = 2
  CELL = 'mingru'

  def _coefficients(self, normed):
    k_z, k_h = tf.split(tf.cast(self.projection(normed), tf.float32), 2, axis=-1)
    z, candidate = tf.sigmoid(k_z), _g(k_h)
    return tf.sigmoid(-k_z), z * candidate, {'update': z, 'candidate': candidate}


class MinLSTM(_MinRNNBlock):
  """minLSTM (Feng et al. 2024): h_t = f'_t h_{t-1} + i'_t h~_t with f' = f / (f + i), i' = i / (f + i).

  f_t = sigmoid(W_f x_t), i_t = sigmoid(W_i x_t), h~_t = g(W_h x_t) (g as in `MinGRU`).
  The normalised gates are computed as the paper's log-space form does: with
  d = softplus(-k_f) - softplus(-k_i) = log(i / f), f' = sigmoid(-d), i' = sigmoid(d),
  so f' + i' = 1 and h stays a convex mix (time-independent scale).
  Weights: one Dense [units, 3 units] + bias (f, i, h~).
  """

  GATE_COUNT = 3
  CELL = 'minlstm'

  def _coefficients(self, normed):
    k_f, k_i, k_h = tf.split(tf.cast(self.projection(normed), tf.float32), 3, axis=-1)
    log_ratio = tf.nn.softplus(-k_f) - tf.nn.softplus(-k_i)
    forget, input_, candidate = tf.sigmoid(-log_ratio), tf.sigmoid(log_ratio), _g(k_h)
    return forget, input_ * candidate, {'forget': forget, 'input': input_, 'candidate': candidate}


class LRU(LinearRecurrentBlock):
  """The Linear Recurrent Unit (Orvieto et al. 2023), state size N = units.

    h_t = lambda * h_{t-1} + gamma * (B x_t),  y_t = Re(C h_t) + D * x_t
    lambda = exp(-exp(nu) + i exp(theta)),  gamma = exp(gamma_log)

  lambda is diagonal and complex; nu, theta [N] parametrise it so that
  |lambda| = exp(-exp(nu)) stays in (0, 1). Ring initialisation: |lambda|^2
  uniform in [r_min^2, r_max^2], phase uniform in [0, max_phase].
  gamma_log starts at log sqrt(1 - |lambda|^2), the normalisation that keeps
  E|h|^2 at the input's scale for white noise, and is trained, as in the paper's
  code. B = B_re + i B_im [units, N] ~ N(0, 1 / (2 units)) each part, C [N, units]
  ~ N(0, 1 / N) each part, D [units] ~ N(0, 1). The recurrence runs in complex64.
  """

  STATE_DTYPE = tf.complex64
  SHARED_A = True
  # The while-loop under XLA: XLA took over 15 minutes to compile the chunked kernel's unrolled complex steps.
  AUTO_KERNEL = 'sequential'

  def __init__(self, units, r_min=0.9, r_max=0.999, max_phase=2 * math.pi, **kwargs):
    super().__init__(units, **kwargs)
    self.r_min, self.r_max, self.max_phase = r_min, r_max, max_phase

  def _build_recurrence(self):
    n = self.units
    # Unseeded initializers draw from Keras's global seed, like every Dense kernel. Drawn eagerly
    # (init_scope), as values: the layer may first be built inside a tf.function, whose tensors
    # its variables' initializers could not read later.
    with tf.init_scope():
      modulus_squared = keras.initializers.RandomUniform(self.r_min ** 2, self.r_max ** 2)([n]).numpy()
      nu_log = np.log(-0.5 * np.log(modulus_squared))
      theta_log = np.log(keras.initializers.RandomUniform(0.0, self.max_phase)([n]).numpy())
      gamma_log = np.log(np.sqrt(1.0 - modulus_squared))
    # autocast=False: lambda and gamma stay float32 under a bfloat16 policy.
    self.nu_log = self.add_weight(name='nu_log', shape=[n], initializer=_constant(nu_log), autocast=False)
    self.theta_log = self.add_weight(name='theta_log', shape=[n], initializer=_constant(theta_log), autocast=False)
    self.gamma_log = self.add_weight(name='gamma_log', shape=[n], initializer=_constant(gamma_log), autocast=False)
    b_init = keras.initializers.RandomNormal(stddev=1.0 / math.sqrt(2 * self.units))
    c_init = keras.initializers.RandomNormal(stddev=1.0 / math.sqrt(n))
    self.b_re = self.add_weight(name='b_re', shape=[self.units, n], initializer=b_init)
    self.b_im = self.add_weight(name='b_im', shape=[self.units, n], initializer=b_init)
    self.c_re = self.add_weight(name='c_re', shape=[n, self.units], initializer=c_init)
    self.c_im = self.add_weight(name='c_im', shape=[n, self.units], initializer=c_init)
    self.d = self.add_weight(name='d', shape=[self.units], initializer=keras.initializers.RandomNormal())

  def _build_mixer(self):
    self.glu_value = self._dense(self.units, 'glu_value')
    self.glu_gate = self._dense(self.units, 'glu_gate', activation='sigmoid')

  @property
  def modulus(self):
    """|lambda| [N]."""
    return tf.exp(-tf.exp(self.nu_log))

  @property
  def phase(self):
    """arg lambda [N] in radians."""
    return tf.exp(self.theta_log)

  @property
  def timescale(self):
    """1 / (1 - |lambda|) [N]: the steps over which a unit's memory decays by ~1/e."""
    return 1.0 / (1.0 - self.modulus)

  def _coefficients(self, normed):
    gamma = tf.exp(self.gamma_log)
    b = tf.complex(tf.cast(self._product(normed, self.b_re), tf.float32) * gamma,
                   tf.cast(self._product(normed, self.b_im), tf.float32) * gamma)
    modulus, phase = self.modulus, self.phase
    # a = lambda [N], the same at every step: the scan reads it once, not [time, batch, N] times.
    lam = tf.complex(modulus * tf.cos(phase), modulus * tf.sin(phase))
    shape = tf.shape(b)
    return lam, b, {'modulus': tf.broadcast_to(modulus, shape), 'phase': tf.broadcast_to(phase, shape)}

  def _readout(self, h, normed):
    h_re, h_im = (tf.cast(part, normed.dtype) for part in (tf.math.real(h), tf.math.imag(h)))
    return self._product(h_re, self.c_re) - self._product(h_im, self.c_im) + self.d * normed

  def _mix(self, x, y):
    y = keras.activations.gelu(y)
    return x + self.glu_value(y) * self.glu_gate(y)

  def _state_in(self, state):
    return tf.complex(tf.convert_to_tensor(state[0], tf.float32), tf.convert_to_tensor(state[1], tf.float32))

  def _state_out(self, h_last):
    return [tf.math.real(h_last), tf.math.imag(h_last)]


def _constant(value):
  return lambda shape, dtype=None: tf.cast(value, dtype or 'float32')


def _options(options):
  return linear_specs.options_with_defaults(options)


def build_mingru(units, name, options):
  o = _options(options)
  return MinGRU(units, mlp_expansion=o['mlp_expansion'], scan_kernel=o['scan_kernel'], name=name,
                dtype=options['dtype'])


def build_minlstm(units, name, options):
  o = _options(options)
  return MinLSTM(units, mlp_expansion=o['mlp_expansion'], scan_kernel=o['scan_kernel'], name=name,
                 dtype=options['dtype'])


def build_lru(units, name, options):
  o = _options(options)
  return LRU(units, r_min=o['lru_r_min'], r_max=o['lru_r_max'], max_phase=o['lru_max_phase'],
             scan_kernel=o['scan_kernel'], name=name, dtype=options['dtype'])


# Arch name -> builder(units, name, options) -> layer (the arch contract).
BUILDERS = {'mingru': build_mingru, 'minlstm': build_minlstm, 'lru': build_lru}


def unroll(layer, inputs, initial_state=None, perturbation=None):
  """The probes' reference: the layer re-run by the sequential kernel, perturbation added to b_t.

  Args:
    layer: a MinGRU, MinLSTM or LRU (built).
    inputs: [batch, time, features].
    initial_state: None (zeros) or the layer's state tensors, each [batch, n] float32.
    perturbation: None or [time, batch, n] float32 added to b_t (the LRU: to its real
      part); d loss / d perturbation_t is the total dL/dh_t (its real part for the LRU).

  Returns:
    (outputs [batch, time, units], {gate: [batch, time, n] float32}) in the order of
    `linear_specs.GATES`.
  """
  # Through __call__, so that a mixed-precision layer casts its inputs and weights as in training.
  return layer(inputs, initial_state=initial_state, perturbation=perturbation, gates=True)
