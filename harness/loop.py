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
from harness import runfiles
from harness import runs
from harness import runtime
from harness import signals as signals_lib
from harness import steps
from harness import summaries
from harness import task_table
from harness import tasks
from harness.errors import NonFiniteLossError
from harness.errors import UserError

SECONDS_PER_CALL = 0.5
MAX_STEPS_PER_CALL = 100
EVALUATIONS_PER_RUN = 10
# TensorBoard's Time Series sorts card groups by tag, capitals before small
# letters: the loss and accuracy cards come before every diagnostic group.
METRICS_GROUP = 'Metrics'
# The event folder that also describes the run (hparams, status, text): the HParams session's
# metrics are then its own scalars, and the run root, holding no events, takes no colour in the
# charts (TensorBoard colours every folder with events, curves or not, from a palette of 7).
DESCRIPTION_FOLDER = 'eval'


@dataclasses.dataclass(frozen=True)
class Schedule:
  """When the loop has work: at multiples of each interval, and at the last step."""
  config: config_lib.Config
  steps_per_epoch: int
  total_steps: int

  @property
  def eval_every(self):
    """--eval_every, or for 0 about ten evaluations per run and at least one per epoch."""
    return self.config.eval_every or min(-(-self.total_steps // EVALUATIONS_PER_RUN), self.steps_per_epoch)

  def due(self, step, every):
    return bool(every) and (step % every == 0 or step == self.total_steps)

  def steps_to_next_event(self, step):
    """Steps from `step` to the next step after which the loop has work (with `stateful`, epoch starts too)."""
    config = self.config
    intervals = [config.summary_every, self.eval_every, config.checkpoint_every]
    intervals += [n for n in (config.histogram_every, config.stateful and self.steps_per_epoch) if n]
    next_steps = [self.total_steps] + [(step // n + 1) * n for n in intervals]
    next_steps += [s for s in config.profile_steps if s > step]
    return min(next_steps) - step


def train_and_evaluate(config, workdir, task=None, strategy=None, fresh=False):
  """Trains `config` in `workdir`, resuming from its newest good checkpoint if there is one.

  Everything that can fail on the input (the data, the batch size, the model's
  size) is checked before the run folder is claimed.

  Args:
    config: a validated `harness.config.Config`.
    workdir: the run folder; gets train/, eval/, checkpoints/, flags.txt,
      config.json and metrics.json.
    task: a loaded task (tests pass small ones); loaded from `config` if None.
    strategy: a tf.distribute strategy; made from `config` if None.
    fresh: the folder must not hold a started run (a new run of the command line).

  Returns:
    The final metrics (also in metrics.json). If a SIGTERM or SIGINT arrived,
    training stopped early after a checkpoint, and metrics['stopped_by'] names
    the signal. A run already at its last step returns its saved metrics (or
    completes only the missing final evaluation) and trains nothing.

  Raises:
    UserError: bad input, found before anything is written.
    EnvironmentFault: a checkpoint or file could not be written.
    NonFiniteLossError: the loss became NaN or infinite; the last good
      checkpoint is kept and the event is in TensorBoard.
  """
  keras.utils.set_random_seed(config.seed)
  if config.deterministic:
    tf.config.experimental.enable_op_determinism()
  strategy = strategy or runtime.make_strategy(config)
  runtime.check_precision(config)
  if config.stateful and strategy.num_replicas_in_sync > 1:
    raise UserError('--stateful: carried state runs on one device only; use --strategy=default')
  task = task or tasks.load_task(config)
  steps_per_epoch = task.steps_per_epoch(config.batch_size)
  schedule = Schedule(config, steps_per_epoch, config.train_steps or config.epochs * steps_per_epoch)
  if schedule.total_steps > config_lib.MAX_STEPS:
    raise UserError(f'--epochs={config.epochs}: {schedule.total_steps} steps; at most {config_lib.MAX_STEPS}')
  steps.check_batch(config, strategy)
  models.check_memory(config, task.num_features, task.num_outputs)
  folder = runs.RunFolder(workdir, runtime.is_chief(strategy))
  state = steps.create_train_state(config, task, strategy, schedule.total_steps)
  folder.claim(fresh)
  try:
    run = _Run(config, folder, task, strategy, schedule, state)
    if run.start_step >= schedule.total_steps:
      return run.complete()
    return _train(run)
  finally:
    folder.release()


def _train(run):
  """The schedule: train calls up to each event, then the event's work, until the end or a signal."""
  config, schedule, writers = run.config, run.schedule, run.open_writers()
  step = run.start_step
  with signals_lib.SignalCatcher() as signals:
    run.start_training(signals)
    # Multi-worker: a signal stops every worker through the preemption handler, at one step.
    while step < schedule.total_steps and not (signals.received and not run.preemption):
      try:
        step = run.train_until_next_event(step)
      except runtime.Preempted:
        return run.finish(step, signals.received or 'SIGTERM')
      if schedule.due(step, config.summary_every):
        run.check_finite(step)
        run.write_train_scalars(step)
      if schedule.due(step, config.histogram_every):
        run.probe(step)
      if schedule.due(step, schedule.eval_every):
        run.check_finite(step)
        run.eval_metrics = run.evaluate(step)
      if schedule.due(step, config.checkpoint_every) or (signals.received and not run.preemption):
        run.check_finite(step)
        run.checkpoints.save(step)
        for writer in writers.values():
          writer.flush()
    stopped_by = signals.received if step < schedule.total_steps else None
  return run.finish(step, stopped_by)


class _Run:
  """One call of `train_and_evaluate`: its state, steps, writers and timers."""

  def __init__(self, config, folder, task, strategy, schedule, state):
    self.config, self.folder, self.task, self.strategy, self.schedule = config, folder, task, strategy, schedule
    self.workdir, self.chief, self.state = folder.workdir, folder.chief, state
    model = state.model
    self.num_params = int(sum(np.prod(v.shape) for v in model.trainable_variables))
    self.checkpoints = runtime.Checkpoints(state.checkpoint(), self.workdir, strategy, self.chief)
    restored = self.checkpoints.restore()
    self.start_step = state.step
    if self.start_step > schedule.total_steps:
      raise UserError(f'--train_steps={schedule.total_steps}: the run is already at step {self.start_step}; give a '
                      'larger target to train on')
    logging.info('config: %s', json.dumps(dataclasses.asdict(config), sort_keys=True))
    logging.info('data: %s', task.source)
    logging.info('model: %s, %s trainable parameters; recurrent kernel: %s', config.arch, f'{self.num_params:,}',
                 models.recurrent_kernel_name(model))
    if restored:
      logging.info('resumed from %s at step %d', restored, self.start_step)
    self.eval_step = steps.make_eval_step(model, task, strategy)
    self.eval_metrics = {}
    self.figure_title = f'{config.arch} {config_lib.flag_value(config.units)} · {runs.trial_id(self.workdir)}'
    self.writers = {}
    self.preemption = None

  def open_writers(self):
    """Event folders: train/, eval/ (which also describes the run) and baseline/ for a task that has baselines.

    A sweep's trials write no baseline/: the sweep draws one for all (`aggregate`), not a line per trial.
    """
    baseline = self.task.baselines and not runs.sweep_of(self.workdir)
    names = ('train', 'eval') + (('baseline',) if baseline else ())
    self.writers = {name: summaries.SummaryWriter(os.path.join(self.workdir, name), self.chief) for name in names}
    return self.writers

  def start_training(self, signals):
    """Builds the train steps and the input pipeline; writes the run's description."""
    config, state, task = self.config, self.state, self.task
    self.train_step = steps.make_train_step(state, task, config, self.strategy)
    self.train_steps = steps.make_multi_step(self.train_step)
    self.read_sums = steps.make_sums_reader(state)
    self.prober = probes.Prober(state.model, task, config_lib.probe_names(config), title=self.figure_title)
    dataset = self.strategy.distribute_datasets_from_function(
        lambda context: task.train_dataset(config.batch_size, config.seed, self.start_step, context))
    self.iterator = iter(dataset)
    self.profiler = runtime.Profiler(config.profile_steps, os.path.join(self.workdir, 'train'), self.chief)
    if config.strategy == 'multi_worker':
      self.preemption = runtime.MultiWorkerPreemption(self.strategy, self.checkpoints, signals,
                                                      save=lambda: self.checkpoints.save(state.step))
    self.steps_per_call = 1  # Then sized from the time calls take (multi-worker: always 1).
    # examples/s and the ETA time the training calls of this process only, and
    # not its first call, which traces the step; evaluation, checkpoints and
    # histograms fall outside them.
    self.first_call = True
    self.interval_steps, self.interval_seconds = 0, 0.0
    self.timed_steps, self.timed_seconds = 0, 0.0
    if self.start_step == 0 and config.histogram_every:
      self.probe(0)  # The initialization: every distribution has a start, a short run two points.
    self.folder.write_config(config, [
        'harness run config; re-run with --flagfile=<this file> (a new run is named for it)',
        f'data_source: {task.source}', f'tensorflow: {tf.__version__}'])
    self.write_run_info()

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
    if self.preemption:
      self.preemption.run(self.train_steps, self.iterator, tf.constant(count))
    else:
      self.train_steps(self.iterator, tf.constant(count))
    seconds = time.perf_counter() - call_start
    self.state.train_seconds.assign_add(seconds)
    if not self.first_call:
      self.interval_steps += count
      self.interval_seconds += seconds
      self.timed_steps += count
      self.timed_seconds += seconds
    self.first_call = False
    # Multi-worker: one step per call on every worker, so all make the same calls (their timings differ).
    if not self.preemption:
      self.steps_per_call = max(1, min(MAX_STEPS_PER_CALL, int(SECONDS_PER_CALL * count / max(seconds, 1e-9))))
    self.profiler.after(step + count)
    return step + count

  def probe(self, step):
    """The probes on the probe batch (from the carried state, when stateful), and the layers' weight norms.

    When stateful, the probe batch and the carried streams are cut to the shorter of the two: the first
    streams, each from its own state (a batch below the probe batch's size carries fewer streams).
    """
    inputs, targets = self.task.probe_batch(step)
    carried = self.state.carried_state
    if carried:
      rows = min(int(inputs.shape[0]), int(carried[0][0].shape[0]))
      inputs, targets = inputs[:rows], targets[:rows]
      carried = [[v[:rows] for v in layer] for layer in carried]
    self.prober.write(self.writers['train'], step, inputs, targets, carried)
    if steps.LAYER_DYNAMICS in config_lib.probe_names(self.config) and step == 0:
      self.writers['train'].scalars(0, self.weight_norms())

  def weight_norms(self):
    return {probes.layer_dynamics_tag(tag, 'weight_norm'): float(tf.linalg.global_norm(layer.trainable_variables))
            for tag, layer in self.state.model.named_layers()}

  def write_train_scalars(self, step):
    """The means since the last summary, under groups that sort the metrics first in TensorBoard."""
    sums = self.read_sums()
    steps_timed, seconds = self.interval_steps, self.interval_seconds
    self.interval_steps, self.interval_seconds = 0, 0.0
    metrics = {'loss': sums['loss'] / sums['steps']}
    metrics.update({name: sums[name] / sums['examples'] for name in self.task.train_metric_names})
    scalars = {f'{METRICS_GROUP}/{name}': value for name, value in metrics.items()}
    scalars['optimizer/grad_norm'] = sums['grad_norm'] / sums['steps']
    scalars['optimizer/learning_rate'] = float(keras.ops.convert_to_numpy(self.state.optimizer.learning_rate))
    if self.config.clip_norm > 0:
      scalars['optimizer/clipped_fraction'] = sums['clipped'] / sums['steps']
    if steps.LAYER_DYNAMICS in config_lib.probe_names(self.config):
      scalars.update(self.weight_norms())
      for tag, _ in self.state.model.named_layers():
        scalars[probes.layer_dynamics_tag(tag, 'grad_norm')] = sums[f'layer_grad_norm/{tag}'] / sums['steps']
        scalars[probes.layer_dynamics_tag(tag, 'update_ratio')] = sums[f'layer_update_ratio/{tag}'] / sums['steps']
    speed = ''
    if steps_timed:
      scalars['speed/examples_per_sec'] = steps_timed * self.config.batch_size / max(seconds, 1e-9)
      eta = (self.schedule.total_steps - step) * self.timed_seconds / self.timed_steps
      speed = f'  {scalars["speed/examples_per_sec"]:.0f} examples/s  ETA {format_seconds(eta)}'
    self.writers['train'].scalars(step, scalars)
    logging.info('step %d/%d%s%s', step, self.schedule.total_steps,
                 ''.join(f'  {name} {value:.4f}' for name, value in metrics.items()), speed)

  def evaluate(self, step):
    """Evaluates on the test set; writes eval scalars and the task's figures (if writing); returns the metrics."""
    dataset = self.strategy.distribute_datasets_from_function(
        lambda context: self.task.eval_dataset(self.config.batch_size, context))
    results = steps.evaluate(self.eval_step, dataset)
    metrics = self.task.eval_metrics(results)
    if self.writers:
      self.writers['eval'].scalars(step, metric_scalars(self.config, metrics))
      if 'baseline' in self.writers:  # A flat line in the same cards: what a model without memory scores.
        self.writers['baseline'].scalars(step, metric_scalars(self.config, self.task.baselines))
      if self.chief:
        self.writers['eval'].images(step, {f'figures/{name}': image for name, image in
                                           self.task.eval_figures(results, self.state.model,
                                                                  self.figure_title).items()})
      self.writers['eval'].flush()
    logging.info('eval at step %d: %s', step, ', '.join(f'{k} {v:.4f}' for k, v in metrics.items()))
    return metrics

  def check_finite(self, step):
    """Stops the run if a loss, gradient or weight went non-finite; called before anything is saved."""
    bad = steps.first_nonfinite(self.state, step)
    if bad:
      bad_step, what = bad
      message = (f'{what} became non-finite (NaN or inf) at step {bad_step}; stopped, last good checkpoint kept: '
                 f'{self.checkpoints.latest or "none"}. Lower --learning_rate or '
                 f'{"lower" if self.config.clip_norm else "set"} --clip_norm.')
      self.writers['train'].text(bad_step, {'non_finite': message})
      self.writers[DESCRIPTION_FOLDER].session_end('failed')
      for writer in self.writers.values():
        writer.flush()
      self.folder.write_metrics({'step': step, 'total_steps': self.schedule.total_steps, 'status': 'failed',
                                 'error': message, 'data_source': self.task.source})
      raise NonFiniteLossError(message)

  def write_run_info(self):
    """Once per start: the restart marker; on the first start hparams, flags and environment text."""
    config, task = self.config, self.task
    for writer in self.writers.values():
      writer.session_start(self.start_step + 1 if self.start_step else 0)
    if self.start_step:
      return
    # No experiment declared (TensorBoard reads one, any run's): it then builds the
    # table from every session's hparams and scalars, each run with its own metrics.
    hparams = runs.hparams(config, task.hparams(), {'data_source': task.source, 'params': self.num_params})
    description = self.writers[DESCRIPTION_FOLDER]
    description.hparams(hparams, trial_id=runs.trial_id(self.workdir))
    environment = runtime.environment(config, self.strategy, self.state.model) + [
        ('data source', task.source), ('trainable parameters', f'{self.num_params:,}')]
    description.text(0, {
        'config': summaries.markdown_table(
            [(name, config_lib.flag_value(getattr(config, name))) for name in config_lib.FIELDS
             if config_lib.applies(config, name)],
            header=('flag', 'value')),
        'environment': summaries.markdown_table(environment),
    })
    if self.chief:
      # The step's own graph, taken from its trace: a profiler-style trace window
      # would also catch whatever else runs eagerly meanwhile.
      with self.writers['train'].as_default(0):
        tf.summary.graph(self.train_step.get_concrete_function(self.iterator).graph)
    description.flush()

  def complete(self):
    """A run already at its last step: its saved metrics, or the missing final evaluation and metrics.json."""
    saved = runfiles.read_metrics(self.workdir)
    if runs.is_finished(saved) and saved['step'] == self.start_step:
      logging.info('%s is finished at step %d; nothing to do.', self.workdir, self.start_step)
      return saved
    logging.info('%s reached its last step %d; completing its final evaluation.', self.workdir, self.start_step)
    self.eval_metrics = self.evaluate(self.start_step)
    return self.finish(self.start_step, None)

  def finish(self, step, stopped_by):
    """metrics.json, the final log lines, closed writers; returns the metrics."""
    if hasattr(self, 'profiler'):
      self.profiler.stop()
    if stopped_by and step == self.start_step and not self.preemption:
      self.checkpoints.save(step)  # Signalled before any step: keep the restart point on disk all the same.
    weights_sha256 = hashlib.sha256(b''.join(
        v.numpy().tobytes() for v in self.state.model.trainable_variables)).hexdigest()
    final = {
        'step': step, 'total_steps': self.schedule.total_steps, 'status': 'stopped' if stopped_by else 'finished',
        'steps_per_epoch': self.schedule.steps_per_epoch, 'data_source': self.task.source, 'params': self.num_params,
        'train_seconds': float(self.state.train_seconds.numpy()), 'weights_sha256': weights_sha256,
        **{f'eval_{name}': value for name, value in self.eval_metrics.items()},
        **{f'baseline_{name}': value for name, value in self.task.baselines.items()},
    }
    if stopped_by:
      final['stopped_by'] = stopped_by
      logging.info('stopped by %s at step %d; checkpoint saved', stopped_by, step)
    else:
      logging.info('final weights sha256: %s', weights_sha256)  # Equal on every worker of a synchronous run.
    self.folder.write_metrics(final)
    if self.writers:
      self.writers[DESCRIPTION_FOLDER].session_end(final['status'])
    for writer in self.writers.values():
      writer.close()
    return final


def metric_scalars(config, metrics):
  """{`Metrics/<name>`: value}, one card per quantity: a metric that is the task's loss (its MSE) is the loss."""
  same = task_table.TASKS[config.task].loss_is
  return {f'{METRICS_GROUP}/{name}': value for name, value in metrics.items() if name != same}


def format_seconds(seconds):
  """1m05s, 2h03m09s."""
  minutes, seconds = divmod(int(round(seconds)), 60)
  hours, minutes = divmod(minutes, 60)
  return f'{hours}h{minutes:02d}m{seconds:02d}s' if hours else f'{minutes}m{seconds:02d}s'
