"""What is measured on the fixed probe batch at histogram steps (and at step 0): see inside the recurrence.

A plain dict maps each probe name to a `Probe`: a function of a `ProbeBatch`
returning {kind: {tag: tensor}}, kind one of 'histograms', 'scalars', 'tensors'
(raw summaries, for tbparse or pandas) and 'figure_data' (what its figure
draws), and the figure, if it has one, that turns the figure data into images.
The batch computes what several probes read (the model's forward pass and
gradients; the reference recurrence with its gates and the gradient through
time) once, on first use, inside one graph call. Tags name layers by position
(`input_projection`, `layer_0`, ..., `head`), never by arch, so runs of
different archs overlay; a scalar's tag keeps what tells it from its
neighbours after its last '/' (`saturation/layer_0.forget`): Time Series cuts
the middle of a long card title but never that part. Figures are drawn for a
Time Series card (`summaries.CARD_FIGSIZE`). The gates and the reference
recurrence come from the model's arch entry (`harness.archs`).

  weights, gradients   histograms of every variable and its gradient: weights/layer_0/kernel
  activations          histograms of each recurrent layer's outputs: activations/layer_0
  gradient_flow        mean over the batch of |dL/dh_t| at every step t of every layer (the total
                       derivative, through all later steps) and of |dL/dx_t| for the inputs:
                       tensors gradient_flow/layer_0 and gradient_flow/input [T], scalars
                       gradient_flow/layer_0.log10_first_over_last, an image of all of them over time
  gates                per layer and gate, a histogram over batch x time x units (not of the RNN's
                       activation, which is its output), the saturated fraction (sigmoid < 0.1 or
                       > 0.9, tanh |x| > 0.9) as scalars saturation/layer_0.forget and per step in an
                       image; the LSTM's |c_t| (no saturation) as its mean, cell/layer_0.cell_abs_mean
  layer_dynamics       (in the train step, at summary steps) each layer's weight norm, gradient norm
                       and update-to-weight ratio |dw| / |w|, averaged over the interval:
                       layers/layer_0.weight_norm (`layer_dynamics_tag`)
"""

import dataclasses
import functools
from typing import Callable

from matplotlib import ticker
import numpy as np
import tensorflow as tf

from harness import archs
from harness import summaries

SATURATED = 0.9  # Sigmoid gates below 1 - SATURATED or above it, tanh values beyond +-SATURATED.
FLOW_FLOOR = 1e-30  # The flow ratio's norms below this (float32 underflow to 0) count as this.
_FADED_PROBES = 4  # Earlier probe steps drawn faded in the gradient-flow image.


class ProbeBatch:
  """The model and a fixed batch; what probes read is computed once, when first read."""

  def __init__(self, model, task, inputs, targets, initial_state=None):
    self.model, self.task, self.inputs, self.targets = model, task, inputs, targets
    self.initial_state = initial_state
    self.layer_tags = [f'layer_{i}' for i in range(len(model.recurrent_layers))]

  @functools.cached_property
  def _forward(self):
    with tf.GradientTape() as tape:
      outputs, _, sequences = self.model.forward(self.inputs, self.initial_state, training=False)
      loss = tf.reduce_mean(self.task.per_example_loss(self.targets, outputs))
    return sequences, tape.gradient(loss, self.model.trainable_variables)

  @property
  def sequences(self):
    """Per recurrent layer, its outputs [batch, time, units]."""
    return self._forward[0]

  @property
  def gradients(self):
    """The loss's gradient for each trainable variable, in `model.trainable_variables` order."""
    return self._forward[1]

  @functools.cached_property
  def reference(self):
    """The model re-run through its arch's reference `unroll`, with dL/dh_t for every layer and step.

    L is the batch's summed loss, so each example's gradient is that of its own
    loss. The recurrences run in float32 whatever the model's precision.
    Returns {'flow': [per layer [T]], 'input_flow': [T], 'gates': [per layer
    {gate: [batch, time, units]}], 'sequences': [per layer [batch, time, units]]}.
    """
    model = self.model
    with tf.GradientTape() as tape:
      tape.watch(self.inputs)
      hidden = model.input_projection(self.inputs) if model.input_projection else self.inputs
      hidden = tf.cast(hidden, tf.float32)  # Under a mixed precision, the reference runs in float32.
      perturbations, gates, sequences = [], [], []
      for i, (layer, units) in enumerate(zip(model.recurrent_layers, model.units)):
        size = model.arch.state_sizes(units)[0]  # The state the perturbation is added to (h_t).
        perturbation = tf.zeros([tf.shape(hidden)[1], tf.shape(hidden)[0], size])
        tape.watch(perturbation)
        initial = None if self.initial_state is None else self.initial_state[i]
        hidden, layer_gates = model.arch.unroll_layer(layer, hidden, initial, perturbation)
        perturbations.append(perturbation)
        gates.append(layer_gates)
        sequences.append(hidden)
      outputs = model.head(hidden if model.per_step_outputs else hidden[:, -1])
      loss = tf.reduce_sum(self.task.per_example_loss(self.targets, outputs))
    input_gradient, *hidden_gradients = tape.gradient(loss, [self.inputs] + perturbations)
    flow = [tf.reduce_mean(tf.norm(g, axis=-1), axis=1) for g in hidden_gradients]  # [T, B] -> [T].
    return {'flow': flow, 'input_flow': tf.reduce_mean(tf.norm(input_gradient, axis=-1), axis=0),
            'gates': gates, 'sequences': sequences}


