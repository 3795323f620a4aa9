"""Throughput benchmark: the harness loop against itself without summaries, Keras `fit` and PyTorch.

  python -m harness.bench --task=fashion_mnist --arch=lstm --units=128 --batch_size=256 \
      --contenders=harness,harness_no_summaries,harness_keras_lstm,keras_fit,torch --rounds=3 --out=bench.json

`harness` is the loop at its defaults (summaries on); `harness_no_summaries`
the same with no summaries between its first and last step;
`harness_keras_lstm` the same with `--lstm_kernel=keras` (Keras's per-step
loop on the CPU instead of the fused kernel). Every contender trains the same
model (input projection if any, recurrent layers, Dense head), loss and
optimizer on the same data. Rounds interleave the contenders so machine drift
hits all alike; the report gives per-round examples/s, medians and ratios
against `harness`.

Steady state: for the harness, the time of a run of S + N steps minus that of a
run of S steps (both pay the same start-up, tracing and final summaries), over
N; its event bytes are measured the same way. S is W, or the first scalar or
histogram summary step where a run of W + N steps would reach it, so that
their one-off tracing falls in both runs. For Keras and PyTorch, the time
of steps W..W+N inside one run. `torch` is skipped when PyTorch is not installed.
"""

import dataclasses
import datetime
import importlib.util
import json
import os
import platform
import shutil
import statistics
import tempfile
import time

from absl import app
from absl import flags
from absl import logging
import keras
import numpy as np
import tensorflow as tf

from harness import cli
from harness import config as config_lib
from harness import loop
from harness import runtime
from harness.tasks import images
from harness.tasks import sources
from harness.errors import UserError

CONTENDERS = ('harness', 'harness_no_summaries', 'harness_keras_lstm', 'keras_fit', 'torch')

_CONFIG_FLAGS = ('task', 'arch', 'units', 'input_units', 'batch_size', 'learning_rate', 'summary_every',
                 'histogram_every', 'batch_splits', 'data_dir')
cli.define_config_flags(_CONFIG_FLAGS, defaults=dict(
    task='fashion_mnist', arch='lstm', units=(128,), input_units=0, batch_size=256, learning_rate=1e-3))
_STEPS = flags.DEFINE_integer('steps', 200, 'N: measured steps per contender and round.')
_WARMUP_STEPS = flags.DEFINE_integer('warmup_steps', 20, 'W: steps before measuring.')
_ROUNDS = flags.DEFINE_integer('rounds', 3, 'Interleaved rounds.')
_CONTENDERS = flags.DEFINE_list('contenders', list(CONTENDERS), f'Any of {", ".join(CONTENDERS)}.')
_OUT = flags.DEFINE_string('out', '', 'Write the JSON report here too.')


def _event_bytes(directory):
  return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(directory)
             for name in names if name.startswith('events.out.tfevents'))


def _harness_run(config, task, steps):
  """Seconds and event bytes of a whole harness run of `steps` steps (eval and checkpoints at its end only)."""
  workdir = tempfile.mkdtemp()
  try:
    run_config = dataclasses.replace(config, train_steps=steps, eval_every=10**9, checkpoint_every=10**9)
    start = time.perf_counter()
    loop.train_and_evaluate(run_config, os.path.join(workdir, 'run'), task=task)
    return time.perf_counter() - start, _event_bytes(workdir)
  finally:
    shutil.rmtree(workdir, ignore_errors=True)


def harness_contender(config, task, warmup, steps):
  short = warmup
  for interval in (config.summary_every, config.histogram_every):
    if 0 < interval <= warmup + steps:
      # Both runs then pay each kind of summary's one-off tracing, which cancels.
      short = max(short, interval)
  short_seconds, short_bytes = _harness_run(config, task, short)
  long_seconds, long_bytes = _harness_run(config, task, short + steps)
  return {'examples_per_sec': steps * config.batch_size / (long_seconds - short_seconds),
          'event_bytes_per_1000_steps': (long_bytes - short_bytes) * 1000 / steps}


def _keras_model(config, num_classes):
  layers = [keras.Input([28, 28])]
  if config.input_units:
    layers.append(keras.layers.Dense(config.input_units))
  for i, units in enumerate(config.units):
    layers.append(keras.layers.LSTM(units, return_sequences=i < len(config.units) - 1))
  layers.append(keras.layers.Dense(num_classes))
  return keras.Sequential(layers)


def keras_fit_contender(config, task, warmup, steps):
  """Keras 3 `model.fit` with its defaults on the same model, data and optimizer."""

  class StepTimes(keras.callbacks.Callback):

    def __init__(self):
      super().__init__()
      self.times = []

    def on_train_batch_end(self, batch, logs=None):
      self.times.append(time.perf_counter())

  model = _keras_model(config, task.num_outputs)
  model.compile(optimizer=keras.optimizers.Adam(config.learning_rate),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=['accuracy'])
  dataset = tf.data.Dataset.from_tensor_slices(
      (task.train_images.astype(np.float32) / 255.0, task.train_labels)).shuffle(
          10_000, seed=config.seed).repeat().batch(config.batch_size, drop_remainder=True).prefetch(
              tf.data.AUTOTUNE)
  timer = StepTimes()
  model.fit(dataset, epochs=1, steps_per_epoch=warmup + steps, callbacks=[timer], verbose=0)
  return {'examples_per_sec': steps * config.batch_size / (timer.times[-1] - timer.times[warmup - 1])}


