"""`train_and_evaluate(config, workdir)`: the schedule that drives steps, evaluation, probes and checkpoints.

Summaries at step s describe the steps (s - summary_every, s]. The loop runs
the steps between two events (an action of the table `_Run.actions` is due,
the profile window, a stateful epoch start, the end) in calls of about
SECONDS_PER_CALL, so a signal is still handled within a second.
"""

import hashlib
import math
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
from harness import schedule as schedule_lib
from harness import signals as signals_lib
from harness import sizes
from harness import steps
from harness import summaries
from harness import task_table
from harness import tasks
from harness.errors import NonFiniteLossError
from harness.errors import UserError
from harness.tasks import base

SECONDS_PER_CALL = 0.5
MAX_STEPS_PER_CALL = 100
METRICS_GROUP = task_table.METRICS_GROUP
# The event folder that also describes the run (hparams, status, text): its HParams session's metrics are its
# own scalars (no experiment is declared: TensorBoard then builds the table from every session's hparams and
# scalars, each run with its own task's metrics), and the run root, holding no events, takes no colour in the
# charts (TensorBoard colours every folder with events, curves or not, from a palette of 7).
DESCRIPTION_FOLDER = 'eval'


def train_and_evaluate(config, workdir, task=None, strategy=None, fresh=False, started=None):
  """Trains `config` in `workdir`, resuming from its newest good checkpoint if there is one.

  Every check of the input (data, batch size, model size, precision) comes before the run folder is claimed.

  Args:
    config: a validated `harness.config.Config`.
    workdir: the run folder; gets train/, eval/, checkpoints/, flags.txt, config.json and metrics.json.
    task: a loaded task (tests pass small ones); loaded from `config` if None.
    strategy: a tf.distribute strategy; made from `config` if None.
    fresh: the folder must not hold a started run (a new run of the command line).
    started: `time.perf_counter()` when the command began: its start-up before this call (TensorFlow, the
      data) counts in the run's time that evaluations are sized against (`schedule.Timer.other_seconds`);
      None: this call's start.

  Returns:
    The final metrics (also in metrics.json). If a SIGTERM or SIGINT arrived, training stopped early after
    a checkpoint, and metrics['stopped_by'] names the signal. A run already at its last step returns its
    saved metrics (or completes only the missing final evaluation) and trains nothing.

  Raises:
    UserError: bad input, found before anything is written.
    EnvironmentFault: a checkpoint or file could not be written.
    NonFiniteLossError: the loss became NaN or infinite; the last good
      checkpoint is kept and the event is in TensorBoard.
  """
  started = time.perf_counter() if started is None else started
  keras.utils.set_random_seed(config.seed)
  runtime.set_op_determinism(config.deterministic)
  strategy = strategy or runtime.make_strategy(config)
  runtime.check_precision(config)
  if config.stateful and strategy.num_replicas_in_sync > 1:
    raise UserError('--stateful: carried state runs on one device only; use --strategy=default')
  task = task or tasks.load_task(config)
  steps_per_epoch = task.steps_per_epoch(config.batch_size)
  # A time budget ends the run where it runs out; --train_steps, where set, caps it (`Schedule`).
  schedule = schedule_lib.Schedule(config, steps_per_epoch, config.train_steps or (
      config_lib.MAX_STEPS if config.time_budget else config.epochs * steps_per_epoch))
  if schedule.total_steps > config_lib.MAX_STEPS:
    raise UserError(f'--epochs={config.epochs}: {schedule.total_steps} steps; at most {config_lib.MAX_STEPS}')
  steps.check_batch(config, strategy)
  sizes.check_memory(config, task.num_features, task.num_outputs)
  runs.check_directories(config)
  folder = runs.RunFolder(workdir, runtime.is_chief(strategy))
  state = steps.create_train_state(config, task, strategy, schedule.total_steps)
  folder.claim(fresh)
  logging.info('run folder: %s', folder.workdir)  # Named once it exists: every check above could still fail.
  try:
    checkpoints = runtime.Checkpoints(state.checkpoint(), folder.workdir, strategy, folder.chief)
    restored = checkpoints.restore()
    if state.step > schedule.total_steps:
      raise UserError(f'--train_steps={schedule.total_steps}: the run is already at step {state.step}; give a '
                      'larger target to train on')
    num_params = int(sum(np.prod(v.shape) for v in state.model.trainable_variables))
    logging.info('data: %s', task.source)
    logging.info('model: %s, %s trainable parameters; recurrent kernel: %s', config.arch, f'{num_params:,}',
                 models.recurrent_kernel_name(state.model))
    if restored:
      logging.info('resumed from %s at step %d', restored, state.step)
    if config.time_budget:
      spent = float(state.train_seconds.numpy())
      logging.info('time budget: %s in training steps%s (the first call\'s tracing included; evaluations, probes and '
                   'checkpoints not counted), then the final evaluation; the learning rate follows the fraction spent',
                   schedule_lib.format_seconds(schedule.budget_seconds),
                   f', {schedule_lib.format_seconds(spent)} of it spent' if spent else '')
      if not schedule.seconds_left(spent):
        schedule = schedule.ending_at(state.step)
    if state.step >= schedule.total_steps:
      return _complete(config, folder, task, strategy, schedule, state)
    with signals_lib.SignalCatcher() as signals:
      return _Run(config, folder, task, strategy, schedule, state, checkpoints, signals, started).train()
  finally:
    folder.release()


