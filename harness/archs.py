"""The archs: one entry per recurrent cell, everything the rest of the harness knows about it, without TensorFlow.

`config`, `models`, `probes`, `runtime`, `runs` and `bench` read an arch only
through its entry here; nothing else tests an arch by name. Depth is apart
from the cell: `--arch=X --units=a,b,c` stacks three layers of X, layer i named
`recurrent_{i}`, each reading the previous one's outputs.

Adding an arch: a layer (a Keras layer, or a class in its own module) obeying
the contract below, its reference `unroll` for the probes, and one `Arch`
entry in ARCHS; then its tests.

The layer contract (every arch's layer obeys it):
  builder(units, name, options) -> keras.layers.Layer, options at least
    {'dtype': keras.DTypePolicy, 'forget_bias': float, 'lstm_kernel': str}
    plus the config fields the entry lists in `options`;
  layer(inputs [batch, time, features], initial_state=None or [per state
    tensor [batch, n]], training=bool) -> [outputs [batch, time, units],
    *final_state], each final-state tensor [batch, n] float32 (a complex
    state as two real tensors);
  unroll(layer, inputs [b, t, f], initial_state, perturbation [time, batch, n])
    -> (outputs [b, t, units], {gate: [batch, time, n]}): the layer re-run in
    plain ops with `perturbation` added to each step's state h_t, so that
    d loss / d perturbation is the total dL/dh_t; n = state_sizes(units)[0].

Builders and reference functions are named as 'module:function' and imported
only when called, so that this table (and `config`, which reads it) stays free
of TensorFlow and a usage error comes back at once.
"""

import dataclasses
import importlib
from typing import Callable

from harness import linear_specs

# Gate kinds, for the probes' saturation measure: a sigmoid-like gate in [0, 1]
# is saturated below 0.1 or above 0.9, a tanh-like value where |x| > 0.9; a
# value of kind NONE (a cell state, a modulus) has no saturation.
SIGMOID, TANH, NONE = 'sigmoid', 'tanh', 'none'

# Measured on 2 cores (BUILD.md) with BlockLSTM, the fused op before HarnessLstm,
# against Keras's CPU loop: 1.9x as fast at 64 units, 1.04-1.07x at 128,
# 0.9-1.0x at 256, 0.65x at 512 (its per-step matmul is Eigen's, the loop's
# oneDNN's). HarnessLstm is 1.09x the loop at 256 units and 1.19x at 512: auto
# fuses every width where it is built, and keeps the bound for BlockLSTM, which
# the layer falls back to where it cannot be built.
FUSED_MAX_UNITS = 128


def resolve(reference):
  """The object a 'module:attribute' reference names (imports the module)."""
  module, _, attribute = reference.partition(':')
  return getattr(importlib.import_module(module), attribute)


