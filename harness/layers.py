"""Recurrent layers: the builders of the Keras cells' archs, the forget-gate bias and the fused CPU LSTM and GRU.

Each builder is an `archs.Arch.layer`: builder(units, name, options) -> a layer
that returns its whole sequence and its final state (the contract in
`harness.archs`). `FusedLSTM` and `FusedGRU` are Keras's LSTM and GRU (same
weights, same math) whose whole sequence runs as one op on the CPU too, not
only on a GPU.
"""

import keras
import tensorflow as tf

from harness import archs
from harness import fused_ops


def simple_rnn(units, name, options):
  return keras.layers.SimpleRNN(units, return_sequences=True, return_state=True, name=name, dtype=options['dtype'])


def gru(units, name, options):
  return FusedGRU(units, return_sequences=True, return_state=True, name=name, dtype=options['dtype'])


def lstm(units, name, options):
  """A `FusedLSTM` or Keras's LSTM (`--lstm_kernel`), its forget-gate bias at options['forget_bias']."""
  kwargs = dict(return_sequences=True, return_state=True, unit_forget_bias=False,
                bias_initializer=ForgetGateBias(options['forget_bias']), name=name, dtype=options['dtype'])
  if not archs.uses_fused_lstm(options['lstm_kernel'], units, fused_ops.load() is not None):
    return keras.layers.LSTM(units, **kwargs)
  return FusedLSTM(units, op='block' if options['lstm_kernel'] == 'block' else 'harness', **kwargs)


class ForgetGateBias(keras.initializers.Initializer):
  """LSTM bias [4 * units] in Keras gate order (i, f, c, o): `forget_bias` on f, zeros elsewhere.

  The TF1 `BasicLSTMCell` added a constant forget bias at every step; starting
  the trainable bias there has the same effect at initialization (the gates
  start open, so gradients reach early time steps) and lets training move it.
  """

  def __init__(self, forget_bias):
    self.forget_bias = forget_bias

  def __call__(self, shape, dtype=None):
    units = shape[0] // 4
    dtype = dtype or 'float32'
    return tf.concat([
        tf.zeros([units], dtype),
        tf.fill([units], tf.cast(self.forget_bias, dtype)),
        tf.zeros([2 * units], dtype),
    ], axis=0)

  def get_config(self):
    return {'forget_bias': self.forget_bias}


def gpu_available():
  return bool(tf.config.list_logical_devices('GPU'))


# BlockLSTM's gate order (i, c, f, o), taken from Keras's (i, f, c, o).
_KERAS_TO_BLOCK_GATES = (0, 2, 1, 3)


