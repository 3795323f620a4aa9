"""Shared test helpers: tiny tasks and configs, and reading event files back with TensorBoard's own loader."""

import os
import shutil
import subprocess
import sys
import tempfile
from unittest import mock

import numpy as np
from tensorboard.backend.event_processing import plugin_event_multiplexer
from tensorboard.util import tensor_util

from harness import config as config_lib
from harness import fused_ops
from harness import summaries
from harness.tasks import idx
from harness.tasks import images
from harness.tasks import sources

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(units=(8,), input_units=0, batch_size=8, train_steps=6, eval_every=3, checkpoint_every=3,
            summary_every=2, histogram_every=3)


def require_fused_ops(test_case):
  """Skips a test of the fused CPU ops where they cannot be built by design (no C++ compiler, not
  x86-64 Linux: the layers fall back there); anywhere else a failing build fails the test, naming why."""
  try:
    fused_ops.library_path()
  except fused_ops.Unavailable as reason:
    if 'no C++ compiler' in str(reason) or 'x86-64 Linux only' in str(reason):
      test_case.skipTest(f'the fused ops cannot be built here: {reason}')
    raise


def tiny_config(**overrides):
  return config_lib.make_config(**{**TINY, **overrides})


def learnable_image_task(num_train=64, num_test=32, size=8, num_classes=4, seed=0):
  """Images whose class is the row holding a bright bar: learnable in a few dozen steps."""
  rng = np.random.default_rng(seed)

  def split(n):
    labels = rng.integers(0, num_classes, n)
    images = rng.integers(0, 40, (n, size, size)).astype(np.uint8)
    images[np.arange(n), labels * (size // num_classes)] = 255
    return images, labels

  return images.ImageTask('tiny', sources.image_data(split(num_train), split(num_test),
                                                    [f'class{i}' for i in range(num_classes)], 'tiny synthetic bars'))


def load_run(run_dir):
  """A reloaded TensorBoard multiplexer over one run folder (sub-runs '.', 'train', 'eval')."""
  # Keep every scalar: TensorBoard's loader otherwise samples down to 500 per tag.
  multiplexer = plugin_event_multiplexer.EventMultiplexer(tensor_size_guidance={'scalars': 0})
  multiplexer.AddRunsFromDirectory(run_dir)
  multiplexer.Reload()
  return multiplexer


def tensor_series(multiplexer, run, tag):
  """[(step, numpy value)] of a TF2 summary tag (stored as tensor events)."""
  return [(event.step, tensor_util.make_ndarray(event.tensor_proto))
          for event in multiplexer.Tensors(run, tag)]


def scalar_series(multiplexer, run, tag):
  return [(step, float(value)) for step, value in tensor_series(multiplexer, run, tag)]


# Short runs' flags for the child-process tests (each adds its task, batch and steps).
TINY_FLAGS = ('--units=8', '--summary_every=5', '--eval_every=10', '--checkpoint_every=10')


def harness_command(*args):
  """The `python -m harness.train ARGS` command line of a child process."""
  return [sys.executable, '-m', 'harness.train', *args]


def run_harness(args, timeout=300, env=None):
  """Runs `python -m harness.train ARGS`; returns the CompletedProcess (text output)."""
  return subprocess.run(harness_command(*args), capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT,
                        env={**os.environ, **(env or {})})


def start_harness(*args, env=None):
  """Starts `python -m harness.train ARGS` in the background, its stderr a text pipe; returns the Popen."""
  return subprocess.Popen(harness_command(*args), cwd=REPO_ROOT, env={**os.environ, **(env or {})},
                          stderr=subprocess.PIPE, text=True)


def make_tempdir(test_case):
  """A temporary folder removed after the test (works under pytest, where absl flags are unparsed)."""
  path = tempfile.mkdtemp()
  test_case.addCleanup(shutil.rmtree, path, ignore_errors=True)
  return path


def write_idx_dir(directory, num_train=6, num_test=4, seed=0):
  rng = np.random.default_rng(seed)
  arrays = {}
  for split, (images_file, labels_file), count in zip(sources.IDX_FILES, sources.IDX_FILES.values(),
                                                      (num_train, num_test)):
    images = rng.integers(0, 256, (count, 28, 28)).astype(np.uint8)
    labels = rng.integers(0, 10, count).astype(np.uint8)
    idx.write_idx_gz(os.path.join(directory, images_file), images)
    idx.write_idx_gz(os.path.join(directory, labels_file), labels)
    arrays[split] = (images, labels)
  return arrays


class InputContext:
  """A stand-in tf.distribute.InputContext."""

  def __init__(self, pipelines, pipeline_id, replicas):
    self.num_input_pipelines = pipelines
    self.input_pipeline_id = pipeline_id
    self.num_replicas_in_sync = replicas

  def get_per_replica_batch_size(self, batch_size):
    return batch_size // self.num_replicas_in_sync


def take(dataset, count):
  """The first `count` elements of a dataset, each a tuple of numpy arrays."""
  return [tuple(np.asarray(t) for t in element) for element in dataset.take(count)]


def assert_start_step_continues_the_stream(task, seed, start_step, count):
  """A pipeline started at `start_step` yields the batches an uninterrupted one yields there; returns those."""
  full = take(task.train_dataset(8, seed=seed), start_step + count)
  resumed = take(task.train_dataset(8, seed=seed, start_step=start_step), count)
  for expected, actual in zip(full[start_step:], resumed):
    np.testing.assert_array_equal(expected[0], actual[0])
    np.testing.assert_array_equal(expected[1], actual[1])
  return full


def assert_eval_subset_reads_its_examples(test_case, task, examples):
  """`task.eval_dataset` over `examples` yields the whole split's examples of those indices, each once."""
  def by_index(dataset):
    return {int(i): (x, y) for inputs, targets, index in take(dataset, 10**6)
            for x, y, i in zip(inputs, targets, index)}
  whole, subset = by_index(task.eval_dataset(4)), by_index(task.eval_dataset(4, examples=examples))
  test_case.assertEqual(sorted(whole), list(range(task.num_test_examples)))
  test_case.assertEqual(sorted(subset), sorted(examples))
  for index, (inputs, targets) in subset.items():
    np.testing.assert_array_equal(inputs, whole[index][0])
    np.testing.assert_array_equal(targets, whole[index][1])


def assert_replica_batches_tile_the_global_batch(task):
  """2 input pipelines x 2 replicas each: their per-replica batches, in order, are the global batch (targets)."""
  full = take(task.train_dataset(8, seed=0), 2)
  per_pipeline = [take(task.train_dataset(8, seed=0, input_context=InputContext(2, p, 4)), 4) for p in range(2)]
  for step in range(2):
    pieces = [per_pipeline[p][step * 2 + r][1] for p in range(2) for r in range(2)]
    np.testing.assert_array_equal(np.concatenate(pieces), full[step][1])


def drawn(draw, *args, **kwargs):
  """Calls `draw`; returns (its result, the matplotlib figures it rendered through `summaries.figure_to_image`)."""
  with mock.patch.object(summaries, 'figure_to_image', wraps=summaries.figure_to_image) as render:
    result = draw(*args, **kwargs)
  return result, [call.args[0] for call in render.call_args_list]


def assert_card_sized(test_case, figure, image):
  """The figure reads at a Time Series card's size: 330 px wide, its drawn text >= 11 px tall, nothing cut at the
  edges. Returns the set of its drawn texts."""
  height, width = image.shape[1:3]
  test_case.assertEqual(width, 330)  # Shown at 230-400 px in Time Series: never scaled below ~0.7.
  test_case.assertLessEqual(height, 400)
  unused = set()  # Tick labels not drawn: beyond the axis's limits, or of axes turned off.
  for ax in figure.axes:
    for axis in (ax.xaxis, ax.yaxis):
      low, high = sorted(axis.get_view_interval())
      unused |= {id(label) for tick in axis.get_major_ticks() if not (ax.axison and low <= tick.get_loc() <= high)
                 for label in (tick.label1, tick.label2)}
  texts = [t for t in figure.findobj(lambda o: hasattr(o, 'get_fontsize') and hasattr(o, 'get_text'))
           if t.get_text() and t.get_visible() and id(t) not in unused]
  renderer = figure.canvas.get_renderer()
  for text in texts:
    test_case.assertGreaterEqual(text.get_fontsize() * figure.dpi / 72, 11, text.get_text())  # At 230 px: >= 7.7.
    box = text.get_window_extent(renderer)
    test_case.assertGreaterEqual(box.x0, -1, text.get_text())  # Nothing cut at the edges.
    test_case.assertLessEqual(box.x1, width + 1, text.get_text())
    test_case.assertGreaterEqual(box.y0, -1, text.get_text())
    test_case.assertLessEqual(box.y1, height + 1, text.get_text())
  boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
  for i, (text, box) in enumerate(boxes):
    for other, other_box in boxes[i + 1:]:
      test_case.assertFalse(box.overlaps(other_box), f'{text!r} overlaps {other!r}')
  return {t.get_text() for t in texts}


def without_op_determinism(test_case):
  """Turns TensorFlow's op determinism off for one test (a --deterministic run earlier in the process leaves it on
  for the whole process, and tf.timestamp, which a time budget reads, refuses to run under it); restored after."""
  from tensorflow.python.framework import config as tf_config  # pylint: disable=g-import-not-at-top
  if tf_config.is_op_determinism_enabled():
    tf_config.disable_op_determinism()
    test_case.addCleanup(tf_config.enable_op_determinism)
