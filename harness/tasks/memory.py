"""Long-memory tasks made here: the adding problem and the copy task.

Both are generated without end: the batch of global step s is a pure function
of (--seed, s), so a resumed run sees exactly the batches it would have seen.
Their test sets are fixed (the same for every run and seed), so runs compare,
and generated as they are read, so that no length T is held in memory (2,000
copy sequences of T = 5,000 would take 400 MB). An epoch is EXAMPLES_PER_EPOCH
examples.

adding (Hochreiter & Schmidhuber 1997): T steps of two features, a value
uniform in [0, 1] and a marker that is 1 at exactly two steps, one in each
half; the target is the sum of the two marked values. Predicting the constant
1 scores MSE 1/6 (the variance of the sum): the memoryless baseline.

copy (Arjovsky, Shah & Bengio 2016): 10 symbols from 8 categories, T - 1
blanks, a delimiter, then 10 blanks during which the model must output the 10
symbols in order: T + 20 steps, one-hot over 10 classes (0 blank, 1-8 symbols,
9 delimiter), a class to predict at every step. A memoryless model outputs
blanks and then guesses: cross-entropy 10 log(8) / (T + 20), accuracy 1/8 on
the recalled symbols.
"""

import math

from absl import logging
import numpy as np
import tensorflow as tf

from harness import summaries
from harness.tasks import base

EXAMPLES_PER_EPOCH = 10_000
TEST_EXAMPLES = 2_000
_PROBE_STEP = -1  # The probe batch: the batch of a step no run reaches.
# Test example i is generated alone from (_TEST_KEY, -2 - i): a step no run
# reaches, so no training batch shares its seed, and every run, batch size and
# replica count scores the same sequences.
_TEST_KEY = 2026
COPY_SYMBOLS, COPY_CATEGORIES, COPY_CLASSES, COPY_DELIMITER = 10, 8, 10, 9


