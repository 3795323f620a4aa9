"""What is measured on the fixed probe batch at histogram steps (and at step 0): see inside the recurrence.

A plain dict maps each probe name to a `Probe`: a function of a `ProbeBatch`
returning {kind: {tag: tensor}}, kind one of 'histograms', 'scalars', 'tensors'
(raw summaries, for tbparse or pandas) and 'figure_data' (what its figure
draws), and the figure, if it has one, that turns the figure data into images.
The batch computes what several probes read (the model's forward pass and
gradients; the reference recurrence with its gates and the gradient through
time) once, on first use, inside one graph call. Tags name layers by position
(`input_projection`, `layer_0`, ..., `head`), never by arch, so runs of
different archs overlay; the gates and the reference recurrence come from the
model's arch entry (`harness.archs`).

  weights, gradients   histograms of every variable and its gradient: weights/layer_0/kernel
  activations          histograms of each recurrent layer's outputs: activations/layer_0
  gradient_flow        mean over the batch of |dL/dh_t| at every step t of every layer (the total
                       derivative, through all later steps) and of |dL/dx_t| for the inputs:
                       tensors gradient_flow/layer_0 and gradient_flow/input [T], scalars
                       gradient_flow/layer_0/first_over_last, an image of all of them over time
  gates                per layer and gate, a histogram over batch x time x units, the mean and the
                       saturated fraction (sigmoid < 0.1 or > 0.9, tanh |x| > 0.9), and an image of
                       each gate's mean over the steps
  timescales           per layer and unit, the memory tau = 1 / (1 - r) steps of the state's mean
                       retention r = |a_t| (the arch entry's `retention`: LRU |lambda|, minGRU 1 - z,
                       minLSTM f', the LSTM's forget gate, the GRU's z): a histogram of log10 tau (/log10),
                       scalars median and max, tensor timescales/layer_0 [n] sorted, and an image of
                       tau by unit rank now against the first probe's (step 0 when probed there)
  layer_dynamics       (in the train step, at summary steps) each layer's weight norm, gradient norm
                       and update-to-weight ratio |dw| / |w|, averaged over the interval
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


def gradient_flow(batch):
  flow = batch.reference['flow']
  return {
      'tensors': {f'gradient_flow/{tag}': norms for tag, norms in zip(batch.layer_tags, flow)}
                 | {'gradient_flow/input': batch.reference['input_flow']},
      'scalars': {f'gradient_flow/{tag}/first_over_last': norms[0] / norms[-1]
                  for tag, norms in zip(batch.layer_tags, flow)},
      'figure_data': {tag: norms for tag, norms in zip(batch.layer_tags, flow)}
                     | {'input': batch.reference['input_flow']},
  }


def saturated_fraction(kind, values):
  """The fraction of `values` a gate of this kind (`archs.SIGMOID`, ...) holds near its limits; None if it has none."""
  if kind == archs.SIGMOID:
    return tf.reduce_mean(tf.cast((values < 1 - SATURATED) | (values > SATURATED), tf.float32))
  if kind == archs.TANH:
    return tf.reduce_mean(tf.cast(tf.abs(values) > SATURATED, tf.float32))
  return None


def gates(batch):
  histograms, scalars, means_by_step = {}, {}, {}
  kinds = batch.model.arch.gate_kinds
  for tag, layer_gates in zip(batch.layer_tags, batch.reference['gates']):
    for gate, values in layer_gates.items():
      histograms[f'gates/{tag}/{gate}'] = values
      scalars[f'gates/{tag}/{gate}/mean'] = tf.reduce_mean(values)
      fraction = saturated_fraction(kinds[gate], values)
      if fraction is not None:
        scalars[f'gates/{tag}/{gate}/saturated'] = fraction
      means_by_step[f'{tag}/{gate}'] = tf.reduce_mean(values, axis=[0, 2])
  return {'histograms': histograms, 'scalars': scalars, 'figure_data': means_by_step}


def timescales(batch):
  retention = batch.model.arch.retention
  if retention is None:
    return {'figure_data': {}}
  histograms, scalars, tensors = {}, {}, {}
  for tag, layer_gates in zip(batch.layer_tags, batch.reference['gates']):
    kept = tf.reduce_mean(retention(layer_gates), axis=[0, 1])  # [n]: the state's mean retention per unit.
    steps = tf.sort(1.0 / tf.maximum(1.0 - kept, 1e-7))  # 1e-7: float32 resolves no |a| nearer 1.
    histograms[f'timescales/{tag}/log10'] = tf.math.log(steps) / np.log(10.0)
    scalars[f'timescales/{tag}/median'] = steps[tf.size(steps) // 2]
    scalars[f'timescales/{tag}/max'] = steps[-1]
    tensors[f'timescales/{tag}'] = steps
  return {'histograms': histograms, 'scalars': scalars, 'tensors': tensors, 'figure_data': tensors}


class FlowFigure:
  """log mean |dL/dh_t| against t, a line per layer (the inputs dashed); the last _FADED_PROBES probes faded.

  One figure for the run whose lines get new data at each probe: building the
  axes, ticks and legend anew would cost more than the probe itself.
  """

  def __init__(self):
    self.figure, self.axes = None, None
    self.lines = []  # Per age (0 = newest), {tag: line}.
    self.history = []  # [(step, {tag: [T] numpy})], this process's probe steps.

  def _build(self, tags):
    self.figure, axes = summaries.subplots(figsize=(6.4, 3.8))
    for age in range(_FADED_PROBES + 1):
      lines = {}
      for i, tag in enumerate(tags):
        lines[tag], = axes.semilogy([], [], color='black' if tag == 'input' else f'C{i}',
                                    linestyle='--' if tag == 'input' else '-', alpha=1.0 if age == 0 else 0.5 / age,
                                    linewidth=1.6 if age == 0 else 0.9, label=tag if age == 0 else None,
                                    zorder=-age)
      self.lines.append(lines)
    axes.set_xlabel('time step t', fontsize=10)
    axes.set_ylabel('mean |dL/dh_t|', fontsize=10)
    axes.tick_params(labelsize=9)
    axes.yaxis.set_minor_locator(ticker.NullLocator())  # Decades suffice; minor ticks cost a third of the draw.
    axes.legend(fontsize=9, loc='center left', bbox_to_anchor=(1.01, 0.5))
    self.title = axes.set_title('', fontsize=10)
    # Fixed margins and legend place: a tight layout or a 'best' legend costs more than the probe.
    self.figure.subplots_adjust(left=0.12, right=0.83, bottom=0.13, top=0.92)
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
    self.title.set_text(f'gradient through time at step {step} (faded: earlier probes)')
    return {'gradient_flow/norm_by_step': summaries.figure_to_image(self.figure)}


class GatesFigure:
  """Each gate's mean over the batch and units against t, one panel per layer (built once, like FlowFigure)."""

  def __init__(self):
    self.figure, self.lines = None, {}

  def _build(self, names):
    layer_tags = sorted({name.split('/')[0] for name in names})
    self.figure, axes = summaries.subplots(len(layer_tags), 1, figsize=(7.2, 2.3 * len(layer_tags) + 0.4),
                                           squeeze=False)
    self.axes = axes[:, 0]
    for ax, tag in zip(self.axes, layer_tags):
      for name in names:
        if name.startswith(f'{tag}/'):
          self.lines[name], = ax.plot([], [], label=name.split('/')[1], linewidth=1.2)
      ax.set_ylabel(tag, fontsize=10)
      ax.tick_params(labelsize=9)
    # One legend: every panel draws the gates of its arch in the same colours.
    self.axes[0].legend(fontsize=9, loc='upper left', bbox_to_anchor=(1.01, 1.0))
    self.axes[-1].set_xlabel('time step t', fontsize=10)
    self.title = self.axes[0].set_title('', fontsize=10)
    height = self.figure.get_figheight()
    self.figure.subplots_adjust(left=0.1, right=0.83, bottom=0.5 / height, top=1 - 0.35 / height, hspace=0.25)

  def draw(self, step, means_by_step):
    """means_by_step: {'layer_0/forget': [T] means, ...}. Returns {tag: uint8 [1, height, width, 3]}."""
    if self.figure is None:
      self._build(list(means_by_step))
    for name, means in means_by_step.items():
      self.lines[name].set_data(np.arange(1, len(means) + 1), means)
    for ax in self.axes:
      ax.relim()
      ax.autoscale_view()
    self.title.set_text(f'mean of each gate over the batch and units, step {step}')
    return {'gates/mean_by_step': summaries.figure_to_image(self.figure)}


