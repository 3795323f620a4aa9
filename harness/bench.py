"""Throughput benchmark: the harness loop against itself, Keras `fit` and PyTorch, on the same model and data.

  python -m harness.bench --task=fashion_mnist --arch=lstm --units=128 --batch_size=256 \\
      --contenders=harness,harness_no_probes,keras_fit,torch --rounds=3 --out=bench.json

Contenders:
  harness               the loop at the run's defaults: summaries, histograms and probes on
  harness_no_probes     the same without histograms and probes (train scalars only): their cost
  harness_keras_lstm    the same with --lstm_kernel=keras (Keras's per-step loop on the CPU)
  harness_block_lstm    the same with --lstm_kernel=block (TensorFlow's BlockLSTM op on the CPU)
  harness_bf16          the same with --precision=mixed_bfloat16
  harness_lstm          baselines: the harness loop (probes off) with --arch=lstm / gru at the same --units,
  harness_gru           for the linear recurrences (mingru, minlstm, lru) to be measured against
  keras_fit             Keras 3 `model.fit` on the same layers (in float32)
  keras_fit_bf16        the same under the mixed_bfloat16 policy
  torch                 the arch in PyTorch (`harness.torch_blocks`: nn.RNN / nn.GRU / nn.LSTM, the
                        minGRU / minLSTM / LRU blocks), same shapes, loss and optimizer
  torch_bf16            the same under torch.autocast('cpu', dtype=torch.bfloat16)

Every contender trains the same model (input projection if any, recurrent
layers, a Dense head on the last step) with Adam on the same batches of any
task whose head reads the last step (images in any --view, adding) for steps
W..W+N. Rounds interleave the contenders so machine drift hits all alike; the
report gives per-round examples/s, medians and the harness's ratio to each.

The harness is timed as a user experiences it, from the wall times of its own
train-loss events in one run of W + N steps: from the first summary at or
after W to the last step, histogram and probe steps included (evaluation and
checkpoints only at the end, outside the window; train scalars at least every
N steps, so that the window has two).

Beside each contender's rate: its floor on this machine (`harness.floor`: the
step's FLOPs at the product rate and its bytes at the bandwidth, both measured
in this run) and the share of the floor it reaches; the CPU is named first. Keras and PyTorch: the time
of steps W..W+N in one run. PyTorch contenders are skipped where PyTorch is
not installed.
"""

import dataclasses
import datetime
import functools
import importlib.util
import json
import os
import platform
import shutil
import statistics
import tempfile
import time

from absl import flags
from absl import logging
import keras
import numpy as np
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from harness import archs
from harness import cli
from harness import config as config_lib
from harness import floor
from harness import loop
from harness import models
from harness import runtime
from harness import task_table
from harness import tasks
from harness.errors import UserError

CONTENDERS = ('harness', 'harness_no_probes', 'harness_keras_lstm', 'harness_block_lstm', 'harness_bf16',
              'harness_lstm', 'harness_gru', 'keras_fit', 'keras_fit_bf16', 'torch', 'torch_bf16')
_BATCHES = 50  # Distinct batches the Keras and PyTorch contenders cycle through.

_CONFIG_FLAGS = ('task', 'view', 'seq_len', 'arch', 'units', 'input_units', 'batch_size', 'learning_rate',
                 'summary_every', 'histogram_every', 'probes', 'batch_splits', 'data_dir', 'lstm_kernel', 'scan_kernel',
                 'mlp_expansion')
cli.define_config_flags(_CONFIG_FLAGS, defaults=dict(
    task='fashion_mnist', arch='lstm', units=(128,), input_units=0, batch_size=256, learning_rate=1e-3))
_STEPS = flags.DEFINE_integer('steps', 200, 'N: measured steps per contender and round.', lower_bound=1)
_WARMUP_STEPS = flags.DEFINE_integer('warmup_steps', 100, 'W: steps before measuring (the harness: from its first '
                                     'summary at or after W).', lower_bound=1)
_ROUNDS = flags.DEFINE_integer('rounds', 3, 'Interleaved rounds.', lower_bound=1)
_CONTENDERS = flags.DEFINE_list('contenders', ['harness', 'harness_no_probes', 'keras_fit', 'torch'],
                                f'Any of {", ".join(CONTENDERS)}.')
