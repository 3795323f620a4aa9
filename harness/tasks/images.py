"""Image classification read as a sequence, in one of three views of each 28x28 image:

  rows      28 steps of 28 pixels (the TF1 tutorials' MNIST)
  pixels    784 steps of 1 pixel, row-major (sequential MNIST, Le et al. 2015)
  permuted  784 steps of 1 pixel in one fixed random order, the same for train
            and test and from run to run (permuted MNIST): no local structure
            left, the longest memory needed

Eval figures: the confusion matrix and the worst-misclassified test images.
"""

from absl import logging
import numpy as np
import tensorflow as tf

from harness import summaries
from harness.errors import UserError
from harness.tasks import base
from harness.tasks import sources

WORST_MISCLASSIFIED = 8


class ImageTask(base.ClassificationTask):
  """Inputs [batch, steps, features] floats in [0, 1] (rows: [b, 28, 28], else [b, 784, 1]); labels [b] int32."""

  def __init__(self, name, data, view='rows', permutation_seed=0):
    """data: a `sources.ImageData`; view: rows, pixels or permuted; the permutation's seed."""
    self.name = name
    self.view = view
    self.permutation_seed = permutation_seed
    pixels = int(np.prod(data.train_images.shape[1:]))
    self.permutation = (np.random.default_rng(permutation_seed).permutation(pixels).astype(np.int32)
                        if view == 'permuted' else None)
    self.train_images, self.train_labels = data.train_images, data.train_labels
    self.test_images, self.test_labels = data.test_images, data.test_labels
    self.num_test_examples = len(self.test_labels)
    self.class_names = data.class_names
    self.num_outputs = len(self.class_names)
    self.num_features = self.train_images.shape[-1] if view == 'rows' else 1
    self.source = data.source

  def steps_per_epoch(self, batch_size):
    steps = len(self.train_labels) // batch_size
    if steps == 0:
      raise UserError(f'--batch_size={batch_size}: larger than the {len(self.train_labels)} training examples')
    return steps

  def _to_inputs(self, images):
    """uint8 images [b, rows, cols] -> the view's float inputs in [0, 1]."""
    inputs = tf.cast(images, tf.float32) / 255.0
    if self.view == 'rows':
      return inputs
    pixels = tf.reshape(inputs, [tf.shape(inputs)[0], -1])
    if self.permutation is not None:
      pixels = tf.gather(pixels, self.permutation, axis=1)
    return pixels[..., None]

  def train_dataset(self, batch_size, seed, start_step=0, input_context=None):
    """Yields (inputs [b, 28, 28] float32, labels [b] int32) from global step `start_step` on."""
    self.steps_per_epoch(batch_size)
    rows = base.shuffled_epochs(len(self.train_labels), batch_size, seed, start_step, input_context)
    images, labels = tf.constant(self.train_images), tf.constant(self.train_labels)
    return rows.map(lambda i: (self._to_inputs(tf.gather(images, i)), tf.gather(labels, i)),
                    num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

  def eval_dataset(self, batch_size, input_context=None, examples=None):
    """Yields (inputs, labels, example indices) over the whole test split, or its `examples`, once."""
    images, labels = tf.constant(self.test_images), tf.constant(self.test_labels)
    return base.eval_indices(len(self.test_labels), batch_size, input_context, examples).map(
        lambda i: (self._to_inputs(tf.gather(images, i)), tf.gather(labels, i), i)).prefetch(tf.data.AUTOTUNE)

  def probe_batch(self, step=0):
    """The first PROBE_SIZE training examples: (inputs, labels)."""
    del step  # The batch is the same at every step.
    return (self._to_inputs(self.train_images[:base.PROBE_SIZE]),
            tf.constant(self.train_labels[:base.PROBE_SIZE]))

  def eval_metrics(self, results):
    return {'loss': float(results['loss'].mean()),
            'accuracy': float(np.mean(results['prediction'] == self.test_labels[results['index']]))}

  def eval_figures(self, results, model, title=''):
    del model
    labels, predictions, losses = self.test_labels[results['index']], results['prediction'], results['loss']
    confusion = np.zeros([self.num_outputs] * 2, np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    figures = {'confusion_matrix': confusion_matrix_image(confusion, self.class_names, title)}
    wrong = np.flatnonzero(predictions != labels)
    worst = wrong[np.argsort(-losses[wrong])][:WORST_MISCLASSIFIED]
    if len(worst):
      figures['worst_misclassified'] = misclassified_grid_image(
          self.test_images[results['index'][worst]], labels[worst], predictions[worst], losses[worst],
          self.class_names, title)
    return figures


def build(config):
  """The image task `config.task`, loaded through tfds (see `sources`)."""
  data = sources.load_images(config.task, config.data_dir)
  if config.stateful:
    logging.warning('--stateful on %s: batches are shuffled, unrelated examples, so the carried state '
                    'crosses from one example into another (as the source tutorial did).', config.task)
  return ImageTask(config.task, data, config.view, config.permutation_seed)


def _short(name, length):
  return name if len(name) <= length else name[:length - 1] + '…'


def confusion_matrix_image(confusion, class_names, title=''):
  """confusion: int [classes, classes], rows true, columns predicted. Returns uint8 [1, h, w, 3].

  Card-sized (`summaries.card`): colour by row fraction, the counts in the
  cells where they fit (up to 6 classes), the most frequent confusion named in
  the title.
  """
  classes = len(class_names)
  figure, ((axes,),), title_text = summaries.card()
  row_totals = np.maximum(confusion.sum(axis=1, keepdims=True), 1)
  axes.imshow(confusion / row_totals, cmap='Blues', vmin=0, vmax=1)
  ticks = np.arange(classes)
  axes.set_xticks(ticks, [str(i) for i in ticks], fontsize=summaries.FONT_SIZE)
  axes.set_yticks(ticks, [f'{_short(name, 11)} {i}' for i, name in enumerate(class_names)],
                  fontsize=summaries.FONT_SIZE)
  axes.set_xlabel('predicted class', fontsize=summaries.FONT_SIZE)
  axes.set_ylabel('true class', fontsize=summaries.FONT_SIZE)
  if classes <= 6:
    for (row, column), count in np.ndenumerate(confusion):
      if count:
        axes.text(column, row, str(count), ha='center', va='center', fontsize=summaries.FONT_SIZE,
                  color='white' if count / row_totals[row, 0] > 0.5 else 'black')
  off_diagonal = confusion - np.diag(np.diag(confusion))
  true, predicted = np.unravel_index(np.argmax(off_diagonal), off_diagonal.shape)
  accuracy = np.trace(confusion) / max(confusion.sum(), 1)
  worst = (f'most confused: {_short(class_names[true], 12)} → {_short(class_names[predicted], 12)} '
           f'({off_diagonal[true, predicted]})' if off_diagonal.any() else 'no confusion')
  title_text.set_text(summaries.titled(title, f'accuracy {accuracy:.4f} of {confusion.sum():,}\n{worst}'))
  figure.subplots_adjust(left=0.3, right=0.97, bottom=0.16, top=0.78)
  return summaries.figure_to_image(figure)


def misclassified_grid_image(images, true_labels, predicted_labels, losses, class_names, title=''):
  """The given test images (at most 8), each titled true -> predicted and its loss. images: [k, 28, 28] uint8."""
  count = len(images)
  columns = min(count, 4)
  rows = max(1, -(-count // columns))
  figure, axes, title_text = summaries.card(rows, columns)
  for i, ax in enumerate(axes.flat):
    ax.axis('off')
    if i < count:
      ax.imshow(images[i], cmap='gray', vmin=0, vmax=255)
      ax.set_title(f'{_short(class_names[true_labels[i]], 10)} {losses[i]:.1f}\n→ '
                   f'{_short(class_names[predicted_labels[i]], 10)}', fontsize=summaries.FONT_SIZE)
  title_text.set_text(summaries.titled(title, 'worst misclassified: true, its loss → predicted'))
  # Below the two-line figure title, room for the first row's two-line titles.
  figure.subplots_adjust(left=0.02, right=0.98, bottom=0.01, top=1 - 0.72 / summaries.CARD_FIGSIZE[1], hspace=0.6,
                         wspace=0.15)
  return summaries.figure_to_image(figure)