def torch_contender(config, task, warmup, steps):
  """PyTorch `nn.LSTM` on the CPU: the same shapes, loss and optimizer."""
  import torch  # pylint: disable=g-import-not-at-top

  class Model(torch.nn.Module):

    def __init__(self):
      super().__init__()
      features = 28
      self.projection = torch.nn.Linear(28, config.input_units) if config.input_units else None
      features = config.input_units or features
      self.lstms = torch.nn.ModuleList()
      for units in config.units:
        self.lstms.append(torch.nn.LSTM(features, units, batch_first=True))
        features = units
      self.head = torch.nn.Linear(features, task.num_outputs)

    def forward(self, inputs):
      hidden = self.projection(inputs) if self.projection is not None else inputs
      for lstm in self.lstms:
        hidden, _ = lstm(hidden)
      return self.head(hidden[:, -1])

  torch.manual_seed(config.seed)
  model = Model()
  optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
  images = torch.from_numpy(task.train_images.astype(np.float32) / 255.0)
  labels = torch.from_numpy(task.train_labels.astype(np.int64))
  order = torch.randperm(len(labels))
  per_epoch = len(labels) // config.batch_size
  times = []
  for step in range(warmup + steps):
    batch = order[(step % per_epoch) * config.batch_size:(step % per_epoch + 1) * config.batch_size]
    optimizer.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(images[batch]), labels[batch])
    loss.backward()
    optimizer.step()
    times.append(time.perf_counter())
  return {'examples_per_sec': steps * config.batch_size / (times[-1] - times[warmup - 1]),
          'torch': torch.__version__, 'torch_threads': torch.get_num_threads()}


def _torch_available():
  return importlib.util.find_spec('torch') is not None


def benchmark(config, task, contenders, warmup, steps, rounds):
  """Runs the contenders interleaved for `rounds`; returns the report dict."""
  runners = {
      'harness': lambda: harness_contender(config, task, warmup, steps),
      'harness_no_summaries': lambda: harness_contender(
          dataclasses.replace(config, summary_every=10**9, histogram_every=0), task, warmup, steps),
      'harness_keras_lstm': lambda: harness_contender(
          dataclasses.replace(config, lstm_kernel='keras'), task, warmup, steps),
      'keras_fit': lambda: keras_fit_contender(config, task, warmup, steps),
      'torch': lambda: torch_contender(config, task, warmup, steps),
  }
  results = {name: [] for name in contenders}
  for round_index in range(rounds):
    for name in contenders:
      result = runners[name]()
      results[name].append(result)
      logging.info('round %d %s: %s', round_index + 1, name, json.dumps(result))
  medians = {name: statistics.median(r['examples_per_sec'] for r in runs) for name, runs in results.items()}
  report = {
      'date': datetime.datetime.now().isoformat(timespec='seconds'),
      'machine': {'cpus': os.cpu_count(), 'platform': platform.platform(), 'tensorflow': tf.__version__,
                  'keras': keras.__version__, 'gpus': len(tf.config.list_physical_devices('GPU'))},
      'config': {'task': config.task, 'arch': config.arch, 'units': list(config.units),
                 'input_units': config.input_units, 'batch_size': config.batch_size,
                 'batch_splits': runtime.batch_splits(config),
                 'summary_every': config.summary_every, 'histogram_every': config.histogram_every},
      'warmup_steps': warmup, 'steps': steps, 'rounds': rounds,
      'rounds_results': results,
      'median_examples_per_sec': medians,
  }
  if 'harness' in medians:
    report['ratio_harness_to'] = {name: medians['harness'] / value for name, value in medians.items()
                                  if name != 'harness'}
    report['median_event_bytes_per_1000_steps'] = statistics.median(
        r['event_bytes_per_1000_steps'] for r in results['harness'])
  return report


def main(argv):
  del argv
  try:
    unknown = set(_CONTENDERS.value) - set(CONTENDERS)
    if unknown:
      raise UserError(f'--contenders: unknown {", ".join(sorted(unknown))}; choose from {", ".join(CONTENDERS)}')
    if _STEPS.value < 1 or _WARMUP_STEPS.value < 1 or _ROUNDS.value < 1:
      raise UserError('--steps, --warmup_steps and --rounds must be positive')
    config = config_lib.make_config(**cli.config_values(_CONFIG_FLAGS), lr_schedule='constant')
    if config.task not in sources.IMPORTABLE_TASKS or config.arch not in ('lstm', 'stacked_lstm'):
      raise UserError('harness.bench compares LSTM models on image tasks: --task=mnist or fashion_mnist, '
                      '--arch=lstm or stacked_lstm')
    contenders = [c for c in _CONTENDERS.value if c != 'torch' or _torch_available()]
    if len(contenders) < len(_CONTENDERS.value):
      logging.warning('PyTorch is not installed: skipping the torch contender (pip install torch==2.13.0).')
    runtime.configure_threads(config)
    data = sources.load_images(config.task, config.data_dir)
  except UserError as e:
    cli.fail('harness.bench', e)
  # Only training speed is measured: a small test split keeps the end-of-run eval short.
  task = images.ImageTask(config.task, data._replace(test_images=data.test_images[:512],
                                                     test_labels=data.test_labels[:512]))
  report = benchmark(config, task, contenders, _WARMUP_STEPS.value, _STEPS.value, _ROUNDS.value)
  text = json.dumps(report, indent=2)
  print(text)
  if _OUT.value:
    with open(_OUT.value, 'w') as f:
      f.write(text + '\n')


def _parse_flags(argv):
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    cli.fail('harness.bench', e)


def run():
  """Console-script entry point (`harness-bench`)."""
  app.run(main, flags_parser=_parse_flags)


if __name__ == '__main__':
  run()