_OUT = flags.DEFINE_string('out', '', 'Write the JSON report here too.')
_PROGRAM = 'harness.bench'


def _event_bytes(directory):
  return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(directory)
             for name in names if name.startswith('events.out.tfevents'))


def harness_contender(config, task, warmup, steps):
  """One run of `warmup + steps` steps, timed from the wall times of its own train-loss events.

  The window runs from the first summary at or after `warmup` to the last step:
  what a user sees between two progress lines, histograms and probes included,
  the first calls' tracing excluded. Evaluation and checkpoints are moved out
  of it (to the end).
  """
  workdir = tempfile.mkdtemp()
  try:
    # At least two train-loss events in the window: its first summary at or after W and the last step.
    run_config = dataclasses.replace(config, train_steps=warmup + steps, eval_every=10**9, checkpoint_every=10**9,
                                     summary_every=min(config.summary_every, steps))
    loop.train_and_evaluate(run_config, os.path.join(workdir, 'run'), task=task)
    accumulator = event_accumulator.EventAccumulator(os.path.join(workdir, 'run', 'train'),
                                                     size_guidance={event_accumulator.TENSORS: 0})
    accumulator.Reload()
    events = [e for e in accumulator.Tensors(f'{task_table.METRICS_GROUP}/loss') if e.step >= warmup]
    first, last = events[0], events[-1]
    seconds = last.wall_time - first.wall_time
    return {'examples_per_sec': (last.step - first.step) * config.batch_size / seconds,
            'event_bytes_per_1000_steps': _event_bytes(workdir) * 1000 / (warmup + steps),
            'window_steps': [first.step, last.step]}
  finally:
    shutil.rmtree(workdir, ignore_errors=True)


def _batches(config, task):
  """_BATCHES training batches as numpy: (inputs [n, b, T, F] float32, targets [n, b] or [n, b, 1])."""
  pairs = list(task.train_dataset(config.batch_size, config.seed).take(_BATCHES).as_numpy_iterator())
  return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def _keras_model(config, task, precision):
  dtype = keras.DTypePolicy(precision)
  recurrent = archs.resolve(archs.get(config.arch).keras_layer)
  layers = [keras.Input([None, task.num_features])]
  if config.input_units:
    layers.append(keras.layers.Dense(config.input_units, dtype=dtype))
  for i, units in enumerate(config.units):
    layers.append(recurrent(units, return_sequences=i < len(config.units) - 1, dtype=dtype))
  layers.append(keras.layers.Dense(task.num_outputs, dtype='float32'))
  return keras.Sequential(layers)


def keras_fit_contender(config, task, warmup, steps, precision='float32'):
  """Keras 3 `model.fit` with its defaults on the same model, loss, optimizer and batches."""

  class StepTimes(keras.callbacks.Callback):

    def __init__(self):
      super().__init__()
      self.times = []

    def on_train_batch_end(self, batch, logs=None):
      self.times.append(time.perf_counter())

  model = _keras_model(config, task, precision)
  model.compile(optimizer=keras.optimizers.Adam(config.learning_rate),
                loss=lambda targets, outputs: task.per_example_loss(targets, outputs))
  inputs, targets = _batches(config, task)
  dataset = tf.data.Dataset.from_tensor_slices((inputs, targets)).repeat().prefetch(tf.data.AUTOTUNE)
  timer = StepTimes()
  model.fit(dataset, epochs=1, steps_per_epoch=warmup + steps, callbacks=[timer], verbose=0)
  return {'examples_per_sec': steps * config.batch_size / (timer.times[-1] - timer.times[warmup - 1])}


