"""Reference recurrences: Keras's SimpleRNN, GRU and LSTM cells re-run step by step from a layer's weights.

The kernels that train the model hide what the probes need: BlockLSTM and
cuDNN run a whole sequence as one op and expose no gates, and the gradient with
respect to a layer's output sequence is only the direct path into the next
layer. `unroll` recomputes a layer's recurrence in plain TensorFlow ops with
the same weights and returns every step's gates, and it adds a perturbation
to each step's hidden state, so that the gradient with respect to the
perturbation is the *total* derivative of the loss with respect to h_t,
through every later step. Tests check that the recomputed outputs equal the
layer's own on every kernel.

Keras's conventions (Keras 3): LSTM gates in order (i, f, c, o) in one kernel
[features, 4 units], recurrent kernel [units, 4 units] and bias [4 units]; GRU
(z, r, h) with `reset_after` biases [2, 3 units] and h_t = z h_{t-1} + (1 - z) h~.
"""

import keras
import tensorflow as tf

# Which gates are sigmoids (saturated below 0.1 or above 0.9) and which are
# tanh (saturated where |x| > 0.9); 'cell' (the LSTM's cell state) is neither.
SIGMOID_GATES = ('input', 'forget', 'output', 'update', 'reset')
TANH_GATES = ('candidate', 'activation')


def gate_names(layer):
  """The gates `unroll` returns for this layer, in order."""
  if isinstance(layer, keras.layers.LSTM):
    return ('input', 'forget', 'candidate', 'output', 'cell')
  if isinstance(layer, keras.layers.GRU):
    return ('update', 'reset', 'candidate')
  return ('activation',)


def _check_supported(layer):
  cell = layer.cell
  if getattr(cell, 'activation', None) is not keras.activations.tanh or (
      hasattr(cell, 'recurrent_activation') and cell.recurrent_activation is not keras.activations.sigmoid):
    raise ValueError(f'{layer.name}: reference recurrences cover tanh / sigmoid cells only')
  if not cell.use_bias or layer.go_backwards:
    raise ValueError(f'{layer.name}: reference recurrences need biases and forward sequences')


def unroll(layer, inputs, initial_state=None, perturbation=None):
  """Re-runs a recurrent layer from its weights, one step at a time.

  Args:
    layer: a keras.layers.SimpleRNN, GRU or LSTM (FusedLSTM included).
    inputs: [batch, time, features].
    initial_state: None (zeros) or the layer's state tensors [batch, units] (LSTM: h, c).
    perturbation: None or [time, batch, units], added to h_t once it is computed (before
      it reaches the next step and the next layer); differentiate with respect to it to
      get dL/dh_t.

  Returns:
    (outputs [batch, time, units], {gate name: [batch, time, units]}) in `gate_names` order.
  """
  _check_supported(layer)
  cell = layer.cell
  units = cell.units
  batch = tf.shape(inputs)[0]
  time_major = tf.transpose(inputs, [1, 0, 2])
  steps = tf.shape(time_major)[0]
  if perturbation is None:
    perturbation = tf.zeros([steps, batch, units], inputs.dtype)
  zeros = tf.zeros([batch, units], inputs.dtype)
  lstm = isinstance(layer, keras.layers.LSTM)
  gru = isinstance(layer, keras.layers.GRU)
  state = list(initial_state) if initial_state is not None else [zeros] * (2 if lstm else 1)
  names = gate_names(layer)

  if gru and cell.reset_after:
    input_bias, recurrent_bias = cell.bias[0], cell.bias[1]
  else:
    input_bias, recurrent_bias = cell.bias, None
  # The input half of every step at once: [time, batch, gates * units].
  projected = tf.einsum('tbf,fg->tbg', time_major, cell.kernel) + input_bias

  def step(carry, elements):
    x_t, delta_t = elements
    h_previous = carry[0]
    if lstm:
      z = x_t + tf.matmul(h_previous, cell.recurrent_kernel)
      z_i, z_f, z_c, z_o = tf.split(z, 4, axis=-1)
      i, f, g, o = tf.sigmoid(z_i), tf.sigmoid(z_f), tf.tanh(z_c), tf.sigmoid(z_o)
      c = f * carry[1] + i * g
      h = o * tf.tanh(c) + delta_t
      return (h, c, i, f, g, o, c)
    if gru:
      x_z, x_r, x_h = tf.split(x_t, 3, axis=-1)
      recurrent = tf.matmul(h_previous, cell.recurrent_kernel)
      if recurrent_bias is not None:
        recurrent += recurrent_bias
      r_z, r_r, r_h = tf.split(recurrent, 3, axis=-1)
      z = tf.sigmoid(x_z + r_z)
      r = tf.sigmoid(x_r + r_r)
      if cell.reset_after:
        candidate = tf.tanh(x_h + r * r_h)
      else:
        candidate = tf.tanh(x_h + tf.matmul(r * h_previous, cell.recurrent_kernel[:, 2 * units:]))
      h = z * h_previous + (1 - z) * candidate + delta_t
      return (h, z, r, candidate)
    h = tf.tanh(x_t + tf.matmul(h_previous, cell.recurrent_kernel))
    return (h + delta_t, h)

  initializer = tuple(state) + (zeros,) * len(names)
  results = tf.scan(step, (projected, perturbation), initializer=initializer)
  to_batch_major = lambda t: tf.transpose(t, [1, 0, 2])  # pylint: disable=unnecessary-lambda-assignment
  gates = dict(zip(names, (to_batch_major(t) for t in results[len(state):])))
  return to_batch_major(results[0]), gates
