"""Recurrent sequence models built from Keras layers.

`harness.archs` holds each arch's layer builder; a `SequenceModel` stacks one
layer of the arch per `--units` entry between an optional input projection and
an output head:

  inputs [batch, time, features]
    -> Dense(input_units) per step            (when input_units > 0; linear, as in the tutorial)
    -> recurrent layer(s), each passing its whole sequence on
    -> Dense(num_outputs) on the last step    (classification: logits [batch, num_outputs])
       or on every step                       (per-step regression: [batch, time, num_outputs])

LSTM layers are `FusedLSTM` by default (of up to 128 units where the harness's
op cannot be built): Keras's LSTM (same weights, same math) whose whole sequence
runs as one op on the CPU too, not only on a GPU; `--lstm_kernel` chooses
otherwise (`harness.layers`).
"""

import keras
import tensorflow as tf

from harness import archs
from harness import fused_ops
from harness import layers


def arch_options(config):
  """What `archs.Arch.one_op` reads of a config, and whether the harness's fused ops are built here."""
  return {'lstm_kernel': config.lstm_kernel, 'precision': config.precision,
          'harness_op_built': fused_ops.load() is not None}


def arch_option_values(config):
  """{field: value} of the config fields the arch's entry lists in `options`."""
  return {name: getattr(config, name) for name in archs.get(config.arch).options}


def all_layers_fused(config):
  """Whether every recurrent layer `config` builds runs its whole sequence as one op on the CPU."""
  arch = archs.get(config.arch)
  return all(arch.one_op(n, arch_options(config)) for n in config.units)


class SequenceModel(keras.Model):
  """A recurrent model over [batch, time, features] sequences; see the module docstring."""

  def __init__(self, arch, units, input_units, num_outputs, per_step_outputs, options, **kwargs):
    """arch: an `archs.Arch`; units: per recurrent layer; options: what the arch's builder reads."""
    super().__init__(**kwargs)
    self.arch, self.units = arch, tuple(units)
    dtype = options['dtype']
    recurrent_layers = [arch.build_layer(n, f'recurrent_{i}', options) for i, n in enumerate(units)]
    self.input_projection = (
        keras.layers.Dense(input_units, name='input_projection', dtype=dtype) if input_units else None)
    # One attribute per layer: tf.train.Checkpoint does not see into a Keras-tracked list.
    self.num_recurrent_layers = len(recurrent_layers)
    for i, layer in enumerate(recurrent_layers):
      setattr(self, f'recurrent_{i}', layer)
    self.head = keras.layers.Dense(num_outputs, name='head', dtype='float32')  # Logits in float32 always.
    self.per_step_outputs = per_step_outputs

  @property
  def recurrent_layers(self):
    return [getattr(self, f'recurrent_{i}') for i in range(self.num_recurrent_layers)]

  def named_layers(self):
    """[(tag, layer)] by position, the names summaries use: in_proj, layer_0, ..., head.

    Short, so that a card title keeps its quantity (`layers/in_proj.update_ratio`):
    Time Series cuts what follows the last '/' beyond ~26 characters.
    """
    named = [('in_proj', self.input_projection)] if self.input_projection else []
    named += [(f'layer_{i}', layer) for i, layer in enumerate(self.recurrent_layers)]
    return named + [('head', self.head)]

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
    final_state, sequences = [], []
    layers_to_run = list(enumerate(self.recurrent_layers))
    first = self.recurrent_layers[0]
    if (self.input_projection and self.input_projection.built and hasattr(first, 'call_folded')
        and first.built and first.runs_folded(training)):
      # The projection folded into the fused LSTM's weights: the same function, less work per step.
      hidden, *state = first.call_folded(inputs, self.input_projection, initial_state and list(initial_state[0]))
      final_state.append(state)
      sequences.append(hidden)
      layers_to_run = layers_to_run[1:]
    else:
      hidden = self.input_projection(inputs) if self.input_projection else inputs
    for i, layer in layers_to_run:
      layer_state = None if initial_state is None else list(initial_state[i])
      hidden, *state = layer(hidden, initial_state=layer_state, training=training)
      final_state.append(state)
      sequences.append(hidden)
    outputs = self.head(hidden if self.per_step_outputs else hidden[:, -1])
    return outputs, final_state, sequences

  def call(self, inputs, initial_state=None, training=False):
    outputs, final_state, _ = self.forward(inputs, initial_state, training)
    return outputs, final_state


def xla_compiles(model):
  """Whether the train step XLA-compiles `model`'s passes: where its arch asks (`archs.Arch.jit_compile`) and no
  layer runs a fused op of the harness, which XLA cannot compile (those ops fold the elementwise passes XLA would fuse)."""
  return model.arch.jit_compile and not any(
      getattr(layer, 'runs_fused_op', lambda: False)() for layer in model.recurrent_layers)


def build_model(config, num_outputs, per_step_outputs, num_features):
  """Builds (and creates the variables of) the model `config` names.

  Args:
    config: a `harness.config.Config`; uses arch, units, input_units, forget_bias, lstm_kernel, precision.
    num_outputs: classes, or outputs per step.
    per_step_outputs: whether the head reads every step (regression) or the last.
    num_features: features per input step.

  With a mixed precision, every layer but the head computes in bfloat16 or
  float16 and keeps float32 variables (a Keras dtype policy per layer, not
  the global one); the head's logits are float32.
  """
  arch = archs.get(config.arch)
  options = dict(forget_bias=config.forget_bias, lstm_kernel=config.lstm_kernel,
                 dtype=keras.DTypePolicy(config.precision))
  options.update(arch_option_values(config))
  model = SequenceModel(arch, config.units, config.input_units, num_outputs, per_step_outputs, options,
                        name=config.arch)
  model(tf.zeros([1, 2, num_features]))
  return model


def _layer_kernel_name(layer):
  if hasattr(layer, 'kernel_description'):  # A layer of its own says which kernel runs it.
    return layer.kernel_description()
  if isinstance(layer, keras.layers.SimpleRNN):
    return 'Keras generic RNN loop (SimpleRNN has no fused kernel)'
  kind = next((name for name, base in (('LSTM', keras.layers.LSTM), ('GRU', keras.layers.GRU))
               if isinstance(layer, base)), type(layer).__name__)
  if layers.gpu_available() and getattr(layer, 'use_cudnn', 'auto') in ('auto', True):
    return f'cuDNN fused {kind} (GPU)'
  if isinstance(layer, layers.FusedLSTM) and layer._runs_fused_on_cpu(None, training=True):  # pylint: disable=protected-access
    if layer.op_module() is not None:
      return 'harness HarnessLstm fused kernel (CPU, oneDNN GEMMs; one op per sequence, forward and backward)'
    return 'TensorFlow BlockLSTM fused kernel (CPU; one op per sequence, forward and backward)'
  if isinstance(layer, layers.FusedGRU) and layer._runs_fused_on_cpu(None, training=True):  # pylint: disable=protected-access
    return 'harness HarnessGru fused kernel (CPU, oneDNN GEMMs; one op per sequence, forward and backward)'
  return f'Keras generic {kind} loop (tf.while_loop; no fused kernel on CPU)'


def recurrent_kernel_name(model):
  """Which kernel runs the recurrent layers on this machine, in words (per layer where they differ)."""
  names = [_layer_kernel_name(layer) for layer in model.recurrent_layers]
  if len(set(names)) == 1:
    return names[0]
  return '; '.join(f'{layer.name}: {name}' for layer, name in zip(model.recurrent_layers, names))