def torch_contender(config, task, warmup, steps, precision='float32'):
  """PyTorch on the CPU: the arch's `harness.torch_blocks` layer with the same shapes, loss, optimizer and batches."""
  import torch  # pylint: disable=g-import-not-at-top

  recurrent = archs.resolve(archs.get(config.arch).torch_layer)
  options = models.arch_option_values(config)

  class Model(torch.nn.Module):

    def __init__(self):
      super().__init__()
      features = task.num_features
      self.projection = torch.nn.Linear(features, config.input_units) if config.input_units else None
      features = config.input_units or features
      self.layers = torch.nn.ModuleList()
      for units in config.units:
        self.layers.append(recurrent(features, units, options))
        features = units
      self.head = torch.nn.Linear(features, task.num_outputs)

    def forward(self, inputs):
      hidden = self.projection(inputs) if self.projection is not None else inputs
      for layer in self.layers:
        hidden, _ = layer(hidden)
      return self.head(hidden[:, -1])

  torch.manual_seed(config.seed)
  model = Model()
  optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
  inputs, targets = (torch.from_numpy(a) for a in _batches(config, task))
  classification = task.num_outputs > 1
  times = []
  for step in range(warmup + steps):
    x, y = inputs[step % len(inputs)], targets[step % len(inputs)]
    optimizer.zero_grad()
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=precision != 'float32'):
      outputs = model(x)
    outputs = outputs.float()
    loss = (torch.nn.functional.cross_entropy(outputs, y.long()) if classification
            else torch.nn.functional.mse_loss(outputs, y))
    loss.backward()
    optimizer.step()
    times.append(time.perf_counter())
  return {'examples_per_sec': steps * config.batch_size / (times[-1] - times[warmup - 1]),
          'torch': torch.__version__, 'torch_threads': torch.get_num_threads()}


# What each contender trains, as a change of the benchmark's config: its floor is that config's.
_CONTENDER_CONFIG = {
    'harness_bf16': {'precision': 'mixed_bfloat16'},
    'keras_fit_bf16': {'precision': 'mixed_bfloat16'},
    'torch_bf16': {'precision': 'mixed_bfloat16'},
    'harness_lstm': {'arch': 'lstm'},
    'harness_gru': {'arch': 'gru'},
}


def floors(config, task, contenders):
  """{contender: its floor report (`harness.floor`)}: each distinct model's cost at rates measured now."""
  steps = next(iter(task.train_dataset(config.batch_size, config.seed)))[0].shape[1]
  reports, by_change = {}, {}
  for name in contenders:
    change = _CONTENDER_CONFIG.get(name, {})
    key = tuple(sorted(change.items()))
    if key not in by_change:
      variant = dataclasses.replace(config, **change)
      model = models.build_model(variant, task.num_outputs, per_step_outputs=False, num_features=task.num_features)
      cost = floor.step_cost(model, config.batch_size, steps)
      dtype = 'bfloat16' if variant.precision == 'mixed_bfloat16' else 'float32'
      rates = floor.measure_rates(config.batch_size * steps, cost.largest_product, dtype)
      by_change[key] = floor.floor_report(cost, rates, config.batch_size)
    reports[name] = by_change[key]
  return reports


def _torch_available():
  return importlib.util.find_spec('torch') is not None