class TimescaleFigure:
  """Each unit's memory 1 / (1 - r) steps against its rank, per layer: now solid, the first probe dashed."""

  def __init__(self):
    self.figure, self.first = None, None

  def draw(self, step, steps_by_tag):
    """steps_by_tag: {'timescales/layer_0': [n] sorted}. Returns {tag: uint8 [1, height, width, 3]}."""
    if not steps_by_tag:
      return {}
    if self.figure is None:
      self.figure, self.axes = summaries.subplots(figsize=(6.4, 3.6))
      self.first = (step, steps_by_tag)
      self.now = {}
      for i, (tag, steps) in enumerate(steps_by_tag.items()):
        name = tag.split('/')[-1]
        self.axes.semilogy(np.arange(1, len(steps) + 1), steps, color=f'C{i}', linestyle='--', linewidth=0.9,
                           alpha=0.6, label=f'{name}, step {step}')
        self.now[tag], = self.axes.semilogy([], [], color=f'C{i}', linewidth=1.6, label=f'{name}, now')
      self.axes.set_xlabel('unit (sorted)', fontsize=10)
      self.axes.set_ylabel('1 / (1 - |a|)  (steps)', fontsize=10)
      self.axes.tick_params(labelsize=9)
      self.axes.legend(fontsize=8, loc='upper left')
      self.title = self.axes.set_title('', fontsize=10)
      self.figure.subplots_adjust(left=0.13, right=0.97, bottom=0.14, top=0.91)
    for tag, steps in steps_by_tag.items():
      self.now[tag].set_data(np.arange(1, len(steps) + 1), steps)
    self.axes.relim()
    self.axes.autoscale_view()
    self.title.set_text(f'memory per unit at step {step} (dashed: step {self.first[0]})')
    return {'timescales/by_unit': summaries.figure_to_image(self.figure)}


@dataclasses.dataclass(frozen=True)
class Probe:
  """measure(ProbeBatch) -> {kind: {tag: tensor}} in the graph; figure() -> an object whose
  draw(step, figure_data as numpy) returns {tag: image} on the host (one object per run)."""
  measure: Callable
  figure: Callable = None


PROBES = {
    'weights': Probe(weights),
    'gradients': Probe(gradients),
    'activations': Probe(activations),
    'gradient_flow': Probe(gradient_flow, FlowFigure),
    'gates': Probe(gates, GatesFigure),
    'timescales': Probe(timescales, TimescaleFigure),
}


class Prober:
  """Runs the selected probes on the probe batch in one graph call and writes what they return."""

  def __init__(self, model, task, names):
    self.names = [name for name in names if name in PROBES]
    self.figures = {name: PROBES[name].figure() for name in self.names if PROBES[name].figure}

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
        images.update(self.figures[name].draw(step, {tag: value.numpy()
                                                     for tag, value in kinds['figure_data'].items()}))
    writer.write_histograms(step, histograms)
    writer.write_scalars(step, scalars)
    writer.write_summaries(step, tensors)
    writer.write_images(step, images)
