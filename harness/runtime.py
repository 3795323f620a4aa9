"""Where and how a run executes: strategy, chief, threads, sub-batches, checkpoints, preemption, profiler."""

import json
import os
import platform

from absl import logging
import keras
import tensorflow as tf

from harness import models
from harness import runs
from harness.errors import EnvironmentFault
from harness.errors import UserError

CHECKPOINTS_TO_KEEP = 3


# More logical CPU devices than this (or than cores, where there are more)
# only slow each step: every replica traces and runs its own copy of the step.
MAX_CPU_DEVICES = 8


def make_strategy(config):
  """The tf.distribute strategy `config.strategy` names (see BUILD.md for multi-host setup).

  Raises:
    UserError: --num_cpu_devices beyond this machine's cores, or a TF_CONFIG
      that MultiWorkerMirroredStrategy cannot read.
  """
  cores = len(os.sched_getaffinity(0))
  if config.num_cpu_devices > max(MAX_CPU_DEVICES, cores):
    raise UserError(f'--num_cpu_devices={config.num_cpu_devices}: at most {max(MAX_CPU_DEVICES, cores)} here '
                    f'({cores} CPU cores; each device traces and runs its own copy of the step)')
  if config.strategy == 'multi_worker' and os.environ.get('TF_CONFIG'):
    check_tf_config(os.environ['TF_CONFIG'])
  if config.num_cpu_devices:
    cpu = tf.config.list_physical_devices('CPU')[0]
    wanted = [tf.config.LogicalDeviceConfiguration()] * config.num_cpu_devices
    if tf.config.get_logical_device_configuration(cpu) != wanted:
      try:
        tf.config.set_logical_device_configuration(cpu, wanted)
      except RuntimeError:
        raise UserError(f'--num_cpu_devices={config.num_cpu_devices}: TensorFlow already started '
                        'with another device layout in this process') from None
  if config.strategy == 'default':
    return tf.distribute.get_strategy()
  if config.strategy == 'mirrored':
    devices = [d.name for d in tf.config.list_logical_devices('GPU')]
    if not devices or config.num_cpu_devices:
      devices = [d.name for d in tf.config.list_logical_devices('CPU')]
    return tf.distribute.MirroredStrategy(devices)
  return tf.distribute.MultiWorkerMirroredStrategy()


def check_tf_config(text):
  """TF_CONFIG as MultiWorkerMirroredStrategy reads it: JSON naming each job's addresses, and this task among them.

  Raises:
    UserError: naming what is wrong, before TensorFlow reads it.
  """
  try:
    value = json.loads(text)
  except ValueError as e:
    raise UserError(f'TF_CONFIG: not valid JSON ({e})') from None
  cluster = value.get('cluster', {}) if isinstance(value, dict) else None
  task = value.get('task', {}) if isinstance(value, dict) else None
  if (not isinstance(cluster, dict) or not all(isinstance(hosts, list) for hosts in cluster.values())
      or not isinstance(task, dict)):
    raise UserError('TF_CONFIG: give {"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", '
                    '"index": N}}')
  if not cluster:
    return  # No cluster: TensorFlow runs one local worker.
  kind, index = task.get('type'), task.get('index', 0)
  if kind not in cluster:
    raise UserError(f'TF_CONFIG: task type {kind!r} is not a job of the cluster ({", ".join(cluster)})')
  if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(cluster[kind]):
    raise UserError(f'TF_CONFIG: task index {index!r} is not one of the cluster\'s {len(cluster[kind])} {kind} '
                    f'addresses (0..{len(cluster[kind]) - 1})')


def is_chief(strategy):
  """Whether this process writes summaries, flags and metrics (TF's multi-worker chief rule)."""
  resolver = getattr(strategy, 'cluster_resolver', None)
  if resolver is None or not resolver.task_type:
    return True
  if resolver.task_type == 'chief':
    return True
  has_chief = 'chief' in resolver.cluster_spec().as_dict()
  return resolver.task_type == 'worker' and resolver.task_id == 0 and not has_chief