def benchmark(config, task, contenders, warmup, steps, rounds):
  """Runs the contenders interleaved for `rounds`; returns the report dict."""
  runners = {
      'harness': lambda: harness_contender(config, task, warmup, steps),
      'harness_no_probes': lambda: harness_contender(
          dataclasses.replace(config, histogram_every=0, probes='none'), task, warmup, steps),
      'harness_keras_lstm': lambda: harness_contender(
          dataclasses.replace(config, lstm_kernel='keras'), task, warmup, steps),
      'harness_block_lstm': lambda: harness_contender(
          dataclasses.replace(config, lstm_kernel='block'), task, warmup, steps),
      'harness_bf16': lambda: harness_contender(
          dataclasses.replace(config, precision='mixed_bfloat16'), task, warmup, steps),
      **{f'harness_{baseline}': functools.partial(
          harness_contender, dataclasses.replace(config, arch=baseline, histogram_every=0, probes='none'), task,
          warmup, steps) for baseline in ('lstm', 'gru')},
      'keras_fit': lambda: keras_fit_contender(config, task, warmup, steps),
      'keras_fit_bf16': lambda: keras_fit_contender(config, task, warmup, steps, 'mixed_bfloat16'),
      'torch': lambda: torch_contender(config, task, warmup, steps),
      'torch_bf16': lambda: torch_contender(config, task, warmup, steps, 'mixed_bfloat16'),
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
      'machine': {'cpu': runtime.describe_cpu(), 'cpus': os.cpu_count(), 'platform': platform.platform(),
                  'tensorflow': tf.__version__,
                  'keras': keras.__version__, 'gpus': len(tf.config.list_physical_devices('GPU'))},
      'config': {'task': config.task, 'view': config.view, 'seq_len': config.seq_len, 'arch': config.arch,
                 'units': list(config.units), 'input_units': config.input_units, 'batch_size': config.batch_size,
                 'batch_splits': runtime.batch_splits(config), 'summary_every': config.summary_every,
                 'histogram_every': config.histogram_every, 'probes': config.probes},
      'warmup_steps': warmup, 'steps': steps, 'rounds': rounds,
      'rounds_results': results,
      'median_examples_per_sec': medians,
  }
  floor_reports = floors(config, task, contenders)
  report['floor'] = {name: {**floor_reports[name], 'share_reached': medians[name] / floor_reports[name][
      'floor_examples_per_sec']} for name in contenders}
  if 'harness' in medians:
    report['ratio_harness_to'] = {name: medians['harness'] / value for name, value in medians.items()
                                  if name != 'harness'}
    report['median_event_bytes_per_1000_steps'] = statistics.median(
        r['event_bytes_per_1000_steps'] for r in results['harness'])
  return report


def floor_table(report):
  """Each contender's median examples/s beside its floor (`harness.floor`) and the share reached, as lines."""
  lines = [f'{report["machine"]["cpu"]}; floor = step FLOPs at the measured product rate + step bytes at the '
           'measured bandwidth',
           f'{"contender":>20} {"examples/s":>11} {"floor":>9} {"share":>6} {"GFLOP/s":>8} {"GB/s":>6}']
  for name, entry in report['floor'].items():
    lines.append(f'{name:>20} {report["median_examples_per_sec"][name]:11.1f} {entry["floor_examples_per_sec"]:9.1f} '
                 f'{entry["share_reached"]:6.2f} {entry["product_gflops_per_sec"]:8.1f} '
                 f'{entry["bandwidth_gbytes_per_sec"]:6.1f}')
  return '\n'.join(lines)


def main(argv):
  del argv
  unknown = set(_CONTENDERS.value) - set(CONTENDERS)
  if unknown:
    raise UserError(f'--contenders: unknown {", ".join(sorted(unknown))}; choose from {", ".join(CONTENDERS)}')
  config = config_lib.make_config(**cli.config_values(_CONFIG_FLAGS), lr_schedule='constant')
  runtime.configure_threads(config)
  task = tasks.load_task(config)
  if task.per_step_outputs:
    raise UserError(f'--task={config.task}: the benchmark compares models whose head reads the last step '
                    '(image tasks, adding)')
  arch = archs.get(config.arch)
  missing = [c for c in _CONTENDERS.value if not {'keras': arch.keras_layer, 'torch': arch.torch_layer}.get(
      c.split('_')[0], True)]
  if missing:
    raise UserError(f'--contenders={",".join(missing)}: --arch={config.arch} has no Keras or PyTorch layer '
                    'to compare against; benchmark it with the harness contenders')
  contenders = [c for c in _CONTENDERS.value if not c.startswith('torch') or _torch_available()]
  if len(contenders) < len(_CONTENDERS.value):
    logging.warning('PyTorch is not installed: skipping the torch contenders (pip install torch==2.13.0).')
  if hasattr(task, 'test_images'):  # Only training speed is measured: a short end-of-run evaluation.
    task.test_images, task.test_labels = task.test_images[:512], task.test_labels[:512]
  report = benchmark(config, task, contenders, _WARMUP_STEPS.value, _STEPS.value, _ROUNDS.value)
  text = json.dumps(report, indent=2)
  print(text)
  print(floor_table(report))
  if _OUT.value:
    with open(_OUT.value, 'w') as f:
      f.write(text + '\n')


def run():
  """Console-script entry point (`harness-bench`)."""
  cli.run(main, _PROGRAM)


if __name__ == '__main__':
  run()