def _variable_tag(model, variable):
  """`layer_0/kernel`, `head/bias`: the layer by position, then the variable's own name."""
  for tag, layer in model.named_layers():
    if any(variable is v for v in layer.trainable_variables):
      return f'{tag}/{variable.path.split("/")[-1]}'
  return variable.path


def weights(batch):
  return {'histograms': {f'weights/{_variable_tag(batch.model, v)}': v.value
                         for v in batch.model.trainable_variables}}


def gradients(batch):
  return {'histograms': {f'gradients/{_variable_tag(batch.model, v)}': g
                         for v, g in zip(batch.model.trainable_variables, batch.gradients)}}


def activations(batch):
  return {'histograms': {f'activations/{tag}': s for tag, s in zip(batch.layer_tags, batch.sequences)}}


def log10_ratio(first, last):
  """log10(first / last), each floored at FLOW_FLOOR: finite when a norm underflows to 0 in float32."""
  return (tf.math.log(tf.maximum(first, FLOW_FLOOR)) - tf.math.log(tf.maximum(last, FLOW_FLOOR))) / tf.math.log(10.0)


def gradient_flow(batch):
  flow = batch.reference['flow']
  return {
      'tensors': {f'gradient_flow/{tag}': norms for tag, norms in zip(batch.layer_tags, flow)}
                 | {'gradient_flow/input': batch.reference['input_flow']},
      # On log10: the ratio spans 1e-9 .. 1 and TensorBoard plots and smooths linearly.
      'scalars': {flow_tag(tag): log10_ratio(norms[0], norms[-1]) for tag, norms in zip(batch.layer_tags, flow)},
      'figure_data': {tag: norms for tag, norms in zip(batch.layer_tags, flow)}
                     | {'input': batch.reference['input_flow']},
  }


def flow_tag(layer_tag):
  """The flow ratio's scalar: everything that tells cards apart after the last '/', which Time Series never cuts."""
  return f'gradient_flow/{layer_tag}.log10_first_over_last'


def layer_dynamics_tag(layer_tag, quantity):
  """`layers/layer_0.weight_norm`: the layer dynamics' scalars (`weight_norm`, `grad_norm`, `update_ratio`)."""
  return f'layers/{layer_tag}.{quantity}'


def saturation_tag(layer_tag, gate):
  return f'saturation/{layer_tag}.{gate}'


def saturated(kind, values, axis=None):
  """The fraction of `values` a gate of this kind (`archs.SIGMOID`, ...) holds near its limits; None if it has none.

  axis: the axes to average over (None: all).
  """
  if kind == archs.SIGMOID:
    return tf.reduce_mean(tf.cast((values < 1 - SATURATED) | (values > SATURATED), tf.float32), axis=axis)
  if kind == archs.TANH:
    return tf.reduce_mean(tf.cast(tf.abs(values) > SATURATED, tf.float32), axis=axis)
  return None