def batch_splits(config):
  """Sub-batches per replica step: `config.batch_splits`, or for 0 one per CPU core.

  Auto splits only a single replica on a CPU-only machine, into sub-batches of
  at least 16 examples when every recurrent layer runs as one op (`FusedLSTM`, `FusedGRU`), else 64.
  Measured on 2 cores (BUILD.md), with one intra-op thread per sub-batch: the
  fused LSTM(32)->LSTM(64) trains 1.4x faster in two sub-batches of 16 than in
  one batch of 32; Keras's per-step loops gain from halves of 128 examples
  (~1.9x for LSTM(128)) but lose on halves of 32.
  """
  if config.batch_splits:
    return config.batch_splits
  if config.strategy != 'default' or tf.config.list_physical_devices('GPU'):
    return 1
  min_rows = 16 if models.all_layers_fused(config) else 64
  cores = len(os.sched_getaffinity(0))
  return max([n for n in range(1, cores + 1)
              if config.batch_size % n == 0 and config.batch_size // n >= min_rows] or [1])


def _cpu_info():
  """(model name, flags) from /proc/cpuinfo; ('', set()) where it cannot be read."""
  try:
    with open('/proc/cpuinfo') as f:
      text = f.read()
  except OSError:
    return '', set()
  model = next((line.split(':', 1)[1].strip() for line in text.splitlines() if line.startswith('model name')), '')
  flags = next((line.split(':', 1)[1].split() for line in text.splitlines() if line.startswith('flags')), [])
  return model, set(flags)


# The vector extensions that set a CPU's float32 and bfloat16 rates, in the order they are named.
_VECTOR_EXTENSIONS = (('avx2', 'AVX2'), ('fma', 'FMA'), ('avx512f', 'AVX-512'), ('avx512_bf16', 'AVX512_BF16'),
                      ('amx_bf16', 'AMX-BF16'))


def describe_cpu():
  """'AMD EPYC, 2 cores, AVX2 FMA (no AVX-512, no AVX512_BF16, no AMX)': what every figure is measured on."""
  model, flags = _cpu_info()
  extensions = ' '.join(name for flag, name in _VECTOR_EXTENSIONS if flag in flags) or 'no AVX2'
  missing = [words for flag, words in (('avx512f', 'no AVX-512'), ('avx512_bf16', 'no AVX512_BF16'),
                                       ('amx_bf16', 'no AMX')) if flag not in flags]
  cores = len(os.sched_getaffinity(0))
  return f'{model or platform.machine()}, {cores} cores, {extensions}' + (f' ({", ".join(missing)})' if missing else '')


def has_bfloat16_instructions():
  """Whether this CPU multiplies bfloat16 in hardware (AVX512_BF16 or AMX)."""
  return bool(_cpu_info()[1] & {'avx512_bf16', 'amx_bf16'})


def set_op_determinism(enabled):
  """Turns TensorFlow's op determinism on or off for this process, as a run's --deterministic says.

  It is process-wide and TensorFlow offers only a public switch on: a
  --deterministic run earlier in the same process (a notebook, a test) would
  otherwise leave it on for the next run, whose --time_budget then fails
  (tf.timestamp refuses to run under op determinism).
  """
  from tensorflow.python.framework import config as tf_config  # pylint: disable=g-import-not-at-top
  if enabled:
    tf_config.enable_op_determinism()
  elif tf_config.is_op_determinism_enabled():
    tf_config.disable_op_determinism()


def check_precision(config):
  """Refuses a precision this machine cannot run well: float16 on a CPU (no fast float16 kernels there).

  bfloat16 on a CPU without AVX-512 BF16 or AMX runs, but slower than
  float32: a warning says so.
  """
  if tf.config.list_physical_devices('GPU') or config.precision == 'float32':
    return
  if config.precision == 'mixed_float16':
    raise UserError('--precision=mixed_float16: float16 is for GPUs; on a CPU it runs far slower than float32 '
                    '(use --precision=mixed_bfloat16 on CPUs with AVX-512 BF16 or AMX)')
  if not has_bfloat16_instructions():
    logging.warning('--precision=mixed_bfloat16: this CPU has no bfloat16 instructions (AVX-512 BF16, AMX); '
                    'bfloat16 runs slower than float32 here.')


def configure_threads(config):
  """With sub-batches, one intra-op thread per op and one inter-op thread per sub-batch.

  Must run before TensorFlow starts its runtime (the first op); afterwards the
  pools stay as they are, which costs speed, not correctness.
  """
  splits = batch_splits(config)
  if splits == 1:
    return
  try:
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(splits)
  except RuntimeError:
    logging.warning('TensorFlow already started: its thread pools stay as they are.')


class Checkpoints:
  """Saves and restores under TF's multi-worker rules, and never loses a good checkpoint.

  Every worker saves (a save reads the mirrored variables together): the chief
  into <workdir>/checkpoints, the others into a temporary folder beside the run
  folder (never inside it, which only the chief creates) that they delete at
  once. Every worker restores from the chief's folder.

  `restore` takes the newest checkpoint that restores: one whose files are
  missing or cut short (a kill or a full disk during its save) is moved into
  checkpoints/broken/ for inspection, with a warning, and the one before it is
  tried. The checkpoint list that rotation works on is then rewritten to the
  checkpoints up to the restored one, so rotation never deletes it or a newer
  one to make room.
  """

  def __init__(self, checkpoint, workdir, strategy, chief):
    self.checkpoint = checkpoint
    self.workdir = workdir
    self.directory = os.path.join(workdir, runs.CHECKPOINT_DIR)
    self.chief = chief
    self.write_directory = self.directory
    if not chief:
      run_parent, run_name = os.path.split(os.path.normpath(workdir))
      self.write_directory = os.path.join(run_parent, f'.{run_name}-worker{strategy.cluster_resolver.task_id}-tmp')
    self.manager = None  # Made by `restore`, from the checkpoints that remain.

  @property
  def latest(self):
    return tf.train.latest_checkpoint(self.directory)

  def restore(self):
    """Restores the newest checkpoint that restores; returns its path, or None for a run with none.

    Raises:
      UserError: the run has checkpoints but none restores, or they hold
        another model than this config's.
    """
    if self.chief:
      for name in tf.io.gfile.glob(os.path.join(self.directory, 'ckpt-*_temp*')):
        tf.io.gfile.rmtree(name)  # The scratch folder of a save that was cut short.
    steps = runs.checkpoint_steps(self.workdir)
    restored, broken = None, []
    for step in steps:
      prefix = os.path.join(self.directory, f'ckpt-{step}')
      try:
        if not tf.io.gfile.exists(prefix + '.index'):
          raise FileNotFoundError(f'{prefix}.index is missing')
        self.checkpoint.restore(prefix).assert_existing_objects_matched()
        restored = prefix
        break
      except (tf.errors.OpError, IndexError, OSError) as e:  # Files missing or cut short.
        broken.append(f'ckpt-{step}: {_first_line(e)}')
        logging.warning('checkpoint ckpt-%d cannot be restored (%s); %s', step, _first_line(e),
                        'moved to checkpoints/broken/; trying the one before' if self.chief else 'trying the one before')
        if self.chief:
          self._move_aside(step)
      except (ValueError, AssertionError) as e:  # Whole files that hold another model.
        raise UserError(f'{prefix} does not match this config\'s model ({_first_line(e)}); was the run made by '
                        'another version of harness?') from None
    if steps and not restored:
      raise UserError(f'no checkpoint of {self.workdir} restores ({"; ".join(broken)}); they are kept in '
                      f'{os.path.join(self.directory, "broken")}. Start a new run, or restore one by hand.')
    if self.chief and broken:
      kept = [os.path.join(self.directory, f'ckpt-{s}') for s in sorted(runs.checkpoint_steps(self.workdir))]
      tf.compat.v1.train.update_checkpoint_state(self.directory, restored, all_model_checkpoint_paths=kept)
    self.manager = tf.train.CheckpointManager(self.checkpoint, self.write_directory, max_to_keep=CHECKPOINTS_TO_KEEP)
    return restored

  def _move_aside(self, step):
    broken_directory = os.path.join(self.directory, 'broken')
    tf.io.gfile.makedirs(broken_directory)
    for path in tf.io.gfile.glob(os.path.join(self.directory, f'ckpt-{step}.*')):
      tf.io.gfile.rename(path, os.path.join(broken_directory, os.path.basename(path)), overwrite=True)

  def save(self, step):
    """Saves the checkpoint of `step`.

    Raises:
      EnvironmentFault: it could not be written (a full disk, say); the
        checkpoints before it are untouched.
    """
    try:
      self.manager.save(checkpoint_number=step)
      if not self.chief:
        tf.io.gfile.rmtree(self.manager.directory)
    except (tf.errors.OpError, OSError) as e:
      for name in tf.io.gfile.glob(os.path.join(self.write_directory, f'ckpt-{step}_temp*')):
        tf.io.gfile.rmtree(name)
      raise EnvironmentFault(
          f'could not write checkpoint ckpt-{step} in {self.write_directory} ({_first_line(e)}); the run can '
          f'continue from {self.latest or "its start"} with --run_name={os.path.basename(self.workdir)} '
          '--resume') from None


def _first_line(error):
  text = getattr(error, 'message', None) or str(error) or type(error).__name__
  return text.strip().splitlines()[0][:300]


def environment(config, strategy, model):
  """Where and how this run executes, as (name, value) rows for the environment text."""
  return [
      ('tensorflow', tf.__version__), ('keras', keras.__version__),
      ('devices', ', '.join(d.name for d in tf.config.list_logical_devices())),
      ('strategy', f'{type(strategy).__name__}, {strategy.num_replicas_in_sync} replica(s)'),
      ('recurrent kernel', models.recurrent_kernel_name(model)),
      ('sub-batches per step (parallel)', str(batch_splits(config))),
      ('threads (intra-op, inter-op)', f'{tf.config.threading.get_intra_op_parallelism_threads()}, '
                                       f'{tf.config.threading.get_inter_op_parallelism_threads()} (0 = TF default)'),
  ]


class Preempted(Exception):
  """Every worker of a multi-worker run saved a checkpoint at the same step after one of them was signalled."""


class MultiWorkerPreemption:
  """Multi-worker runs: a SIGTERM or SIGINT to any worker stops every worker at the same step, checkpointed.

  A worker that leaves the loop alone would leave the others waiting in an
  all-reduce; TensorFlow's `PreemptionCheckpointHandler` agrees on a step
  through the cluster's coordination service instead. Each train call goes
  through `run`; once the agreed step is reached, every worker saves (through
  `save`) and `run` raises `Preempted`.
  """

  def __init__(self, strategy, checkpoints, signals, save):
    def stop():
      raise Preempted()

    config = tf.distribute.experimental.TerminationConfig(
        termination_watcher_fn=lambda: signals.received is not None, exit_fn=stop, save_fn=save)
    # The handler restores its step counter from the run's own checkpoints, the
    # same on every worker (the chief's folder: saves go through `save`).
    reader = tf.train.CheckpointManager(checkpoints.checkpoint, checkpoints.directory, max_to_keep=None)
    self.handler = tf.distribute.experimental.PreemptionCheckpointHandler(
        strategy.cluster_resolver, reader, termination_config=config)

  def run(self, train_call, *args):
    return self.handler.run(train_call, *args)


class Profiler:
  """Profiles the steps in [start, stop) of `profile_steps` into `logdir` for TensorBoard's profile plugin (chief only)."""

  def __init__(self, profile_steps, logdir, chief):
    self.window = profile_steps if chief else ()
    self.logdir = logdir
    self.running = False

  def before(self, step):
    """Called before running the steps from `step` on."""
    if self.window and step == self.window[0]:
      tf.profiler.experimental.start(self.logdir)
      self.running = True

  def after(self, step):
    """Called once the steps up to `step` have run."""
    if self.running and step >= self.window[1]:
      self.stop()

  def stop(self):
    if self.running:
      tf.profiler.experimental.stop()
      self.running = False


def describe_fault(error, workdir):
  """One line for a TensorFlow error that is the machine's fault (memory, disk); None for any other error."""
  if not isinstance(error, tf.errors.OpError):
    return None
  text = _first_line(error)
  where = ''
  if workdir:
    latest = tf.train.latest_checkpoint(os.path.join(workdir, runs.CHECKPOINT_DIR))
    where = (f'; the run can continue from {latest} with --run_name={os.path.basename(workdir)} --resume'
             if latest else '')
  if 'No space left on device' in str(error) or 'Disk quota exceeded' in str(error):
    return f'no space left on the device ({text}){where}'
  if isinstance(error, tf.errors.ResourceExhaustedError):
    return f'out of memory ({text}); lower --batch_size, --units or --seq_len{where}'
  if isinstance(error, tf.errors.PermissionDeniedError) or 'Read-only file system' in str(error):
    return f'cannot write ({text}); make the run folder and everything in it writable{where}'
  return None