class FusedLSTM(keras.layers.LSTM):
  """`keras.layers.LSTM` whose whole sequence is one fused op on every device.

  On a GPU this is Keras's own path: the cuDNN kernel. On the CPU Keras runs a
  `tf.while_loop` of ~15 small ops per step forward and ~30 backward, whose
  per-op cost dominates at research sizes; here one op runs the forward pass
  over all steps and one the backward pass: the harness's own `HarnessLstm`
  (`harness.fused_ops`: oneDNN GEMMs, the input products and weight gradients
  batched over all steps) or, with op='block' or where that cannot be built,
  TensorFlow's `BlockLSTM` (the kernel behind TF1's `LSTMBlockFusedCell`).
  Same variables (`kernel` [features, 4 * units], `recurrent_kernel`
  [units, 4 * units], `bias` [4 * units], gates in Keras order i, f, c, o),
  same math:

    i, f, o = sigmoid(.), c~ = tanh(.) of x_t @ kernel + h_{t-1} @ recurrent_kernel + bias
    c_t = f * c_{t-1} + i * c~,  h_t = o * tanh(c_t)

  so checkpoints move between this layer, `keras.layers.LSTM` and a GPU.
  `BlockLSTM` takes its gates as i, c, f, o, so for it the weights are
  reordered on the way in (their gradients on the way back), with its constant
  forget bias and cell clipping off. (`BlockLSTMV2` takes Keras's order, but
  TensorFlow registers BlockLSTM's gradient for it, which assumes the other
  order.) What the ops cannot express (masks, dropout, other activations,
  reversed or unrolled sequences) falls back to Keras's loop.
  """

  def __init__(self, units, op='harness', **kwargs):
    """op: 'harness' (`HarnessLstm`, or BlockLSTM where it cannot be built) or 'block' (BlockLSTM)."""
    if op not in ('harness', 'block'):
      raise ValueError(f"FusedLSTM op={op!r}: 'harness' or 'block'")
    super().__init__(units, **kwargs)
    self.op = op

  def get_config(self):
    return {**super().get_config(), 'op': self.op}

  def op_module(self):
    """The loaded `harness.fused_ops` module this layer runs, or None where it runs BlockLSTM."""
    return fused_ops.load() if self.op == 'harness' else None

  def _runs_fused_on_cpu(self, mask, training):
    # Neither op has a bfloat16 kernel: a mixed-precision layer runs Keras's loop in bfloat16.
    return (not gpu_available() and self.compute_dtype == 'float32' and mask is None and not self.go_backwards
            and not self.unroll
            and self.cell.use_bias and not (training and (self.dropout or self.recurrent_dropout))
            and self.cell.activation is keras.activations.tanh
            and self.cell.recurrent_activation is keras.activations.sigmoid)

  def inner_loop(self, sequences, initial_state, mask, training=False):
    """sequences [batch, time, features], initial_state [h, c] each [batch, units].

    Returns (last_output [batch, units], outputs [batch, time, units], [h, c]).
    """
    if not self._runs_fused_on_cpu(mask, training):
      return super().inner_loop(sequences, initial_state, mask, training=training)
    outputs, h, c = self._fused_lstm(sequences, initial_state, self.cell.kernel, self.cell.bias)
    return h, outputs if self.return_sequences else h, [h, c]

  def runs_folded(self, training):
    """Whether `call_folded` runs here: the fused CPU kernel, which takes the projection into its weights."""
    return self._runs_fused_on_cpu(None, training)

  def call_folded(self, inputs, projection, initial_state=None):
    """This layer over `projection(inputs)`, the linear projection folded into the op's input weights.

    x_t = inputs_t @ P + p feeds the gates through x_t @ kernel, so the op can take
    inputs_t itself with weights P @ kernel and bias p @ kernel + bias: the
    same function (to rounding) and the same gradients, by the chain rule
    through the product, but each step's matrix product is over the raw
    features (28 for image rows) instead of the projection's units.

    Args:
      inputs: [batch, time, raw features].
      projection: the Dense layer (kernel [raw features, features], bias) that feeds this layer.
      initial_state: None (zeros) or [h, c], each [batch, units].

    Returns:
      (outputs [batch, time, units], h, c).
    """
    if initial_state is None:
      zeros = tf.zeros([tf.shape(inputs)[0], self.cell.units], inputs.dtype)
      initial_state = [zeros, zeros]
    kernel = tf.matmul(projection.kernel, self.cell.kernel)
    bias = self.cell.bias + tf.linalg.matvec(self.cell.kernel, projection.bias, transpose_a=True)
    return self._fused_lstm(inputs, initial_state, kernel, bias)

  def _fused_lstm(self, sequences, initial_state, kernel, bias):
    """The fused op over [batch, time, features] with these input weights: (outputs [b, t, units], h, c)."""
    module = self.op_module()
    if module is None:
      return self._block_lstm(sequences, initial_state, kernel, bias)
    h_initial, c_initial = initial_state
    hidden, cell_states = fused_ops.lstm(module, tf.transpose(sequences, [1, 0, 2]), h_initial, c_initial, kernel,
                                       self.cell.recurrent_kernel, bias)
    return tf.transpose(hidden, [1, 0, 2]), hidden[-1], cell_states[-1]

  def _block_lstm(self, sequences, initial_state, kernel, bias):
    """BlockLSTM over [batch, time, features] with these input weights: (outputs [b, t, units], h, c)."""
    h_initial, c_initial = initial_state
    units = self.cell.units

    def block_gate_order(tensor):
      return tf.concat([tf.split(tensor, 4, axis=-1)[g] for g in _KERAS_TO_BLOCK_GATES], axis=-1)

    weights = block_gate_order(tf.concat([kernel, self.cell.recurrent_kernel], axis=0))
    no_peephole = tf.zeros([units], sequences.dtype)
    time_major = tf.transpose(sequences, [1, 0, 2])
    # The op logs a warning at every call when batch x features or batch x units
    # is odd; an odd batch gets one zero row (its outputs are dropped, so it adds
    # nothing to any gradient).
    batch = sequences.shape[0] if sequences.shape[0] is not None else tf.shape(sequences)[0]
    pad_rows = batch % 2
    if not isinstance(pad_rows, int) or pad_rows:
      time_major = tf.pad(time_major, [[0, 0], [0, pad_rows], [0, 0]])
      h_initial, c_initial = (tf.pad(s, [[0, pad_rows], [0, 0]]) for s in (h_initial, c_initial))
    # Outputs: i, cs, f, o, ci, co, h, each [time, batch (+ pad), units].
    _, cell_states, _, _, _, _, hidden = tf.raw_ops.BlockLSTM(
        seq_len_max=tf.cast(tf.shape(time_major)[0], tf.int64), x=time_major, cs_prev=c_initial,
        h_prev=h_initial, w=weights, wci=no_peephole, wcf=no_peephole, wco=no_peephole,
        b=block_gate_order(bias), forget_bias=0.0, cell_clip=0.0, use_peephole=False)
    hidden, cell_states = hidden[:, :batch], cell_states[:, :batch]
    return tf.transpose(hidden, [1, 0, 2]), hidden[-1], cell_states[-1]