def gates(batch):
  """Per gate: histograms, the saturated fraction (a scalar and per step); a value without saturation, its mean."""
  histograms, scalars, by_step = {}, {}, {'saturated': {}, 'magnitude': {}}
  arch = batch.model.arch
  for tag, layer_gates in zip(batch.layer_tags, batch.reference['gates']):
    for gate, values in layer_gates.items():
      if gate != arch.output_gate:  # That one is the layer's output: `activations` draws it.
        histograms[f'gates/{tag}/{gate}'] = values
      fraction = saturated(arch.gate_kinds[gate], values)
      if fraction is None:  # The LSTM's |c|: unbounded, so its size, on its own axis.
        scalars[f'cell/{tag}.{gate}_mean'] = tf.reduce_mean(values)
        by_step['magnitude'][f'{tag}/{gate}'] = tf.reduce_mean(values, axis=[0, 2])
      else:
        scalars[saturation_tag(tag, gate)] = fraction
        by_step['saturated'][f'{tag}/{gate}'] = saturated(arch.gate_kinds[gate], values, axis=[0, 2])
  return {'histograms': histograms, 'scalars': scalars, 'figure_data': by_step}


class FlowFigure:
  """log mean |dL/dh_t| against t, a line per layer (the inputs' |dL/dx_t| dashed); earlier probes faded.

  One figure for the run whose lines get new data at each probe: building the
  axes, ticks and legend anew would cost more than the probe itself.
  """

  def __init__(self, title):
    self.run_title = title
    self.figure, self.axes = None, None
    self.lines = []  # Per age (0 = newest), {tag: line}.
    self.history = []  # [(step, {tag: [T] numpy})], this process's probe steps.

  def _build(self, tags):
    self.figure, axes = summaries.subplots(figsize=summaries.CARD_FIGSIZE)
    for age in range(_FADED_PROBES + 1):
      lines = {}
      for i, tag in enumerate(tags):
        label = 'input x_t' if tag == 'input' else f'{tag} h_t'
        lines[tag], = axes.semilogy([], [], color='black' if tag == 'input' else f'C{i}',
                                    linestyle='--' if tag == 'input' else '-', alpha=1.0 if age == 0 else 0.5 / age,
                                    linewidth=1.6 if age == 0 else 0.9, label=label if age == 0 else None,
                                    zorder=-age)
      self.lines.append(lines)
    axes.set_xlabel('time step t', fontsize=summaries.FONT_SIZE)
    axes.set_ylabel('mean |dL/d·|', fontsize=summaries.FONT_SIZE)
    axes.tick_params(labelsize=summaries.FONT_SIZE)
    axes.yaxis.set_major_locator(ticker.LogLocator(numticks=5))
    axes.yaxis.set_minor_locator(ticker.NullLocator())  # Decades suffice; minor ticks cost a third of the draw.
    self.title = self.figure.suptitle('', fontsize=summaries.FONT_SIZE, x=0.01, y=0.99, ha='left', va='top')
    # Fixed margins and legend place: a tight layout or a 'best' legend costs more than the probe.
    rows = summaries.card_legend(self.figure, list(self.lines[0].values()))
    summaries.card_margins(self.figure, legend_rows=rows)
    self.axes = axes

  def draw(self, step, norms_by_tag):
    """norms_by_tag: {tag: [T] norms} at this probe. Returns {tag: uint8 [1, height, width, 3]}."""
    self.history.append((step, norms_by_tag))
    if self.figure is None:
      self._build(list(norms_by_tag))
    recent = self.history[::-1][:_FADED_PROBES + 1]
    for age, lines in enumerate(self.lines):
      for tag, line in lines.items():
        norms = recent[age][1][tag] if age < len(recent) else []
        line.set_data(np.arange(1, len(norms) + 1), np.maximum(norms, 1e-30))
    self.axes.relim()
    self.axes.autoscale_view()
    earlier = ', '.join(str(s) for s, _ in recent[1:][::-1])
    self.title.set_text(f'{self.run_title}\ngradient at step {step}' + (f'; faded: {earlier}' if earlier else ''))
    return {'gradient_flow/norm_by_step': summaries.figure_to_image(self.figure)}


_GATE_STYLES = ('-', '--', ':', '-.')  # Lines that coincide (all at 0, say) stay told apart.


