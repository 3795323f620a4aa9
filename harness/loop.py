"""`train_and_evaluate(config, workdir)`: the schedule that drives steps, evaluation, probes and checkpoints.

Summaries at step s describe the steps (s - summary_every, s]. The loop runs
the steps between two events (summary, eval, checkpoint, histogram, profile
window, stateful epoch start, end) in calls of about SECONDS_PER_CALL, so a
signal is still handled within a second.
"""

import dataclasses
import hashlib
import json
import os
import time

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from harness import config as config_lib
from harness import models
from harness import probes
from harness import runs
from harness import runtime
from harness import steps
from harness import summaries
from harness import tasks
from harness.errors import NonFiniteLossError
from harness.errors import UserError

SECONDS_PER_CALL = 0.5
MAX_STEPS_PER_CALL = 100


@dataclasses.dataclass(frozen=True)
class Schedule:
  """When the loop has work: at multiples of each interval, and at the last step."""
  config: config_lib.Config
  steps_per_epoch: int
  total_steps: int

  def due(self, step, every):
    return bool(every) and (step % every == 0 or step == self.total_steps)

  def steps_to_next_event(self, step):
    """Steps from `step` to the next step after which the loop has work (with `stateful`, epoch starts too)."""
    config = self.config
    intervals = [config.summary_every, config.eval_every, config.checkpoint_every]
    intervals += [n for n in (config.histogram_every, config.stateful and self.steps_per_epoch) if n]
    next_steps = [self.total_steps] + [(step // n + 1) * n for n in intervals]
    next_steps += [s for s in config.profile_steps if s > step]
    return min(next_steps) - step


def train_and_evaluate(config, workdir, task=None, strategy=None):
  """Trains `config` in `workdir`, resuming from its latest checkpoint if there is one.

  Args:
    config: a validated `harness.config.Config`.
    workdir: the run folder; gets train/, eval/, checkpoints/, flags.txt,
      config.json and metrics.json.
    task: a loaded task (tests pass small ones); loaded from `config` if None.
    strategy: a tf.distribute strategy; made from `config` if None.

  Returns:
    The final metrics (also written to metrics.json). If a SIGTERM or SIGINT
    arrived, training stopped early after a checkpoint, and
    metrics['stopped_by'] names the signal.

  Raises:
    NonFiniteLossError: the loss became NaN or infinite; the last good
      checkpoint is kept and the event is in TensorBoard.
  """
  keras.utils.set_random_seed(config.seed)
  if config.deterministic:
    tf.config.experimental.enable_op_determinism()
  strategy = strategy or runtime.make_strategy(config)
  if config.stateful and strategy.num_replicas_in_sync > 1:
    raise UserError('--stateful: carried state runs on one device only; use --strategy=default')
  task = task or tasks.load_task(config)
  steps_per_epoch = task.steps_per_epoch(config.batch_size)
  schedule = Schedule(config, steps_per_epoch, config.train_steps or config.epochs * steps_per_epoch)
  run = _Run(config, workdir, task, strategy, schedule)
  state, writers = run.state, run.writers
  start_step = state.step
  run.write_run_info(start_step)
  step, eval_metrics = start_step, {}
  with runtime.SignalCatcher() as signals:
    while step < schedule.total_steps and not signals.received:
      step = run.train_until_next_event(step)
      if schedule.due(step, config.summary_every):
        run.check_finite(step)
        run.write_train_scalars(step)
      if schedule.due(step, config.histogram_every):
        writers['train'].histograms(step, run.probe_step(*run.probe_batch))
      if schedule.due(step, config.eval_every):
        run.check_finite(step)
        eval_metrics = run.evaluate(step)
      if schedule.due(step, config.checkpoint_every) or signals.received:
        run.check_finite(step)
        run.checkpoints.save(step)
        for writer in writers.values():
          writer.flush()
    stopped_by = signals.received if step < schedule.total_steps else None
  run.profiler.stop()
  if stopped_by:
    if step == start_step:  # Signalled before any step: keep the restart point on disk all the same.
      run.checkpoints.save(step)
    logging.warning('%s received: checkpoint saved at step %d; continue with --resume.', stopped_by, step)
  weights_sha256 = hashlib.sha256(b''.join(
      v.numpy().tobytes() for v in state.model.trainable_variables)).hexdigest()
  logging.info('final weights sha256: %s', weights_sha256)  # Equal on every worker of a synchronous run.
  final = {
      'step': step, 'total_steps': schedule.total_steps, 'data_source': task.source, 'params': run.num_params,
      'train_seconds': run.train_seconds, 'weights_sha256': weights_sha256,
      **{f'eval_{name}': value for name, value in eval_metrics.items()},
  }
  if stopped_by:
    final['stopped_by'] = stopped_by
  if run.chief:
    runs.write_metrics(workdir, final)
  for writer in writers.values():
    writer.close()
  return final


class _Run:
  """One call of `train_and_evaluate`: its state, steps, writers and timers."""

  def __init__(self, config, workdir, task, strategy, schedule):
    self.config, self.workdir, self.task, self.strategy, self.schedule = config, workdir, task, strategy, schedule
    self.chief = runtime.is_chief(strategy)
    if self.chief:
      os.makedirs(workdir, exist_ok=True)
    self.state = steps.create_train_state(config, task, strategy, schedule.total_steps)
    model = self.state.model
    self.num_params = int(sum(np.prod(v.shape) for v in model.trainable_variables))
    self.checkpoints = runtime.Checkpoints(self.state.checkpoint(), workdir, strategy, self.chief)
    restored = self.checkpoints.restore()
    self.writers = {name: summaries.SummaryWriter(os.path.join(workdir, name) if name else workdir, self.chief)
                    for name in ('', 'train', 'eval')}
    logging.info('config: %s', json.dumps(dataclasses.asdict(config), sort_keys=True))
    logging.info('data: %s', task.source)
    logging.info('model: %s, %s trainable parameters; recurrent kernel: %s', config.arch, f'{self.num_params:,}',
                 models.recurrent_kernel_name(model))
    if restored:
      logging.info('resumed from %s at step %d', restored, self.state.step)
    self.train_step = steps.make_train_step(self.state, task, config, strategy)
    self.train_steps = steps.make_multi_step(self.train_step)
    self.read_sums = steps.make_sums_reader(self.state)
    self.eval_step = steps.make_eval_step(model, task, strategy)
    self.probe_step = probes.make_probe_step(model, task)
    self.probe_batch = task.probe_batch()
    dataset = strategy.distribute_datasets_from_function(
        lambda context: task.train_dataset(config.batch_size, config.seed, self.state.step, context))
    self.iterator = iter(dataset)
    self.profiler = runtime.Profiler(config.profile_steps, os.path.join(workdir, 'train'), self.chief)
    self.steps_per_call = 1  # Then sized from the time calls take (multi-worker: always 1).
    # examples/s covers the training steps between summaries; evaluation,
    # checkpoints and histograms at a summary step fall outside it.
    self.interval_seconds = 0.0
    self.train_seconds = 0.0

  def train_until_next_event(self, step):
    """Runs the steps up to the next event (in calls of ~SECONDS_PER_CALL); returns the new step."""
    config, schedule = self.config, self.schedule
    if config.stateful and step % schedule.steps_per_epoch == 0:
      for layer in self.state.carried_state:  # Each epoch re-reads the streams from their start.
        for variable in layer:
          variable.assign(tf.zeros_like(variable))
    self.profiler.before(step)
    count = min(self.steps_per_call, schedule.steps_to_next_event(step))
    call_start = time.perf_counter()
    self.train_steps(self.iterator, tf.constant(count))
    seconds = time.perf_counter() - call_start
    self.interval_seconds += seconds
    # Multi-worker: one step per call on every worker, so all make the same calls (their timings differ).
    if config.strategy != 'multi_worker':
      self.steps_per_call = max(1, min(MAX_STEPS_PER_CALL, int(SECONDS_PER_CALL * count / max(seconds, 1e-9))))
    self.profiler.after(step + count)
    return step + count

  def write_train_scalars(self, step):
    sums = self.read_sums()
    seconds, self.interval_seconds = self.interval_seconds, 0.0
    self.train_seconds += seconds
    scalars = {
        'loss': sums['loss'] / sums['steps'],
        'grad_norm': sums['grad_norm'] / sums['steps'],
        'learning_rate': float(keras.ops.convert_to_numpy(self.state.optimizer.learning_rate)),
        'examples_per_sec': sums['examples'] / max(seconds, 1e-9),
    }
    scalars.update({name: sums[name] / sums['examples'] for name in self.task.train_metric_names})
    if self.config.clip_norm > 0:
      scalars['clipped_fraction'] = sums['clipped'] / sums['steps']
    self.writers['train'].scalars(step, scalars)
    eta = (self.schedule.total_steps - step) * seconds / max(sums['steps'], 1)
    logging.info('step %d/%d  loss %.4f%s  %.0f examples/s  ETA %s', step, self.schedule.total_steps,
                 scalars['loss'], ''.join(f'  {name} {scalars[name]:.4f}' for name in self.task.train_metric_names),
                 scalars['examples_per_sec'], _format_seconds(eta))

  def evaluate(self, step):
    """Evaluates on the test set; writes eval scalars and the task's figures; returns the metrics."""
    dataset = self.strategy.distribute_datasets_from_function(
        lambda context: self.task.eval_dataset(self.config.batch_size, context))
    results = steps.evaluate(self.eval_step, dataset)
    metrics = self.task.eval_metrics(results)
    self.writers['eval'].scalars(step, metrics)
    if self.chief:
      self.writers['eval'].images(step, self.task.eval_figures(results, self.state.model))
    self.writers['eval'].flush()
    logging.info('eval at step %d: %s', step, ', '.join(f'{k} {v:.4f}' for k, v in metrics.items()))
    return metrics

  def check_finite(self, step):
    """Stops the run if a loss, gradient or weight went non-finite; called before anything is saved."""
    bad = steps.first_nonfinite(self.state, step)
    if bad:
      bad_step, what = bad
      message = (f'{what} became non-finite (NaN or inf) at step {bad_step}; stopped, last good checkpoint kept: '
                 f'{self.checkpoints.latest or "none"}. Lower --learning_rate or set --clip_norm.')
      self.writers['train'].text(bad_step, {'non_finite': message})
      self.writers['train'].flush()
      raise NonFiniteLossError(message)

  def write_run_info(self, start_step):
    """Once per start: the restart marker; on the first start hparams, flags and environment text, config files."""
    config, task = self.config, self.task
    for writer in self.writers.values():
      writer.session_start(start_step + 1 if start_step else 0)
    if start_step:
      return
    hparams = runs.hparams(config, task.hparams(), {
        'replicas': self.strategy.num_replicas_in_sync, 'batch_splits': runtime.batch_splits(config),
        'data_source': task.source, 'params': self.num_params})
    self.writers[''].hparams(hparams, {('eval', name): f'eval {name}' for name in task.eval_metric_names})
    environment = runtime.environment(config, self.strategy, self.state.model) + [
        ('data source', task.source), ('trainable parameters', f'{self.num_params:,}')]
    self.writers[''].text(0, {
        'config': summaries.markdown_table(
            [(name, config_lib.flag_value(getattr(config, name))) for name in config_lib.FIELDS],
            header=('flag', 'value')),
        'environment': summaries.markdown_table(environment),
    })
    if self.chief:
      # The step's own graph, taken from its trace: a profiler-style trace window
      # would also catch whatever else runs eagerly meanwhile.
      with self.writers['train'].as_default(0):
        tf.summary.graph(self.train_step.get_concrete_function(self.iterator).graph)
      runs.write_config_files(self.workdir, config, [
          'harness run config; re-run with --flagfile=<this file> (a new run is named for it)',
          f'data_source: {task.source}', f'tensorflow: {tf.__version__}'])
    self.writers[''].flush()


def _format_seconds(seconds):
  minutes, seconds = divmod(int(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  return f'{hours}h{minutes:02d}m{seconds:02d}s' if hours else f'{minutes}m{seconds:02d}s'