def _complete(config, folder, task, strategy, schedule, state):
  """A run already at its last step: its saved metrics, or the missing final evaluation and metrics.json."""
  step = state.step
  saved = runfiles.read_metrics(folder.workdir)
  if runs.is_finished(saved) and saved['step'] == step:
    logging.info('%s is finished at step %d; nothing to do.', folder.workdir, step)
    return {**saved, 'this_process': {'start_step': step, 'seconds': {}}}
  logging.info('%s reached its last step %d; completing its final evaluation.', folder.workdir, step)
  start = time.perf_counter()
  eval_metrics, _ = evaluate(config, task, strategy, steps.make_eval_step(state.model, task, strategy), step)
  final = final_metrics(state, task, schedule, step, eval_metrics, None,
                        {'start_step': step, 'seconds': {'final_eval': time.perf_counter() - start}})
  folder.write_metrics(final)
  return final


def evaluate(config, task, strategy, eval_step, step, say=logging.info, examples=None):
  """Evaluates on the whole test split, or its `examples` (indices); says so; returns ({name: float}, the gathered
  per-example results)."""
  results = steps.evaluate(eval_step, eval_dataset(config, task, strategy, examples))
  metrics = task.eval_metrics(results)
  count = f'{len(results["index"]):,}'
  say('test at step %d (%s examples): %s', step, count if examples is None else
      f'subset: {count} of {task.num_test_examples:,}', ', '.join(f'{k} {v:.4f}' for k, v in metrics.items()))
  return metrics, results


def eval_dataset(config, task, strategy, examples=None):
  return strategy.distribute_datasets_from_function(
      lambda context: task.eval_dataset(config.batch_size, context, examples))


def final_metrics(state, task, schedule, step, eval_metrics, stopped_by, this_process):
  """What metrics.json records at the end of a run (or of this part of it), with `this_process`'s time by kind."""
  weights_sha256 = hashlib.sha256(b''.join(v.numpy().tobytes() for v in state.model.trainable_variables)).hexdigest()
  final = {
      'step': step, 'total_steps': schedule.total_steps, 'status': 'stopped' if stopped_by else 'finished',
      'examples': step * schedule.config.batch_size,
      'steps_per_epoch': schedule.steps_per_epoch, 'data_source': task.source,
      'params': int(sum(np.prod(v.shape) for v in state.model.trainable_variables)),
      'train_seconds': float(state.train_seconds.numpy()), 'weights_sha256': weights_sha256,
      **{f'eval_{name}': value for name, value in eval_metrics.items()},
      **{f'baseline_{name}': value for name, value in task.baselines.items()},
      **{f'threshold_{name}': value for name, value in task.thresholds.items()},
      'this_process': this_process,
  }
  if stopped_by:
    final['stopped_by'] = stopped_by
    logging.info('stopped by %s at step %d; checkpoint saved', stopped_by, step)
  else:
    logging.info('final weights sha256: %s', weights_sha256)  # Equal on every worker of a synchronous run.
  return final