class GatesFigure:
  """Each gate's saturated fraction against t, one panel per layer; the LSTM's mean |c_t| on its own right axis."""

  def __init__(self, title):
    self.run_title = title
    self.figure, self.lines, self.magnitude_axes = None, {}, {}

  def _build(self, saturated_names, magnitude_names):
    layer_tags = sorted({name.split('/')[0] for name in saturated_names + magnitude_names})
    width, height = summaries.CARD_FIGSIZE
    self.figure, axes = summaries.subplots(len(layer_tags), 1, squeeze=False, sharex=True,
                                           figsize=(width, height + 1.3 * (len(layer_tags) - 1)))
    self.axes = axes[:, 0]
    for ax, tag in zip(self.axes, layer_tags):
      names = [name for name in saturated_names if name.startswith(f'{tag}/')]
      for i, name in enumerate(names):
        self.lines[name], = ax.plot([], [], label=name.split('/')[1], color=f'C{i}',
                                    linestyle=_GATE_STYLES[i % len(_GATE_STYLES)], linewidth=1.4)
      ax.set_ylim(-0.03, 1.03)
      ax.set_ylabel(f'{tag}: saturated', fontsize=summaries.FONT_SIZE)
      ax.tick_params(labelsize=summaries.FONT_SIZE)
      handles = [self.lines[name] for name in names]
      for name in magnitude_names:
        if name.startswith(f'{tag}/'):
          right = self.magnitude_axes[tag] = ax.twinx()
          self.lines[name], = right.plot([], [], color='black', linewidth=1.0, label='mean |c_t| (right)')
          right.tick_params(labelsize=summaries.FONT_SIZE)
          handles.append(self.lines[name])
    self.axes[-1].set_xlabel('time step t', fontsize=summaries.FONT_SIZE)
    self.title = self.figure.suptitle('', fontsize=summaries.FONT_SIZE, x=0.01, y=0.99, ha='left', va='top')
    rows = summaries.card_legend(self.figure, handles)  # Every panel draws its arch's gates alike.
    summaries.card_margins(self.figure, legend_rows=rows, right_axis=bool(magnitude_names))

  def draw(self, step, by_step):
    """by_step: {'saturated': {'layer_0/forget': [T] fractions}, 'magnitude': {'layer_0/cell_abs': [T]}}.

    Returns {tag: uint8 [1, height, width, 3]}.
    """
    if self.figure is None:
      self._build(list(by_step['saturated']), list(by_step['magnitude']))
    for values in by_step.values():
      for name, series in values.items():
        self.lines[name].set_data(np.arange(1, len(series) + 1), series)
    for ax in self.axes:
      ax.relim()
      ax.autoscale_view(scaley=False)  # Fractions keep their 0..1 axis.
    for name, series in by_step['magnitude'].items():  # Set, not autoscaled: a set limit stops autoscaling.
      self.magnitude_axes[name.split('/')[0]].set_ylim(0, max(1.05 * float(np.max(series)), 1e-3))
    self.title.set_text(f'{self.run_title}\nsaturated fraction of each gate, step {step}')
    return {'gates/saturated_by_step': summaries.figure_to_image(self.figure)}


@dataclasses.dataclass(frozen=True)
class Probe:
  """measure(ProbeBatch) -> {kind: {tag: tensor}} in the graph; figure(title) -> an object whose
  draw(step, figure_data as numpy) returns {tag: image} on the host (one object per run, `title` naming it)."""
  measure: Callable
  figure: Callable = None


PROBES = {
    'weights': Probe(weights),
    'gradients': Probe(gradients),
    'activations': Probe(activations),
    'gradient_flow': Probe(gradient_flow, FlowFigure),
    'gates': Probe(gates, GatesFigure),
}


class Prober:
  """Runs the selected probes on the probe batch in one graph call and writes what they return.

  title: what every figure names first, the run and its model (`arch units · run`).
  """

  def __init__(self, model, task, names, title=''):
    self.names = [name for name in names if name in PROBES]
    self.figures = {name: PROBES[name].figure(title) for name in self.names if PROBES[name].figure}

    @tf.function
    def probe_step(inputs, targets, initial_state):
      batch = ProbeBatch(model, task, inputs, targets, initial_state or None)
      return {name: PROBES[name].measure(batch) for name in self.names}

    self.probe_step = probe_step

  def write(self, writer, step, inputs, targets, initial_state=()):
    """Probes the batch (from `initial_state`: per layer its state tensors) and writes the summaries at `step`."""
    if not self.names:
      return
    results = self.probe_step(inputs, targets, list(initial_state))
    histograms, scalars, tensors, images = {}, {}, {}, {}
    for name, kinds in results.items():
      histograms.update(kinds.get('histograms', {}))
      scalars.update({tag: float(value) for tag, value in kinds.get('scalars', {}).items()})
      tensors.update(kinds.get('tensors', {}))
      if name in self.figures:
        images.update(self.figures[name].draw(step, tf.nest.map_structure(lambda t: t.numpy(),
                                                                           kinds['figure_data'])))
    writer.histograms(step, histograms)
    writer.scalars(step, scalars)
    writer.tensors(step, tensors)
    writer.images(step, images)
