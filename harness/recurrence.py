"""Reference recurrences: Keras's SimpleRNN, GRU and LSTM cells re-run step by step from a layer's weights.

The `unroll` of the rnn, gru and lstm entries of `harness.archs`.

The kernels that train the model hide what the probes need: the fused ops and
cuDNN run a whole sequence as one op and expose no gates, and the gradient with
respect to a layer's output sequence is only the direct path into the next
layer. Each `unroll_*` recomputes a layer's recurrence in plain TensorFlow ops with
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


def _check_supported(layer):
  cell = layer.cell
  if getattr(cell, 'activation', None) is not keras.activations.tanh or (
      hasattr(cell, 'recurrent_activation') and cell.recurrent_activation is not keras.activations.sigmoid):
    raise ValueError(f'{layer.name}: reference recurrences cover tanh / sigmoid cells only')
  if not cell.use_bias or layer.go_backwards:
    raise ValueError(f'{layer.name}: reference recurrences need biases and forward sequences')


def _scan(step, layer, inputs, initial_state, perturbation, num_state, gate_names, input_bias=None):
  """Runs `step` over time from the layer's weights; the shared part of the `unroll_*` functions.

  Args:
    step: (carry, (x_t [batch, gates * units] input half, delta_t [batch, units])) -> (*state, *gates).
    layer: the Keras recurrent layer (its `cell` holds kernel, recurrent_kernel, bias).
    inputs: [batch, time, features].
    initial_state: None (zeros) or `num_state` tensors [batch, units].
    perturbation: None or [time, batch, units], added to h_t by `step`.
    num_state: state tensors per step (LSTM: h, c).
    gate_names: the names of the gates `step` returns after the state.
    input_bias: the bias added to the input half (default: the cell's bias).

  Returns:
    (outputs [batch, time, units], {gate name: [batch, time, units]}).
  """
  _check_supported(layer)
  cell = layer.cell
  batch = tf.shape(inputs)[0]
  time_major = tf.transpose(inputs, [1, 0, 2])
  if perturbation is None:
    perturbation = tf.zeros([tf.shape(time_major)[0], batch, cell.units], inputs.dtype)
  zeros = tf.zeros([batch, cell.units], inputs.dtype)
  state = list(initial_state) if initial_state is not None else [zeros] * num_state
  # The input half of every step at once: [time, batch, gates * units].
  projected = tf.einsum('tbf,fg->tbg', time_major, cell.kernel) + (cell.bias if input_bias is None else input_bias)
  initializer = tuple(state) + (zeros,) * len(gate_names)
  results = tf.scan(step, (projected, perturbation), initializer=initializer)
  to_batch_major = lambda t: tf.transpose(t, [1, 0, 2])  # pylint: disable=unnecessary-lambda-assignment
  gates = dict(zip(gate_names, (to_batch_major(t) for t in results[num_state:])))
  return to_batch_major(results[0]), gates


def unroll_lstm(layer, inputs, initial_state=None, perturbation=None):
  """A keras.layers.LSTM (FusedLSTM included) re-run step by step; state (h, c).

  Args:
    layer: the layer whose weights to use.
    inputs: [batch, time, features].
    initial_state: None (zeros) or [h, c], each [batch, units].
    perturbation: None or [time, batch, units], added to h_t once it is computed (before
      it reaches the next step and the next layer); differentiate with respect to it to
      get dL/dh_t.

  Returns:
    (outputs [batch, time, units], {gate: [batch, time, units]}): input, forget, candidate,
    output and cell_abs (|c_t|).
  """
  recurrent_kernel = layer.cell.recurrent_kernel

  def step(carry, elements):
    x_t, delta_t = elements
    z = x_t + tf.matmul(carry[0], recurrent_kernel)
    z_i, z_f, z_c, z_o = tf.split(z, 4, axis=-1)
    i, f, g, o = tf.sigmoid(z_i), tf.sigmoid(z_f), tf.tanh(z_c), tf.sigmoid(z_o)
    c = f * carry[1] + i * g
    h = o * tf.tanh(c) + delta_t
    return (h, c, i, f, g, o, tf.abs(c))

  return _scan(step, layer, inputs, initial_state, perturbation, 2,
               ('input', 'forget', 'candidate', 'output', 'cell_abs'))


def unroll_gru(layer, inputs, initial_state=None, perturbation=None):
  """A keras.layers.GRU re-run step by step (arguments as `unroll_lstm`, state h).

  Returns:
    (outputs [batch, time, units], {gate: [batch, time, units]}): update, reset, candidate.
  """
  cell = layer.cell
  units = cell.units
  if cell.reset_after:
    input_bias, recurrent_bias = cell.bias[0], cell.bias[1]
  else:
    input_bias, recurrent_bias = cell.bias, None

  def step(carry, elements):
    x_t, delta_t = elements
    h_previous = carry[0]
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

  return _scan(step, layer, inputs, initial_state, perturbation, 1, ('update', 'reset', 'candidate'), input_bias)


def unroll_rnn(layer, inputs, initial_state=None, perturbation=None):
  """A keras.layers.SimpleRNN re-run step by step (arguments as `unroll_lstm`, state h).

  Returns:
    (outputs [batch, time, units], {'activation': [batch, time, units]}), the tanh before the perturbation.
  """
  recurrent_kernel = layer.cell.recurrent_kernel

  def step(carry, elements):
    x_t, delta_t = elements
    h = tf.tanh(x_t + tf.matmul(carry[0], recurrent_kernel))
    return (h + delta_t, h)

  return _scan(step, layer, inputs, initial_state, perturbation, 1, ('activation',))