@dataclasses.dataclass(frozen=True)
class Arch:
  """One recurrent cell. See the module docstring for the contract its layer obeys.

  Attributes:
    name: the `--arch` value.
    description: one line, for --helpfull and the docs.
    layer: 'module:function', the builder(units, name, options) of one layer.
    unroll: 'module:function', the reference recurrence the probes re-run.
    state_sizes: units -> per state tensor of one layer, its size n ([u, u] for (h, c)).
    parameter_count: (input width, units, options) -> trainable parameters of one layer; options
      {field: value} of the entry's `options` (None: their defaults).
    gates: ((gate name, kind), ...) in the order `unroll` returns them.
    output_gate: the gate whose values are the layer's outputs h_t (the RNN's activation), or ''
      (the probes draw its histogram once, as the activations).
    kernels: the implementations the arch has (the first is the default).
    options: config fields the builder reads besides dtype, forget_bias and lstm_kernel, and
      the config fields (of those three too) that apply to this arch only: the config text and
      hparams show a field of ARCH_FIELDS only for the archs that list it.
    one_op: (units, {'lstm_kernel', 'precision'}) -> whether a layer runs its whole sequence as
      one op on the CPU (then sub-batches pay off from 16 rows, `runtime.batch_splits`).
    keras_layer: 'module:Class' of the same cell in Keras (the benchmark's contender), or ''.
    torch_layer: 'module:function' (features, units, options) -> the same layer in PyTorch
      (`harness.torch_blocks`, the benchmark's contender), or ''.
    jit_compile: XLA-compile each sub-batch's forward and backward pass in the train step
      (`steps.make_train_step`): on a CPU XLA fuses the elementwise passes (norms, gates,
      activations, the scan's loop body) that make a block of large per-step ops memory-bound.
    retention: {gate: [batch, time, n]} (what `unroll` returns) -> |a_t| [batch, time, n], the
      fraction of h_{t-1} that h_t keeps, for the timescales probe (1 / (1 - |a|) steps); None
      where the cell has no such gate.
  """
  name: str
  description: str
  layer: str
  unroll: str
  state_sizes: Callable[[int], list]
  parameter_count: Callable[[int, int], int]
  gates: tuple
  output_gate: str = ''
  kernels: tuple = ()
  options: tuple = ()
  one_op: Callable[[int, dict], bool] = lambda units, options: False
  keras_layer: str = ''
  torch_layer: str = ''
  jit_compile: bool = False
  retention: Callable = None

  def build_layer(self, units, name, options):
    return resolve(self.layer)(units, name, options)

  def unroll_layer(self, layer, inputs, initial_state=None, perturbation=None):
    return resolve(self.unroll)(layer, inputs, initial_state, perturbation)

  @property
  def gate_kinds(self):
    return dict(self.gates)


def uses_fused_lstm(lstm_kernel, units, harness_op_built):
  """Whether an LSTM layer of `units` is a `layers.FusedLSTM` under `--lstm_kernel` (auto, fused, block, keras), the
  harness's HarnessLstm op built (`fused_ops.load`) or not (the fused layer then runs BlockLSTM)."""
  return lstm_kernel in ('fused', 'block') or (
      lstm_kernel == 'auto' and (harness_op_built or units <= FUSED_MAX_UNITS))


def _gated_parameters(gates, biases_per_gate=1):
  """Keras's gated cells: kernel [w, g u], recurrent kernel [u, g u], biases [biases_per_gate * g u]."""
  return lambda width, units, options=None: gates * units * (width + units) + biases_per_gate * gates * units


def _linear_arch(name, description, options, retention):
  """minGRU, minLSTM, LRU: layers of `harness.linear_layers` over the `harness.scan` primitive."""
  return Arch(
      name=name, description=description, layer=f'harness.linear_layers:build_{name}',
      unroll='harness.linear_layers:unroll', state_sizes=lambda units: linear_specs.state_sizes(name, units),
      parameter_count=lambda width, units, options=None: linear_specs.parameter_count(name, width, units, options),
      gates=tuple((gate, kind or NONE) for gate, kind in linear_specs.GATES[name]),
      kernels=linear_specs.SCAN_KERNELS, options=options, torch_layer=f'harness.torch_blocks:{name}',
      jit_compile=True, retention=retention)


