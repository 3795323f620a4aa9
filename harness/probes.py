"""What is measured on the fixed probe batch at histogram steps.

A plain dict maps each probe name to a function of a `ProbeBatch` that returns
`{tag: tensor}`, written as histograms. The batch computes the forward pass and
gradients once, on first use, for every probe that reads them.
"""

import functools

import tensorflow as tf


class ProbeBatch:
  """The model and a fixed batch; the forward pass and gradients on it are computed once, when first read."""

  def __init__(self, model, task, inputs, targets):
    self.model, self.task, self.inputs, self.targets = model, task, inputs, targets

  @functools.cached_property
  def _forward(self):
    with tf.GradientTape() as tape:
      outputs, _, sequences = self.model.forward(self.inputs, training=False)
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


def weights(batch):
  return {f'weights/{v.path}': v.value for v in batch.model.trainable_variables}


def gradients(batch):
  return {f'gradients/{v.path}': g for v, g in zip(batch.model.trainable_variables, batch.gradients)}


def activations(batch):
  return {f'activations/{layer.name}': s for layer, s in zip(batch.model.recurrent_layers, batch.sequences)}


PROBES = {
    'weights': weights,
    'gradients': gradients,
    'activations': activations,
}


def make_probe_step(model, task, names=tuple(PROBES)):
  """Returns probe_step(inputs, targets) -> {tag: tensor} from the probes `names`, in one graph call."""

  @tf.function
  def probe_step(inputs, targets):
    batch = ProbeBatch(model, task, inputs, targets)
    arrays = {}
    for name in names:
      arrays.update(PROBES[name](batch))
    return arrays

  return probe_step