class GeneratedTask(base.Task):
  """A task whose examples are generated from a seed: `generate(seed, count)` -> (inputs, targets)."""

  target_dtype = tf.float32
  num_test_examples = TEST_EXAMPLES

  def __init__(self, seq_len, seed):
    self.seq_len = seq_len
    self.seed = seed

  def generate(self, seed, count):
    raise NotImplementedError

  def test_examples(self, indices):
    """(inputs, targets) of the test examples numbered `indices` [k], each generated from its own seed."""
    def example(index):
      inputs, targets = self.generate(tf.stack([tf.constant(_TEST_KEY, tf.int64), -2 - index]), 1)
      return inputs[0], targets[0]
    return tf.map_fn(example, tf.cast(indices, tf.int64), fn_output_signature=(tf.float32, self.target_dtype))

  def steps_per_epoch(self, batch_size):
    return max(1, EXAMPLES_PER_EPOCH // batch_size)

  def train_dataset(self, batch_size, seed, start_step=0, input_context=None):
    """Yields the batch of each global step from `start_step` on, generated from (seed, step)."""
    steps = tf.data.Dataset.range(start_step, 2**62)
    batches = steps.map(lambda step: self.generate(tf.stack([tf.constant(seed, tf.int64), step]), batch_size))
    return base.replica_rows(batches, batch_size, input_context).prefetch(tf.data.AUTOTUNE)

  def eval_dataset(self, batch_size, input_context=None, examples=None):
    return base.eval_indices(TEST_EXAMPLES, batch_size, input_context, examples).map(
        lambda i: (*self.test_examples(i), i), num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

  def probe_batch(self, step=0):
    del step  # The batch is the same at every step.
    return self.generate(tf.constant([self.seed, _PROBE_STEP], tf.int64), base.PROBE_SIZE)


class AddingTask(GeneratedTask):
  """Inputs [b, T, 2] (value, marker); targets [b, 1], the sum of the two marked values."""
  num_features = 2
  num_outputs = 1
  baselines = {'loss': 1 / 6, 'mse': 1 / 6}
  thresholds = {'mse': 0.01}

  def __init__(self, seq_len, seed):
    self.name = 'adding'
    self.source = f'adding problem: generated, T = {seq_len}; test set of {TEST_EXAMPLES} fixed sequences'
    super().__init__(seq_len, seed)

  def generate(self, seed, count):
    value_seed, first_seed, second_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    length, half = self.seq_len, self.seq_len // 2
    values = tf.random.stateless_uniform([count, length], value_seed)
    first = tf.random.stateless_uniform([count], first_seed, minval=0, maxval=half, dtype=tf.int32)
    second = tf.random.stateless_uniform([count], second_seed, minval=half, maxval=length, dtype=tf.int32)
    markers = tf.one_hot(first, length) + tf.one_hot(second, length)
    return tf.stack([values, markers], axis=-1), tf.reduce_sum(values * markers, axis=1, keepdims=True)

  def per_example_loss(self, targets, outputs):
    return tf.reduce_mean(tf.square(outputs - targets), axis=-1)

  def eval_outputs(self, targets, outputs):
    return {'loss': self.per_example_loss(targets, outputs), 'prediction': outputs[:, 0], 'target': targets[:, 0]}

  def eval_metrics(self, results):
    mse = float(results['loss'].mean())
    return {'loss': mse, 'mse': mse}

  def eval_figures(self, results, model, title=''):
    del model
    targets, predictions = results['target'], results['prediction']
    figure, ((axes,),), title_text = summaries.card()
    axes.scatter(targets, predictions, s=2, alpha=0.4, color='tab:blue', label='test sequences')
    axes.plot([0, 2], [0, 2], color='black', linewidth=1, label='perfect')
    axes.axhline(1.0, color='tab:red', linestyle='--', linewidth=1, label='baseline 1')
    axes.set_xlim(0, 2)
    axes.set_ylim(-0.2, 2.2)
    axes.set_xlabel('target: sum of the marked values', fontsize=summaries.FONT_SIZE)
    axes.set_ylabel('prediction', fontsize=summaries.FONT_SIZE)
    axes.legend(fontsize=summaries.FONT_SIZE, loc='upper left', frameon=False, handlelength=1.2, labelspacing=0.2)
    mse = float(np.mean((predictions - targets) ** 2))
    title_text.set_text(summaries.titled(title, f'T = {self.seq_len}: MSE {mse:.4f} (baseline {1 / 6:.4f})'))
    summaries.card_margins(figure)
    return {'prediction_vs_target': summaries.figure_to_image(figure)}


class CopyTask(GeneratedTask):
  """Inputs [b, T + 20, 10] one-hot; targets [b, T + 20] class ids: blanks, then the 10 symbols."""
  num_features = COPY_CLASSES
  num_outputs = COPY_CLASSES
  per_step_outputs = True
  target_dtype = tf.int32
  train_metric_names = ('accuracy',)
  eval_metric_names = ('loss', 'accuracy')
  thresholds = {'accuracy': 0.99}

  def __init__(self, seq_len, seed):
    self.name = 'copy'
    self.source = (f'copy task: generated, {COPY_SYMBOLS} symbols recalled after T = {seq_len} steps; '
                   f'test set of {TEST_EXAMPLES} fixed sequences')
    self.baselines = {'loss': COPY_SYMBOLS * math.log(COPY_CATEGORIES) / (seq_len + 2 * COPY_SYMBOLS),
                      'accuracy': 1 / COPY_CATEGORIES}
    super().__init__(seq_len, seed)

  def generate(self, seed, count):
    symbols = tf.random.stateless_uniform([count, COPY_SYMBOLS], seed, minval=1, maxval=COPY_CATEGORIES + 1,
                                          dtype=tf.int32)
    blanks = lambda steps: tf.zeros([count, steps], tf.int32)  # pylint: disable=unnecessary-lambda-assignment
    inputs = tf.concat([symbols, blanks(self.seq_len - 1), tf.fill([count, 1], COPY_DELIMITER),
                        blanks(COPY_SYMBOLS)], axis=1)
    targets = tf.concat([blanks(self.seq_len + COPY_SYMBOLS), symbols], axis=1)
    return tf.one_hot(inputs, COPY_CLASSES), targets

  def per_example_loss(self, targets, outputs):
    """Cross-entropy averaged over all T + 20 steps [b]."""
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(targets, outputs), axis=1)

  def _recalled(self, outputs):
    return tf.argmax(outputs[:, -COPY_SYMBOLS:], axis=-1, output_type=tf.int32)

  def train_metrics(self, targets, outputs):
    """Per example, the fraction of the 10 recalled symbols that are right."""
    correct = tf.equal(self._recalled(outputs), targets[:, -COPY_SYMBOLS:])
    return {'accuracy': tf.reduce_mean(tf.cast(correct, tf.float32), axis=1)}

  def eval_outputs(self, targets, outputs):
    return {'loss': self.per_example_loss(targets, outputs), 'recalled': self._recalled(outputs),
            'symbols': targets[:, -COPY_SYMBOLS:]}

  def eval_metrics(self, results):
    return {'loss': float(results['loss'].mean()),
            'accuracy': float(np.mean(results['recalled'] == results['symbols']))}

  def eval_figures(self, results, model, title=''):
    """The first test sequences: the symbols to recall against the ones recalled (wrong ones in red)."""
    del model
    shown = 6
    truth, recalled = results['symbols'][:shown], results['recalled'][:shown]
    figure, ((axes,),), title_text = summaries.card()
    axes.set_xlim(-0.5, COPY_SYMBOLS - 0.5)
    axes.set_ylim(2 * shown - 0.5, -0.5)
    axes.axis('off')
    for row in range(shown):
      for column in range(COPY_SYMBOLS):
        axes.text(column, 2 * row, str(truth[row, column]), ha='center', va='center', fontsize=summaries.FONT_SIZE,
                  color='black')
        right = recalled[row, column] == truth[row, column]
        axes.text(column, 2 * row + 0.8, str(recalled[row, column]), ha='center', va='center',
                  fontsize=summaries.FONT_SIZE, color='tab:green' if right else 'tab:red',
                  fontweight='normal' if right else 'bold')
    accuracy = float(np.mean(recalled == truth))
    title_text.set_text(summaries.titled(title, f'T = {self.seq_len}: to recall (black), recalled below\n(green right, '
                                                f'red wrong); these {shown}: {accuracy:.2f}'))
    figure.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1 - 0.55 / summaries.CARD_FIGSIZE[1])
    return {'recalled_symbols': summaries.figure_to_image(figure)}


def _build(task_class):
  def build(config):
    if config.stateful:
      logging.warning('--stateful on %s: every sequence is a new example, so the carried state crosses from one '
                      'example into another.', config.task)
    return task_class(config.seq_len, config.seed)
  return build


build_adding = _build(AddingTask)
build_copy = _build(CopyTask)