ARCHS = {
    'rnn': Arch(
        name='rnn', description='Elman RNN (Keras SimpleRNN): h_t = tanh(W x_t + U h_{t-1} + b)',
        layer='harness.layers:simple_rnn', unroll='harness.recurrence:unroll_rnn',
        state_sizes=lambda units: [units], parameter_count=_gated_parameters(1),
        gates=(('activation', TANH),), output_gate='activation', kernels=('keras',),
        keras_layer='keras.layers:SimpleRNN', torch_layer='harness.torch_blocks:rnn'),
    'gru': Arch(
        name='gru', description='GRU (Cho et al. 2014; Keras, reset_after): update, reset and candidate',
        layer='harness.layers:gru', unroll='harness.recurrence:unroll_gru',
        state_sizes=lambda units: [units], parameter_count=_gated_parameters(3, biases_per_gate=2),
        gates=(('update', SIGMOID), ('reset', SIGMOID), ('candidate', TANH)), kernels=('fused', 'keras'),
        one_op=lambda units, options: options['precision'] == 'float32',
        keras_layer='keras.layers:GRU', torch_layer='harness.torch_blocks:gru',
        retention=lambda gates: gates['update']),  # Keras: h_t = z h_{t-1} + (1 - z) h~.
    'lstm': Arch(
        name='lstm', description='LSTM (Hochreiter & Schmidhuber 1997, with forget gate): state (h, c)',
        layer='harness.layers:lstm', unroll='harness.recurrence:unroll_lstm',
        state_sizes=lambda units: [units, units], parameter_count=_gated_parameters(4),
        gates=(('input', SIGMOID), ('forget', SIGMOID), ('candidate', TANH), ('output', SIGMOID),
               ('cell_abs', NONE)),
        kernels=('auto', 'fused', 'block', 'keras'), options=('forget_bias', 'lstm_kernel'),
        one_op=lambda units, options: options['precision'] == 'float32' and uses_fused_lstm(
            options['lstm_kernel'], units, options['harness_op_built']),
        keras_layer='keras.layers:LSTM', torch_layer='harness.torch_blocks:lstm',
        retention=lambda gates: gates['forget']),  # Of the cell state c_t.
    'mingru': _linear_arch(
        'mingru', 'minGRU (Feng et al. 2024, "Were RNNs All We Needed?"): h_t = (1 - z_t) h_{t-1} + z_t g(W_h '
        'x_t), z_t = sigmoid(W_z x_t), a linear recurrence scanned over time, in a pre-norm residual block with a '
        'per-step MLP', ('scan_kernel', 'mlp_expansion'), retention=lambda gates: 1.0 - gates['update']),
    'minlstm': _linear_arch(
        'minlstm', 'minLSTM (Feng et al. 2024): h_t = f\'_t h_{t-1} + i\'_t g(W_h x_t) with f\', i\' the forget '
        'and input gates normalised to sum to 1, scanned over time, in minGRU\'s block',
        ('scan_kernel', 'mlp_expansion'), retention=lambda gates: gates['forget']),
    'lru': _linear_arch(
        'lru', 'Linear Recurrent Unit (Orvieto et al. 2023, "Resurrecting Recurrent Neural Networks for Long '
        'Sequences"): diagonal complex h_t = lambda h_{t-1} + gamma B x_t, ring-initialised |lambda|, y_t = Re(C h_t) '
        '+ D x_t, in a pre-norm residual block with a GLU', ('scan_kernel', 'lru_r_min', 'lru_r_max',
                                                             'lru_max_phase'),
        # XLA-compiled with the while-loop scan (its `auto`): 1.7x the fused op beside unfused TensorFlow ops
        # (BUILD.md › The linear scan); the chunked kernel's unrolled complex steps took XLA over 15 minutes.
        retention=lambda gates: gates['modulus']),
}

# Old names that still load: flagfiles, config.json files and sweeps that name them keep working.
ALIASES = {'stacked_lstm': 'lstm'}
NAMES = tuple(ARCHS) + tuple(ALIASES)


def get(name):
  """The entry of an arch name or alias."""
  return ARCHS[ALIASES.get(name, name)]


# The config fields that belong to some archs only (forget_bias, lstm_kernel, scan_kernel, ...).
ARCH_FIELDS = tuple(dict.fromkeys(field for arch in ARCHS.values() for field in arch.options))


def parameter_count(name, width, units, options=None):
  """Trainable parameters of the stacked layers of `units` over inputs of `width` features (options: as Arch's)."""
  arch, count = get(name), 0
  for n in units:
    count += arch.parameter_count(width, n, options)
    width = n
  return count
