"""Shared test helpers: tiny tasks and configs, and reading event files back with TensorBoard's own loader."""

import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from tensorboard.backend.event_processing import plugin_event_multiplexer
from tensorboard.util import tensor_util

from harness import config as config_lib
from harness import data

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(units=(8,), input_units=0, batch_size=8, train_steps=6, eval_every=3, checkpoint_every=3,
            summary_every=2, histogram_every=3)


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

  return data.ImageTask('tiny', split(num_train), split(num_test),
                        [f'class{i}' for i in range(num_classes)], 'tiny synthetic bars')


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


def run_harness(args, timeout=300, env=None):
  """Runs `python -m harness.train ARGS`; returns the CompletedProcess (text output)."""
  return subprocess.run([sys.executable, '-m', 'harness.train', *args], capture_output=True, text=True,
                        timeout=timeout, cwd=REPO_ROOT, env={**os.environ, **(env or {})})


def make_tempdir(test_case):
  """A temporary folder removed after the test (works under pytest, where absl flags are unparsed)."""
  path = tempfile.mkdtemp()
  test_case.addCleanup(shutil.rmtree, path, ignore_errors=True)
  return path
