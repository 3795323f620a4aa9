"""Dict-based TensorBoard writing, and the pictures the harness draws.

One `SummaryWriter` per event folder (`<run>/`, `<run>/train`, `<run>/eval`).
Writers on non-chief workers are no-ops, so callers never branch on the role.
"""

import contextlib
import io

import matplotlib
matplotlib.use('Agg')  # No display; must precede pyplot.
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np
import tensorflow as tf
from tensorboard.compat.proto import event_pb2
from tensorboard.plugins.hparams import api as hparams_api

FLUSH_MILLIS = 10_000  # Events reach disk at least this often while training runs.


class SummaryWriter:
  """Writes scalars, histograms, images, text and hparams to one event folder."""

  def __init__(self, logdir, enabled=True):
    self.enabled = enabled
    self._writer = (tf.summary.create_file_writer(logdir, flush_millis=FLUSH_MILLIS)
                    if enabled else tf.summary.create_noop_writer())

  @contextlib.contextmanager
  def as_default(self, step):
    with self._writer.as_default(step=step):
      yield

  def scalars(self, step, values):
    """values: {tag: number}."""
    with self.as_default(step):
      for tag, value in values.items():
        tf.summary.scalar(tag, value)

  def histograms(self, step, arrays):
    """arrays: {tag: tensor of any shape}. Written by one graph call, not op by op."""
    with self.as_default(step):
      self._write_histograms(tf.constant(step, tf.int64), arrays)

  @tf.function
  def _write_histograms(self, step, arrays):
    for tag, value in arrays.items():
      tf.summary.histogram(tag, value, step=step)

  def images(self, step, images):
    """images: {tag: uint8 [k, height, width, channels]}."""
    with self.as_default(step):
      for tag, value in images.items():
        tf.summary.image(tag, value, max_outputs=len(value))

  def text(self, step, texts):
    """texts: {tag: markdown string}."""
    with self.as_default(step):
      for tag, value in texts.items():
        tf.summary.text(tag, value)

  def hparams(self, hparams, metrics):
    """Declares this run's hyperparameters, and which scalar tags are its metrics.

    Args:
      hparams: {name: bool, int, float or str}.
      metrics: {(group, tag): display name}; group is the sub-folder ('eval').
    """
    if not self.enabled:
      return
    with self.as_default(0):
      hparams_api.hparams_config(
          hparams=[hparams_api.HParam(name) for name in hparams],
          metrics=[hparams_api.Metric(tag, group=group, display_name=name)
                   for (group, tag), name in metrics.items()])
      hparams_api.hparams(hparams)

  def session_start(self, step):
    """Marks a (re)start at `step`: TensorBoard then drops events from step on that an earlier attempt wrote.

    TensorBoard ignores a run's first START and purges on later ones, so a
    resumed run's curves continue from its checkpoint instead of overlapping.
    """
    if not self.enabled:
      return
    event = event_pb2.Event(step=step, wall_time=0.0,
                            session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START))
    with self.as_default(step):
      tf.raw_ops.ImportEvent(writer=self._writer._resource,  # pylint: disable=protected-access
                             event=event.SerializeToString())

  def flush(self):
    self._writer.flush()

  def close(self):
    self._writer.close()


def _figure_to_image(figure):
  """Renders a matplotlib figure to uint8 [1, height, width, 4]."""
  buffer = io.BytesIO()
  figure.savefig(buffer, format='png', dpi=100)
  plt.close(figure)
  return tf.image.decode_png(buffer.getvalue(), channels=4)[None].numpy()


def confusion_matrix_image(confusion, class_names):
  """confusion: int [classes, classes], rows true, columns predicted. Returns uint8 [1, h, w, 4]."""
  figure, axes = plt.subplots(figsize=(6.4, 5.6))
  row_totals = np.maximum(confusion.sum(axis=1, keepdims=True), 1)
  axes.imshow(confusion / row_totals, cmap='Blues', vmin=0, vmax=1)
  ticks = np.arange(len(class_names))
  axes.set_xticks(ticks, class_names, rotation=45, ha='right', fontsize=8)
  axes.set_yticks(ticks, class_names, fontsize=8)
  axes.set_xlabel('predicted')
  axes.set_ylabel('true')
  for (row, column), count in np.ndenumerate(confusion):
    if count:
      axes.text(column, row, str(count), ha='center', va='center', fontsize=6,
                color='white' if count / row_totals[row, 0] > 0.5 else 'black')
  axes.set_title(f'confusion matrix, {confusion.sum()} test examples (colour: row fraction)', fontsize=9)
  figure.tight_layout()
  return _figure_to_image(figure)


def misclassified_grid_image(images, true_labels, predicted_labels, losses, class_names):
  """A grid of the given test images titled true / predicted. images: [k, 28, 28] uint8."""
  count = len(images)
  columns = min(count, 6)
  rows = max(1, -(-count // columns))
  figure, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 2.2 * rows), squeeze=False)
  for i, ax in enumerate(axes.flat):
    ax.axis('off')
    if i < count:
      ax.imshow(images[i], cmap='gray', vmin=0, vmax=255)
      ax.set_title(f'true {class_names[true_labels[i]]}\npred {class_names[predicted_labels[i]]}\n'
                   f'loss {losses[i]:.2f}', fontsize=7)
  figure.suptitle('worst-misclassified test images', fontsize=9)
  figure.tight_layout()
  return _figure_to_image(figure)


def prediction_plot_image(targets, predictions, window_length, title):
  """Prediction vs target over consecutive windows; dotted lines mark window starts.

  targets, predictions: [time] floats. Returns uint8 [1, h, w, 4].
  """
  figure, axes = plt.subplots(figsize=(8, 3))
  steps = np.arange(len(targets))
  axes.plot(steps, targets, label='target cos', color='tab:red')
  axes.plot(steps, predictions, label='prediction', color='tab:blue', linestyle='--')
  for start in range(0, len(targets), window_length):
    axes.axvline(start, color='gray', linewidth=0.5, linestyle=':')
  axes.set_xlabel('step')
  axes.set_ylim(-1.4, 1.4)
  axes.legend(loc='upper right', fontsize=8)
  axes.set_title(title, fontsize=9)
  figure.tight_layout()
  return _figure_to_image(figure)


def markdown_table(rows, header=('name', 'value')):
  """rows: iterable of (name, value) pairs. Returns a markdown table."""
  lines = [f'| {header[0]} | {header[1]} |', '|---|---|']
  lines += [f'| `{name}` | {value} |' for name, value in rows]
  return '\n'.join(lines)

