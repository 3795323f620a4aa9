"""Recurrent sequence models built from Keras layers.

`ARCHS` maps an arch name to a function that returns its recurrent layers; a
`SequenceModel` wraps them with an optional input projection and an output head:

  inputs [batch, time, features]
    -> Dense(input_units) per step            (when input_units > 0; linear, as in the tutorial)
    -> recurrent layer(s), each passing its whole sequence on
    -> Dense(num_outputs) on the last step    (classification: logits [batch, num_outputs])
       or on every step                       (per-step regression: [batch, time, num_outputs])
"""

import keras
import tensorflow as tf


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


def _lstm(units, forget_bias, name):
  return keras.layers.LSTM(
      units, return_sequences=True, return_state=True, unit_forget_bias=False,
      bias_initializer=ForgetGateBias(forget_bias), name=name)


def _single(layer_fn):
  return lambda units, forget_bias: [layer_fn(units[0], forget_bias, 'recurrent_0')]


ARCHS = {
    'rnn': _single(lambda n, _, name: keras.layers.SimpleRNN(
        n, return_sequences=True, return_state=True, name=name)),
    'gru': _single(lambda n, _, name: keras.layers.GRU(
        n, return_sequences=True, return_state=True, name=name)),
    'lstm': _single(_lstm),
    'stacked_lstm': lambda units, forget_bias: [
        _lstm(n, forget_bias, f'recurrent_{i}') for i, n in enumerate(units)],
}


def state_sizes(arch, units):
  """Per layer, the sizes of its state tensors: LSTM carries (h, c), GRU and RNN carry h."""
  per_layer = 2 if arch in ('lstm', 'stacked_lstm') else 1
  return [[n] * per_layer for n in units]


class SequenceModel(keras.Model):
  """A recurrent model over [batch, time, features] sequences; see the module docstring."""

  def __init__(self, recurrent_layers, input_units, num_outputs, per_step_outputs, **kwargs):
    super().__init__(**kwargs)
    self.input_projection = (
        keras.layers.Dense(input_units, name='input_projection') if input_units else None)
    # One attribute per layer: tf.train.Checkpoint does not see into a Keras-tracked list.
    self.num_recurrent_layers = len(recurrent_layers)
    for i, layer in enumerate(recurrent_layers):
      setattr(self, f'recurrent_{i}', layer)
    self.head = keras.layers.Dense(num_outputs, name='head')
    self.per_step_outputs = per_step_outputs

  @property
  def recurrent_layers(self):
    return [getattr(self, f'recurrent_{i}') for i in range(self.num_recurrent_layers)]

  def forward(self, inputs, initial_state=None, training=False):
    """Runs the model and exposes what the instrumentation needs.

    Args:
      inputs: float [batch, time, features].
      initial_state: None (zeros) or, per recurrent layer, a list of [batch, units] tensors.
      training: passed to the layers.

    Returns:
      (outputs, final_state, sequences): outputs [batch, num_outputs] or
      [batch, time, num_outputs]; final_state shaped like initial_state;
      sequences, per recurrent layer, its outputs [batch, time, units].
    """
    hidden = self.input_projection(inputs) if self.input_projection else inputs
    final_state, sequences = [], []
    for i, layer in enumerate(self.recurrent_layers):
      layer_state = None if initial_state is None else list(initial_state[i])
      hidden, *state = layer(hidden, initial_state=layer_state, training=training)
      final_state.append(state)
      sequences.append(hidden)
    outputs = self.head(hidden if self.per_step_outputs else hidden[:, -1])
    return outputs, final_state, sequences

  def call(self, inputs, initial_state=None, training=False):
    outputs, final_state, _ = self.forward(inputs, initial_state, training)
    return outputs, final_state


def build_model(config, num_outputs, per_step_outputs, num_features):
  """Builds (and creates the variables of) the model `config` names.

  Args:
    config: a `harness.config.Config`; uses arch, units, input_units, forget_bias.
    num_outputs: classes, or outputs per step.
    per_step_outputs: whether the head reads every step (regression) or the last.
    num_features: features per input step.
  """
  model = SequenceModel(
      ARCHS[config.arch](config.units, config.forget_bias), config.input_units,
      num_outputs, per_step_outputs, name=config.arch)
  model(tf.zeros([1, 2, num_features]))
  return model


def recurrent_kernel_name(model):
  """Which kernel runs the recurrent layers on this machine, in words."""
  has_gpu = bool(tf.config.list_logical_devices('GPU'))
  layer = model.recurrent_layers[0]
  if isinstance(layer, keras.layers.SimpleRNN):
    return 'Keras generic RNN loop (SimpleRNN has no fused kernel)'
  if has_gpu and getattr(layer, 'use_cudnn', 'auto') in ('auto', True):
    return f'cuDNN fused {type(layer).__name__} (GPU)'
  return f'Keras generic {type(layer).__name__} loop (tf.while_loop; no fused kernel on CPU)'