class FusedGRU(keras.layers.GRU):
  """`keras.layers.GRU` (reset_after, as cuDNN's) whose whole sequence is one fused op on the CPU too.

  On a GPU this is Keras's cuDNN path. On the CPU Keras's loop runs ~15 small
  ops per step forward and ~30 backward; here `HarnessGru` (`harness.fused_ops`)
  runs the forward pass over all steps and `HarnessGruGrad` the backward pass.
  Same variables (`kernel` [features, 3 * units], `recurrent_kernel`
  [units, 3 * units], `bias` [2, 3 * units], gates z, r, h), same math:

    z, r = sigmoid(x_t W + b_i + h_{t-1} U + b_r),  h~ = tanh(x_t W_h + b_ih + r * (h_{t-1} U_h + b_rh))
    h_t = z * h_{t-1} + (1 - z) * h~

  What the op cannot express (masks, dropout, other activations, reset before
  the product, reversed or unrolled sequences), or a machine where it cannot
  be built, falls back to Keras's loop.
  """

  def _runs_fused_on_cpu(self, mask, training):
    return (not gpu_available() and self.compute_dtype == 'float32' and mask is None and not self.go_backwards
            and not self.unroll and self.cell.use_bias and self.cell.reset_after
            and not (training and (self.dropout or self.recurrent_dropout))
            and self.cell.activation is keras.activations.tanh
            and self.cell.recurrent_activation is keras.activations.sigmoid
            and fused_ops.load() is not None)

  def inner_loop(self, sequences, initial_state, mask, training=False):
    """sequences [batch, time, features], initial_state [h] or h [batch, units].

    Returns (last_output [batch, units], outputs [batch, time, units], [h]).
    """
    if not self._runs_fused_on_cpu(mask, training):
      return super().inner_loop(sequences, initial_state, mask, training=training)
    h_initial = initial_state[0] if isinstance(initial_state, (list, tuple)) else initial_state
    hidden = fused_ops.gru(fused_ops.load(), tf.transpose(sequences, [1, 0, 2]), h_initial, self.cell.kernel,
                           self.cell.recurrent_kernel, self.cell.bias)
    h = hidden[-1]
    return h, tf.transpose(hidden, [1, 0, 2]) if self.return_sequences else h, [h]
