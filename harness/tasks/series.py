"""Generated sequence tasks: sin -> cos regression over parallel streams (the TF1 tutorial's).

sin2cos reads `batch_size` parallel streams of x = t / (10 pi), each cut into
consecutive windows of `seq_len` steps; the input is sin(x), the target cos(x)
at every step. Eval figure: prediction against target over consecutive windows.
"""

import math

import numpy as np
import tensorflow as tf

from harness import summaries
from harness.tasks import base


class SeriesTask(base.Task):
  """sin -> cos regression over `num_streams` parallel streams cut into windows of `seq_len`.

  Stream b reads x = (t + offset_b) / (10 pi) at integer time t, offsets drawn
  from the seed. Training window k covers t in [k * seq_len, (k + 1) * seq_len);
  an epoch is `windows_per_epoch` consecutive windows, and evaluation scores the
  `eval_windows` windows that follow, which training never sees.

  With `carry_state` (a stateful run), evaluation reads each stream from the
  series start, as training does after its reset at each epoch, so the scored
  windows see the state carried through every window before them; without it,
  every window starts from zeros.
  """
  per_step_outputs = True
  num_outputs = 1
  num_features = 1
  windows_per_epoch = 50
  eval_windows = 10
  plot_windows = 5

  def __init__(self, num_streams, seq_len, seed, carry_state=False):
    self.name = 'sin2cos'
    self.num_streams = num_streams
    self.seq_len = seq_len
    self.carry_state = carry_state
    self.offsets = np.random.default_rng(seed).integers(0, 1000, num_streams).astype(np.float32)
    self.num_test_examples = num_streams if carry_state else self.eval_windows * num_streams
    self.source = f'sin2cos: synthetic, {num_streams} streams x windows of {seq_len} steps, x = t/(10 pi)'

  def steps_per_epoch(self, batch_size):
    del batch_size  # One window of every stream per step.
    return self.windows_per_epoch

  def windows(self, first_window, num_windows, streams):
    """Inputs and targets over consecutive windows.

    Args:
      first_window: the first window's index, a scalar or one per stream [b].
      num_windows: how many consecutive windows.
      streams: int stream indices [b].

    Returns:
      (sin [b, num_windows * seq_len, 1], cos [same]).
    """
    first = tf.cast(tf.broadcast_to(first_window, tf.shape(streams)), tf.float32)
    t = first[:, None] * self.seq_len + tf.range(num_windows * self.seq_len, dtype=tf.float32)[None, :]
    x = (t + tf.gather(self.offsets, streams)[:, None]) / (10 * math.pi)
    return tf.sin(x)[..., None], tf.cos(x)[..., None]

  def train_dataset(self, batch_size, seed, start_step=0, input_context=None):
    """Yields (sin [b, seq_len, 1], cos [b, seq_len, 1]), window `step % windows_per_epoch`."""
    del seed  # The order is fixed: consecutive windows.
    steps = tf.data.Dataset.range(start_step, 2**62)
    streams = tf.range(batch_size, dtype=tf.int64)
    rows = base.replica_rows(steps.map(lambda _: streams), batch_size, input_context)
    replicas_per_step = 1 if input_context is None else (
        input_context.num_replicas_in_sync // input_context.num_input_pipelines)
    # Each step contributes `replicas_per_step` row slices; pair each with its step.
    step_per_row = steps.flat_map(lambda s: tf.data.Dataset.from_tensors(s).repeat(replicas_per_step))
    return tf.data.Dataset.zip(step_per_row, rows).map(
        lambda step, rows: self.windows(step % self.windows_per_epoch, 1, rows)).prefetch(tf.data.AUTOTUNE)

  def eval_dataset(self, batch_size, input_context=None, examples=None):
    """Yields (inputs, targets, example indices) that score every eval window of every stream once (or `examples`).

    Stateless: an example is one window of one stream, inputs and targets
    [b, seq_len, 1]. With `carry_state`: an example is one stream read from the
    series start: inputs [b, (windows_per_epoch + eval_windows) * seq_len, 1],
    targets the last eval_windows * seq_len steps.
    """
    num_streams = len(self.offsets)
    if self.carry_state:
      def stream_batch(stream):
        inputs, targets = self.windows(0, self.windows_per_epoch + self.eval_windows, stream)
        return inputs, targets[:, -self.eval_windows * self.seq_len:], stream
      return base.eval_indices(num_streams, batch_size, input_context, examples).map(stream_batch)

    def window_batch(example):
      inputs, targets = self.windows(self.windows_per_epoch + example // num_streams, 1, example % num_streams)
      return inputs, targets, example

    return base.eval_indices(self.eval_windows * num_streams, batch_size, input_context, examples).map(window_batch)

  def probe_batch(self, step=0):
    """The first streams' window 0; with `carry_state`, the window the next step reads (state carried into it)."""
    window = step % self.windows_per_epoch if self.carry_state else 0
    return self.windows(window, 1, tf.range(min(base.PROBE_SIZE, len(self.offsets))))

  def per_example_loss(self, targets, outputs):
    """MSE over the targets' steps [b]; outputs before them (a stateful eval's warm-up) are not scored."""
    return tf.reduce_mean(tf.square(outputs[:, -tf.shape(targets)[1]:] - targets), axis=[1, 2])

  def eval_metrics(self, results):
    loss = float(results['loss'].mean())
    return {'loss': loss, 'mse': loss}

  def eval_figures(self, results, model, title=''):
    """Stream 0 over the first eval windows: state carried from the series start (stateful) or reset at each window."""
    del results
    windows, length = self.plot_windows, self.plot_windows * self.seq_len
    if self.carry_state:
      inputs, targets = self.windows(0, self.windows_per_epoch + windows, tf.constant([0]))
      predictions = model(inputs)[0][0, -length:, 0]
      how = 'stateful: state carried from the series start'
    else:
      inputs, targets = self.windows(self.windows_per_epoch, windows, tf.constant([0]))
      predictions = tf.reshape(model(tf.reshape(inputs, [windows, self.seq_len, 1]))[0], [-1])
      how = 'stateless: state reset at every window'
    targets = targets[0, -length:, 0].numpy()
    predictions = predictions.numpy()
    return {'prediction_vs_target': prediction_plot_image(
        targets, predictions, self.seq_len,
        summaries.titled(title, f'{how}\nMSE over these {windows} windows '
                                f'{np.mean((predictions - targets) ** 2):.4f}'))}


def build_sin2cos(config):
  return SeriesTask(config.batch_size, config.seq_len, config.seed, carry_state=config.stateful)


def prediction_plot_image(targets, predictions, window_length, title):
  """Prediction vs target over consecutive windows; dotted lines mark window starts.

  targets, predictions: [time] floats. Returns uint8 [1, h, w, 3], card-sized.
  """
  figure, ((axes,),), title_text = summaries.card()
  steps = np.arange(len(targets))
  axes.plot(steps, targets, label='target cos', color='tab:red')
  axes.plot(steps, predictions, label='prediction', color='tab:blue', linestyle='--')
  for start in range(0, len(targets), window_length):
    axes.axvline(start, color='gray', linewidth=0.5, linestyle=':')
  axes.set_xlabel('step', fontsize=summaries.FONT_SIZE)
  axes.set_ylim(-1.4, 1.4)
  axes.legend(loc='upper right', fontsize=summaries.FONT_SIZE, frameon=False, ncol=2)
  title_text.set_text(title)
  summaries.card_margins(figure, title_lines=title.count('\n') + 1)
  return summaries.figure_to_image(figure)
