"""What is measured on the fixed probe batch at histogram steps (and at step 0): see inside the recurrence.

A plain dict maps each probe name to a `Probe`: a function of a `ProbeBatch`
returning {kind: {tag: tensor}}, kind one of 'histograms', 'scalars', 'tensors'
(raw summaries, for tbparse or pandas) and 'figure_data' (what its figure
draws), and the figure, if it has one, that turns the figure data into images.
The batch computes what several probes read (the model's forward pass and
gradients; the reference recurrence with its gates and the gradient through
time) once, on first use, inside one graph call. Tags name layers by position
(`in_proj`, `layer_0`, ..., `head`), never by arch, so runs of
different archs overlay; a scalar's tag keeps what tells it from its
neighbours after its last '/' (`saturation/layer_0.forget`): Time Series cuts
the middle of a long card title but never that part (`summaries.card_tag`). The
figures (`harness.probe_figures`) are drawn for a Time Series card. The gates
and the reference recurrence come from the model's arch entry (`harness.archs`).

  weights, gradients   histograms of every variable and its gradient: weights/layer_0/kernel
  activations          histograms of each recurrent layer's outputs: activations/layer_0
  gradient_flow        mean over the batch of |dL/dh_t| at every step t of every layer (the total
                       derivative, through all later steps) and of |dL/dx_t| for the inputs:
                       tensors gradient_flow/layer_0 and gradient_flow/input [T], scalars
                       gradient_flow/layer_0.log10_first_over_last, an image of all of them over time
  gates                per layer and gate, a histogram over batch x time x units (not of the RNN's
                       activation, which is its output), the saturated fraction (sigmoid < 0.1 or
                       > 0.9, tanh |x| > 0.9) as scalars saturation/layer_0.forget and per step in an
                       image; a value without saturation (the LSTM's |c_t|, the minRNNs' candidate,
                       the LRU's |lambda| and phase) as its mean, gate_mean/layer_0.cell_abs
  timescales           per layer and unit, the memory tau = 1 / (1 - r) steps of the state's mean
                       retention r = |a_t| (the arch entry's `retention`: LRU |lambda|, minGRU 1 - z,
                       minLSTM f', the LSTM's forget gate, the GRU's z): a histogram of log10 tau
                       (timescales/layer_0.log10), scalars timescales/layer_0.median and .max, tensor
                       timescales/layer_0 [n] sorted, and an image of tau by unit rank now against the
                       first probe's (step 0 when probed there)
  layer_dynamics       (in the train step, at summary steps) each layer's weight norm, gradient norm
                       and update-to-weight ratio |dw| / |w|, averaged over the interval:
                       layers/layer_0.weight_norm
"""

import dataclasses
import functools
from typing import Callable

import numpy as np
import tensorflow as tf

from harness import archs
from harness import probe_figures
from harness import summaries

SATURATED = 0.9  # Sigmoid gates below 1 - SATURATED or above it, tanh values beyond +-SATURATED.
FLOW_FLOOR = 1e-30  # The flow ratio's norms below this (float32 underflow to 0) count as this.


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
      'scalars': {summaries.card_tag('gradient_flow', tag, 'log10_first_over_last'): log10_ratio(norms[0], norms[-1])
                  for tag, norms in zip(batch.layer_tags, flow)},
      'figure_data': {tag: norms for tag, norms in zip(batch.layer_tags, flow)}
                     | {'input': batch.reference['input_flow']},
  }


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
      if fraction is None:  # No saturation (the LSTM's |c|, a candidate, |lambda|): its mean, on its own axis.
        scalars[summaries.card_tag('gate_mean', tag, gate)] = tf.reduce_mean(values)
        by_step['magnitude'][f'{tag}/{gate}'] = tf.reduce_mean(values, axis=[0, 2])
      else:
        scalars[summaries.card_tag('saturation', tag, gate)] = fraction
        by_step['saturated'][f'{tag}/{gate}'] = saturated(arch.gate_kinds[gate], values, axis=[0, 2])
  return {'histograms': histograms, 'scalars': scalars, 'figure_data': by_step}


def timescales(batch):
  retention = batch.model.arch.retention
  if retention is None:
    return {'figure_data': {}}
  histograms, scalars, tensors = {}, {}, {}
  for tag, layer_gates in zip(batch.layer_tags, batch.reference['gates']):
    kept = tf.reduce_mean(retention(layer_gates), axis=[0, 1])  # [n]: the state's mean retention per unit.
    steps = tf.sort(1.0 / tf.maximum(1.0 - kept, 1e-7))  # 1e-7: float32 resolves no |a| nearer 1.
    histograms[summaries.card_tag('timescales', tag, 'log10')] = tf.math.log(steps) / np.log(10.0)
    scalars[summaries.card_tag('timescales', tag, 'median')] = steps[tf.size(steps) // 2]
    scalars[summaries.card_tag('timescales', tag, 'max')] = steps[-1]
    tensors[f'timescales/{tag}'] = steps
  return {'histograms': histograms, 'scalars': scalars, 'tensors': tensors, 'figure_data': tensors}


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
    'gradient_flow': Probe(gradient_flow, probe_figures.FlowFigure),
    'gates': Probe(gates, probe_figures.GatesFigure),
    'timescales': Probe(timescales, probe_figures.TimescaleFigure),
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
    writer.write_histograms(step, histograms)
    writer.write_scalars(step, scalars)
    writer.write_summaries(step, tensors)
    writer.write_images(step, images)
