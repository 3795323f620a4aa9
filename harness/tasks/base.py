"""What every task offers the loop, and the input-pipeline pieces tasks share.

The loop knows tasks only through `Task`'s interface: datasets, a loss, the
metrics to average during training and evaluation, figures. A task
owns everything particular to it; the loop never asks which task it has.

Training order is a pure function of (seed, step), so a resumed run continues
at exactly the right data position without checkpointing the iterator.
"""

import keras
import numpy as np
import tensorflow as tf

from harness.errors import UserError

PROBE_SIZE = 32  # Examples in the fixed batch that histograms and probes read.
MAX_EPOCHS = 2**31 - 1
# The order the evaluation subsets are drawn from: one for every run and seed, so a run's evaluations, its
# resumes and a sweep's seeds all read the same examples, and a smaller subset is part of a larger one.
EVAL_SUBSET_SEED = 2026


class Task:
  """The interface of a task. Subclasses set the attributes and implement the datasets.

  Attributes:
    name: the task's name (`--task`).
    source: where the data came from, in words (logged, in hparams and metrics.json).
    num_features: features per input step.
    num_outputs: classes, or outputs per step.
    num_test_examples: the test split's size; `eval_dataset` numbers its examples 0 .. num_test_examples - 1.
    per_step_outputs: whether the model's head reads every step (else the last).
    train_metric_names: per-example metrics averaged over training steps.
    baselines: {eval metric: value} a memoryless model scores, drawn beside the
      eval curves so they read against it.
    thresholds: {eval metric: value} at which the task counts as solved (at
      most; at least for task_table.HIGHER_IS_BETTER): a sweep reports the steps
      each trial took to reach it.
  """
  name = ''
  source = ''
  num_features = 0
  num_outputs = 0
  num_test_examples = 0
  per_step_outputs = False
  train_metric_names = ()
  baselines = {}
  thresholds = {}

  def steps_per_epoch(self, batch_size):
    raise NotImplementedError

  def train_dataset(self, batch_size, seed, start_step=0, input_context=None):
    """Yields (inputs [b, time, features], targets) for global steps `start_step`, `start_step + 1`, ..."""
    raise NotImplementedError

  def eval_dataset(self, batch_size, input_context=None, examples=None):
    """Yields (inputs, targets, example index [b]) covering the test set once, or only its `examples` (indices [k])."""
    raise NotImplementedError

  def probe_batch(self, step=0):
    """A fixed batch (inputs, targets) of PROBE_SIZE training examples, for histograms and probes.

    A task whose state carries across batches gives the batch the next training
    step reads (`step`), so that the carried state fits it.
    """
    raise NotImplementedError

  def per_example_loss(self, targets, outputs):
    """The training loss per example [b]."""
    raise NotImplementedError

  def train_metrics(self, targets, outputs):
    """{name: per-example value [b]} for each of `train_metric_names`."""
    del targets, outputs
    return {}

  def eval_outputs(self, targets, outputs):
    """{name: per-example tensor [b, ...]} that `eval_metrics` and `eval_figures` read, 'loss' included."""
    return {'loss': self.per_example_loss(targets, outputs)}

  def eval_metrics(self, results):
    """{name: float} from `eval_outputs` gathered over the examples evaluated (numpy, in example order).

    `results['index']` [k] numbers those examples in the test split (all of it, or a subset). The names are the
    task's `task_table.TaskSpec.eval_metrics`, 'loss' first.
    """
    return {'loss': float(results['loss'].mean())}

  def eval_figures(self, results, model, title=''):
    """{tag: uint8 image [k, h, w, c]} drawn at each evaluation (the chief only), each title starting with `title`."""
    del results, model, title
    return {}


class ClassificationTask(Task):
  """One label per example; the head reads the last step's output: logits [b, classes]."""
  train_metric_names = ('accuracy',)

  def per_example_loss(self, targets, outputs):
    return keras.losses.sparse_categorical_crossentropy(targets, outputs, from_logits=True)

  def train_metrics(self, targets, outputs):
    return {'accuracy': tf.cast(tf.equal(tf.argmax(outputs, -1, output_type=tf.int32), targets), tf.float32)}

  def eval_outputs(self, targets, outputs):
    return {'loss': self.per_example_loss(targets, outputs),
            'prediction': tf.argmax(outputs, -1, output_type=tf.int32)}


def replica_rows(global_rows, batch_size, input_context):
  """Splits a dataset of global batches into this pipeline's per-replica batches.

  Args:
    global_rows: dataset whose elements are (nests of) tensors [batch_size, ...],
      one global batch per step.
    batch_size: the global batch size.
    input_context: a `tf.distribute.InputContext`, or None for one device.

  Returns:
    A dataset of [batch_size / replicas, ...] elements: for each step, one per
    local replica, in replica order (how tf.distribute hands them out).
  """
  if input_context is None:
    return global_rows
  replicas = input_context.num_replicas_in_sync
  if batch_size % replicas:
    raise UserError(f'--batch_size={batch_size}: must divide evenly over {replicas} replicas')
  per_replica = batch_size // replicas
  local_replicas = replicas // input_context.num_input_pipelines
  start = input_context.input_pipeline_id * local_replicas * per_replica

  def local_slices(tensor):
    local = tensor[start:start + local_replicas * per_replica]
    return tf.reshape(local, tf.concat([[local_replicas, per_replica], tf.shape(local)[1:]], 0))

  return global_rows.flat_map(
      lambda *rows: tf.data.Dataset.from_tensor_slices(tf.nest.map_structure(local_slices, rows if len(rows) > 1
                                                                             else rows[0])))


def eval_subset(num_examples, size):
  """The sorted indices [size] of a fixed subset of a test split of `num_examples`; None for the whole split.

  None too where `size` is None or covers the split. The subset is the first `size` of one seeded order
  (EVAL_SUBSET_SEED), whatever the run.
  """
  if size is None or size >= num_examples:
    return None
  return np.sort(np.random.default_rng(EVAL_SUBSET_SEED).permutation(num_examples)[:size])


def eval_indices(num_examples, batch_size, input_context, examples=None):
  """Batches of example indices covering [0, num_examples) once, or `examples` [k], sharded per input pipeline."""
  indices = (tf.data.Dataset.range(num_examples) if examples is None
             else tf.data.Dataset.from_tensor_slices(np.asarray(examples, np.int64)))
  if input_context is None:
    return indices.batch(batch_size)
  indices = indices.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
  return indices.batch(input_context.get_per_replica_batch_size(batch_size))


def shuffled_epochs(num_examples, batch_size, seed, start_step, input_context):
  """Dataset of example-index batches: epoch e is a stateless permutation seeded by (seed, e).

  Returns per-replica index vectors from global step `start_step` on.
  """
  steps = num_examples // batch_size
  start_epoch, offset = divmod(start_step, steps)

  def epoch_batches(epoch):
    order = tf.random.experimental.stateless_shuffle(
        tf.range(num_examples), seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
    return tf.data.Dataset.from_tensor_slices(tf.reshape(order[:steps * batch_size], [steps, batch_size]))

  rows = tf.data.Dataset.range(start_epoch, MAX_EPOCHS).flat_map(epoch_batches).skip(offset)
  return replica_rows(rows, batch_size, input_context)