class _Run:
  """One training call of `train_and_evaluate`, built whole: steps, input, writers, probes, actions, timer."""

  def __init__(self, config, folder, task, strategy, schedule, state, checkpoints, signals, started):
    self.config, self.folder, self.task, self.strategy, self.schedule = config, folder, task, strategy, schedule
    self.workdir, self.chief, self.state, self.checkpoints = folder.workdir, folder.chief, state, checkpoints
    self.signals, self.start_step = signals, state.step
    # The evaluations before the last step read a fixed subset of the test split (--eval_examples), cheaper
    # than the whole split where that is larger: a short run gets a curve at a cost that fits it.
    self.eval_subset = base.eval_subset(task.num_test_examples, schedule.eval_examples(task.num_test_examples))
    # Event folders: train/, eval/ (the whole test split; it also describes the run), eval_subset/ for the
    # subset's evaluations (their own curve, never one with the whole split's), and baseline/ for a task that
    # has baselines, but not in a sweep's trials: the sweep draws one for all (`aggregate`), not one per trial.
    names = (('train', 'eval') + ((runs.EVAL_SUBSET_FOLDER,) if self.eval_subset is not None else ())
             + (('baseline',) if task.baselines and not runs.sweep_of(self.workdir) else ()))
    self.writers = {name: summaries.SummaryWriter(os.path.join(self.workdir, name), self.chief) for name in names}
    self.train_step = steps.make_train_step(state, task, config, strategy)
    self.train_steps = steps.make_multi_step(self.train_step, steps.budget_progress(
        state, schedule.budget_seconds, schedule.total_steps) if config.time_budget else None)
    self.eval_step = steps.make_eval_step(state.model, task, strategy)
    self.trial_id = runs.trial_id(self.workdir)
    self.figure_title = f'{config.arch} {config_lib.flag_value(config.units)} · {self.trial_id}'
    self.prober = probes.Prober(state.model, task, config_lib.probe_names(config), title=self.figure_title)
    self.iterator = iter(strategy.distribute_datasets_from_function(
        lambda context: task.train_dataset(config.batch_size, config.seed, self.start_step, context)))
    self.profiler = runtime.Profiler(config.profile_steps, os.path.join(self.workdir, 'train'), self.chief)
    self.preemption = None
    if config.strategy == 'multi_worker':
      self.preemption = runtime.MultiWorkerPreemption(strategy, checkpoints, signals,
                                                      save=lambda: checkpoints.save(state.step))
    self.steps_per_call = 1  # Then sized from the time calls take (multi-worker: always 1).
    self.timer = schedule_lib.Timer(started=started)
    self.eval_metrics, self.last_line, self.last_summary = {}, time.perf_counter(), self.start_step
    # --eval_every=0: the eval interval follows its measured cost (`choose_eval_every`); until the first
    # estimate only the last step evaluates. Multi-worker keeps the default: evaluation is collective.
    self.adaptive_eval, self.eval_seconds = not config.eval_every and not self.preemption, None
    self.final_eval_seconds = 0.0  # Estimated with the first evaluation's cost.
    self.measured_evaluations = []  # Seconds of each evaluation before the last.
    # The periodic work, in the order it runs after a call that reaches its step.
    self.actions = (
        schedule_lib.Action('summary', config.summary_every, self.write_train_scalars),
        schedule_lib.Action('announce', schedule.total_steps, self.announce_last_step),  # The last step only.
        schedule_lib.Action('probes', config.histogram_every, self.probe),
        schedule_lib.Action('eval', schedule.total_steps if self.adaptive_eval else schedule.eval_every,
                            self.evaluate, last_name='final_eval'),
        schedule_lib.Action('checkpoint', config.checkpoint_every, self.save, on_stop=True),
    )

  def stopping(self):
    """A signal arrived; multi-worker: the preemption handler stops every worker at one step instead."""
    return bool(self.signals.received) and not self.preemption

  def train(self):
    """Calls of training steps up to each event, then the due actions, until the end or a signal."""
    self.begin()
    step, total = self.start_step, self.schedule.total_steps
    while step < total and not self.stopping():
      try:
        step = self.train_until_next_event(step)
      except runtime.Preempted:
        return self.finish(step, self.signals.received or 'SIGTERM')
      if not self.schedule.seconds_left(self.spent()):  # The time budget ran out: this step is the last.
        self.schedule, total = self.schedule.ending_at(step), step
      if self.adaptive_eval and self.eval_seconds is None and step < total and self.timer.step_seconds():
        self.estimate_eval()
      for action in self.actions:
        if self.schedule.due(step, action.every) or (action.on_stop and self.stopping()):
          with self.timer.timed(action.timer_kind(step == total)):
            action.run(step)
      if time.perf_counter() - self.last_line > schedule_lib.PROGRESS_SECONDS:
        eta = self.eta(step)
        self.say('%s%s', self.schedule.position(step, self.spent()),
                 f'  ETA {schedule_lib.format_seconds(eta)}' if eta else '')
    return self.finish(step, self.signals.received if step < total else None)

  def spent(self):
    """The run's training seconds so far (every process's: a checkpoint keeps them)."""
    return float(self.state.train_seconds.numpy())

  def eta(self, step):
    """Seconds of training steps left: the steps left at this process's speed, or the time budget's rest if
    sooner; None before the speed is known (without a budget)."""
    eta, left = self.timer.eta(self.schedule.total_steps - step), self.schedule.seconds_left(self.spent())
    if math.isinf(left):
      return eta
    return left if eta is None else min(eta, left)

  def say(self, message, *args):
    """A console line; the time of the last one keeps the console from going silent for long."""
    logging.info(message, *args)
    self.last_line = time.perf_counter()

  def begin(self):
    """The step-0 probe (every distribution has a start, a short run two points) and the run's description."""
    if self.start_step == 0 and self.config.histogram_every:
      self.say('probes at step 0, before the first update (%s) ...', ', '.join(config_lib.probe_names(self.config)))
      with self.timer.timed('probes'):
        self.probe(0)
    if self.eval_subset is not None:
      self.say('evaluation: %s (--eval_examples=all: the whole split every time)', self.evaluation_text())
    self.say('tracing the train step (once per process; can take a minute) ...')
    self.folder.write_config(self.config, [
        'harness run config; re-run with --flagfile=<this file> (a new run is named for it)',
        f'data_source: {self.task.source}', f'tensorflow: {tf.__version__}'])
    self.write_run_info()

  def train_until_next_event(self, step):
    """Runs the steps up to the next event (in calls of ~SECONDS_PER_CALL); returns the new step."""
    config, schedule = self.config, self.schedule
    if config.stateful and step % schedule.steps_per_epoch == 0:
      for layer in self.state.carried_state:  # Each epoch re-reads the streams from their start.
        for variable in layer:
          variable.assign(tf.zeros_like(variable))
    self.profiler.before(step)
    count = min(self.steps_per_call, schedule.steps_to_next_event(step, self.actions))
    with self.timer.timed('train'):
      call_start = time.perf_counter()
      if self.preemption:
        self.preemption.run(self.train_steps, self.iterator, tf.constant(count))
      else:  # A call ends early where the time budget runs out.
        left = tf.constant(schedule.seconds_left(self.spent()), tf.float64)
        count = int(self.train_steps(self.iterator, tf.constant(count), left))
      seconds = time.perf_counter() - call_start
    self.state.train_seconds.assign_add(seconds)
    self.timer.train_call(count, seconds)
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
    if step == 0:
      self.writers['train'].write_scalars(0, self.state.metrics.weight_norms())

  def write_train_scalars(self, step):
    """The means since the last summary, and where the wall time went; one progress line."""
    self.check_finite(step)
    scalars = self.state.metrics.read_and_reset()
    shares, steps_per_second = self.timer.read_and_reset()
    scalars.update({f'speed/{kind}_share': share for kind, share in shares.items()})
    speed = ''
    if steps_per_second:
      scalars['speed/examples_per_sec'] = steps_per_second * self.config.batch_size
      speed = (f'  {scalars["speed/examples_per_sec"]:.0f} examples/s  '
               f'ETA {schedule_lib.format_seconds(self.eta(step))}')
    self.writers['train'].write_scalars(step, scalars)
    metrics = '  '.join(f'{tag.split("/", 1)[1]} {value:.4f}' for tag, value in scalars.items()
                        if tag.startswith(f'{METRICS_GROUP}/'))
    time_shares = ' '.join(f'{kind} {share:.0%}' for kind, share in shares.items())
    self.say('%s  train, mean of the last %d steps: %s%s  time: %s', self.schedule.position(step, self.spent(), True),
             step - self.last_summary, metrics, speed, time_shares)
    self.last_summary = step

  def announce_last_step(self, step):
    spent = self.schedule.budget_seconds and not self.schedule.seconds_left(self.spent())
    self.say('%s: %sevaluation on the whole test split and its figures, checkpoint ...',
             f'time budget spent at step {step} ({step * self.config.batch_size:,} examples, '
             f'{schedule_lib.format_seconds(self.spent())} in training steps)' if spent else
             f'step {step} of {step} reached', 'probes, ' if self.config.histogram_every else '')

  def evaluation_text(self):
    """What the evaluations read, in words (the console and the run's environment text)."""
    whole = f'{self.task.num_test_examples:,} test examples'
    if self.eval_subset is None:
      return f'the whole test split ({whole}, eval/) at every evaluation'
    return (f'before the last step a fixed subset of {len(self.eval_subset):,} of the {whole} '
            f'({runs.EVAL_SUBSET_FOLDER}/), at the last step the whole split (eval/, metrics.json, HParams)')

  def estimate_eval(self):
    """--eval_every=0: an evaluation's cost from one timed batch, then the cadence from it; says so."""
    iterator = iter(eval_dataset(self.config, self.task, self.strategy, self.eval_subset))
    first = next(iterator)
    with self.timer.timed('final_eval'):  # Tracing the eval step, which the final evaluation would do otherwise.
      self.eval_step(first)[1].numpy()
    with self.timer.timed('eval'):
      start = time.perf_counter()
      self.eval_step(next(iterator, first))[1].numpy()
      batch_seconds = time.perf_counter() - start
    whole = self.task.num_test_examples
    read = whole if self.eval_subset is None else len(self.eval_subset)
    self.final_eval_seconds = batch_seconds * -(-whole // self.config.batch_size)  # In batches, the last partial.
    self.eval_seconds = batch_seconds * -(-read // self.config.batch_size)
    self.choose_eval_every('estimated from one batch')

  def choose_eval_every(self, how):
    """The eval action's interval from an evaluation's cost (found `how`) and the run's; says it if it is new.

    The run's other time (start-up, probes, ...) so far, and its final evaluation, count in the run's time:
    a run that evaluates only at its end spends them too.
    """
    step, step_seconds = self.state.step, self.timer.step_seconds()
    steps = step - self.start_step + self.schedule.steps_left(step, self.spent(), step_seconds)
    every = self.schedule.sparse_eval_every(self.eval_seconds, step_seconds,
                                            self.timer.other_seconds() + self.final_eval_seconds, steps)
    if how == 'measured' and every == dict((a.name, a.every) for a in self.actions)['eval']:
      return
    self.actions = schedule_lib.with_every(self.actions, 'eval', every)
    when = f'every {every} steps and at the last' if every < self.schedule.total_steps else 'at the last step only'
    self.say('evaluation on the test split %s: one takes ~%.1f s (%s), the time of ~%d steps; evaluations before '
             'the last take at most %d %% of the run\'s time, its start-up and final evaluation included '
             '(--eval_every=N sets the cadence)', when, self.eval_seconds, how,
             self.eval_seconds / self.timer.step_seconds(), round(100 * schedule_lib.EVAL_SHARE))

  def evaluate(self, step):
    """Evaluates on the test subset before the last step (if the run has one), else on the whole split.

    Writes the eval scalars, and for the whole split the task's figures (the chief): a subset's would cost
    more than its evaluation. metrics.json reports the whole split's only.
    """
    self.check_finite(step)
    start = time.perf_counter()
    examples = self.eval_subset if step < self.schedule.total_steps else None
    metrics, results = evaluate(self.config, self.task, self.strategy, self.eval_step, step, self.say, examples)
    writer = self.writers['eval' if examples is None else runs.EVAL_SUBSET_FOLDER]
    # The training minutes beside each point: a sweep compares runs of different speeds at equal time
    # (`harness.aggregate`'s equal-time figure).
    writer.write_scalars(step, {**task_table.metric_scalars(self.config.task, metrics),
                                'time/train_minutes': self.spent() / 60})
    if 'baseline' in self.writers:  # A flat line in the same cards: what a model without memory scores.
      self.writers['baseline'].write_scalars(step, task_table.metric_scalars(self.config.task, self.task.baselines))
    if examples is None:
      self.eval_metrics = metrics
      if self.chief:
        figures = self.task.eval_figures(results, self.state.model, self.figure_title)
        writer.write_images(step, {f'figures/{name}': image for name, image in figures.items()})
    writer.flush()
    if self.adaptive_eval and step < self.schedule.total_steps:
      # Measured: the cadence from the mean of the evaluations so far. A cheap evaluation's time varies with the
      # machine's load by as much as the factor of two between cadences: the last one alone flipped it to and fro.
      self.measured_evaluations.append(time.perf_counter() - start)
      self.eval_seconds = sum(self.measured_evaluations) / len(self.measured_evaluations)
      self.choose_eval_every('measured')

  def save(self, step):
    self.check_finite(step)
    self.checkpoints.save(step)
    for writer in self.writers.values():
      writer.flush()

  def check_finite(self, step):
    """Stops the run if a loss, gradient or weight went non-finite; called before anything is saved."""
    bad = steps.first_nonfinite(self.state, step)
    if bad:
      bad_step, what = bad
      message = (f'{what} became non-finite (NaN or inf) at step {bad_step}; stopped, last good checkpoint kept: '
                 f'{self.checkpoints.latest or "none"}. Lower --learning_rate or '
                 f'{"lower" if self.config.clip_norm else "set"} --clip_norm.')
      self.writers['train'].write_texts(bad_step, {'non_finite': message})
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
    num_params = int(sum(np.prod(v.shape) for v in self.state.model.trainable_variables))
    hparams = runs.hparams(config, {'data_source': runs.data_source_name(task.source), 'params': num_params})
    description = self.writers[DESCRIPTION_FOLDER]
    description.write_hparams(hparams, trial_id=self.trial_id)
    environment = runtime.environment(config, self.strategy, self.state.model) + [
        ('data source', task.source), ('trainable parameters', f'{num_params:,}'),
        ('evaluation', self.evaluation_text())]
    description.write_texts(0, {
        'config': summaries.markdown_table(
            [(name, config_lib.flag_value(getattr(config, name))) for name in config_lib.applicable_fields(config)],
            header=('flag', 'value')),
        'environment': summaries.markdown_table(environment),
    })
    if self.chief:
      # The step's own graph, taken from its trace: a profiler-style trace window
      # would also catch whatever else runs eagerly meanwhile.
      with self.writers['train'].as_default(0):
        tf.summary.graph(self.train_step.get_concrete_function(self.iterator).graph)
    description.flush()

  def finish(self, step, stopped_by):
    """metrics.json, the final log lines, closed writers; returns the metrics."""
    self.profiler.stop()
    if stopped_by and step == self.start_step and not self.preemption:
      self.checkpoints.save(step)  # Signalled before any step: keep the restart point on disk all the same.
    final = final_metrics(self.state, self.task, self.schedule, step, self.eval_metrics, stopped_by,
                          self.timer.this_process(self.start_step))
    self.folder.write_metrics(final)
    self.writers[DESCRIPTION_FOLDER].session_end(final['status'])
    for writer in self.writers.values():
      writer.close()
    return final
