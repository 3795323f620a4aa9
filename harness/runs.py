"""The run folder: its name, its state, claiming and locking it, and the files that describe the run.

  <logdir>/<run>/flags.txt      an absl flagfile that re-runs the config as a new run
  <logdir>/<run>/config.json    the config the run trains with (read by --resume)
  <logdir>/<run>/metrics.json   final step, eval metrics, data source, weights checksum
  <logdir>/<run>/.lock          held (flock) by the process training in the folder

A folder is *started* once it holds config.json or a checkpoint; before that it
is *unstarted* and a new run of the same name takes it over. Files are written
whole (a temporary file, then a rename), so a kill never leaves half a file.
The files are read back through `harness.runfiles`, which checks them.
Nothing here imports TensorFlow, so the command line checks a run folder
before paying for TensorFlow's start.
"""

import dataclasses
import datetime
import errno
import fcntl
import json
import os
import re
import secrets
import socket
import stat
import tempfile

from harness import config as config_lib
from harness import runfiles
from harness import task_table
from harness.errors import EnvironmentFault
from harness.errors import RunFinished
from harness.errors import UserError

LOCK_FILE = '.lock'
CHECKPOINT_DIR = 'checkpoints'
EVAL_SUBSET_FOLDER = 'eval_subset'  # The evaluations on a subset of the test split (`loop`), apart from eval/.
# What a run folder holds before its config.json is written: the lock, the
# event folders and files (the loop opens its writers first; a task with
# baselines has baseline/), flags.txt (written just before config.json), and
# the temporary file of a write cut short. Links are never among them.
_UNSTARTED_FOLDERS = frozenset({'train', 'eval', EVAL_SUBSET_FOLDER, 'baseline', CHECKPOINT_DIR})
_UNSTARTED_FILES = re.compile(r'^(\.lock|flags\.txt|events\.out\.tfevents\..*|(flags\.txt|config\.json)\.tmp-\d+)$')
_CHECKPOINT_FILE = re.compile(r'^ckpt-(\d+)\.(index|data-\d+-of-\d+)$')


def default_run_name(config):
  """Readable and unique: task, arch, units, time, and a random suffix against same-second starts."""
  stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S')
  units = 'x'.join(map(str, config.units))[:60]
  task = f'{config.task}-{config.view}' if 'view' in task_table.TASKS[config.task].flags else config.task
  return f'{task}-{config.arch}-{units}-{stamp}-{secrets.token_hex(2)}'


def run_dir(config):
  """The folder a run trains in: --run_name's, or a new derived name no folder has yet."""
  if config.run_name:
    return os.path.join(config.logdir, config.run_name)
  while True:
    workdir = os.path.join(config.logdir, default_run_name(config))
    if not os.path.exists(workdir):
      return workdir


def checkpoint_steps(workdir):
  """Steps of the checkpoint files in <workdir>/checkpoints, newest first (whole or not)."""
  try:
    names = os.listdir(os.path.join(workdir, CHECKPOINT_DIR))
  except OSError:
    return []
  return sorted({int(m.group(1)) for m in map(_CHECKPOINT_FILE.match, names) if m}, reverse=True)


def whole_checkpoint_steps(workdir):
  """Steps of the checkpoints with a non-empty index and a data file, newest first (what a run may have reached)."""
  directory = os.path.join(workdir, CHECKPOINT_DIR)
  try:
    matches = [m for m in map(_CHECKPOINT_FILE.match, os.listdir(directory)) if m]
  except OSError:
    return []
  with_data = {int(m.group(1)) for m in matches if m.group(2) != 'index'}
  whole = []
  for step in sorted(with_data, reverse=True):
    try:
      if os.path.getsize(os.path.join(directory, f'ckpt-{step}.index')):
        whole.append(step)
    except OSError:
      pass
  return whole


def _unstarted_entry(workdir, name):
  path = os.path.join(workdir, name)
  if os.path.islink(path):
    return False
  if name in _UNSTARTED_FOLDERS:
    return os.path.isdir(path)
  return bool(_UNSTARTED_FILES.match(name)) and os.path.isfile(path)


def run_state(workdir):
  """'absent', 'unstarted' (no config, no checkpoint), 'started', or 'foreign' (holds files no run writes)."""
  if not os.path.isdir(workdir):
    return 'absent'
  entries = os.listdir(workdir)
  if 'config.json' in entries or checkpoint_steps(workdir):
    return 'started'
  if all(_unstarted_entry(workdir, name) for name in entries):
    return 'unstarted'
  return 'foreign'


def check_directory(name, path):
  """A directory flag must name a directory, or a place one can be made, where files can be written.

  Writes and removes one temporary file in the nearest existing folder (access
  bits lie for root and for /proc or /sys); creates nothing that stays.
  """
  if not path:
    return
  if os.path.exists(path) and not os.path.isdir(path):
    raise UserError(f'--{name}={path}: is a file, not a directory')
  existing = os.path.abspath(path)
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise UserError(f'--{name}={path}: {existing} is a file, not a directory')
  try:
    with tempfile.TemporaryFile(dir=existing):
      pass
  except OSError as e:
    raise UserError(f'--{name}={path}: cannot write in {existing} ({e.strerror or e})') from None


def check_directories(config):
  """--logdir and --data_dir name folders this process can write in (before a run folder is claimed)."""
  check_directory('logdir', config.logdir)
  check_directory('data_dir', config.data_dir)


def check_new_run(config):
  """A run without --resume may take a folder only if it is absent or unstarted."""
  if not config.run_name:
    return
  workdir = os.path.join(config.logdir, config.run_name)
  state = run_state(workdir)
  if state == 'started':
    raise UserError(f'--run_name={config.run_name}: {workdir} already exists; pass --resume to continue it, '
                    'or choose another name')
  if state == 'foreign':
    raise UserError(f'--run_name={config.run_name}: {workdir} already exists and holds files that are not a '
                    'harness run\'s; choose another name')


def is_finished(metrics):
  """Whether metrics.json records a run that reached its last step (not stopped by a signal, not failed)."""
  if not metrics:
    return False
  status = metrics.get('status', 'stopped' if 'stopped_by' in metrics else 'finished')
  return status == 'finished' and metrics.get('step') == metrics.get('total_steps')


def resumed_config(config, explicit_flags):
  """The config a resumed run continues with: its saved config.json, plus schedule overrides.

  Args:
    config: the config built from this command's flags.
    explicit_flags: names of the flags given on this command line.

  Raises:
    UserError: the run does not exist or never started, a flag that defines
      the run (model, data, optimizer) differs from the saved value, or
      --train_steps is below the step the run has reached.
    RunFinished: the run has completed and no flag asks for more steps.
  """
  workdir = os.path.join(config.logdir, config.run_name)
  saved = runfiles.read_config(workdir, config.logdir, config.run_name)
  if saved is None:
    if run_state(workdir) == 'unstarted':
      raise UserError(f'--resume: {workdir} never started (no config.json, no checkpoint); start it again '
                      'without --resume')
    raise UserError(f'--resume: no run {workdir} to resume (no {os.path.join(workdir, "config.json")})')
  changes = {}
  for name in explicit_flags:
    if not hasattr(saved, name) or getattr(saved, name) == getattr(config, name):
      continue
    if name not in config_lib.RESUMABLE_OVERRIDES:
      raise UserError(f'--{name}={config_lib.flag_value(getattr(config, name))}: differs from the resumed run\'s '
                      f'{config_lib.flag_value(getattr(saved, name)) or "(unset)"}; a resumed run keeps its model, '
                      'data and optimizer (start a new run to change them)')
    changes[name] = getattr(config, name)
  if ('train_steps' in changes and not changes['train_steps'] and 'epochs' not in changes
      and not changes.get('time_budget', saved.time_budget)):  # A time budget needs no step count.
    raise UserError(f'--train_steps=0: the run trains to step {saved.train_steps}; 0 (train by epochs) would make it '
                    f'{saved.epochs} epochs. Give --train_steps=N to train on to step N, or --epochs=N too to train '
                    'by epochs')
  changes.update(logdir=config.logdir, run_name=config.run_name, resume=True)
  resumed = dataclasses.replace(saved, **changes)
  config_lib.validate(resumed)
  metrics = runfiles.read_metrics(workdir) or {}
  reached = max([metrics.get('step', 0)] + whole_checkpoint_steps(workdir)[:1])
  if 'train_steps' in changes and 0 < resumed.train_steps < reached:
    raise UserError(f'--train_steps={resumed.train_steps}: the run is already at step {reached}; give a larger '
                    'target to train on')
  if is_finished(metrics) and not _trains_on(resumed, changes, metrics):
    scores = ', '.join(f'{k[5:]} {v:.4f}' for k, v in sorted(metrics.items()) if k.startswith('eval_'))
    spent = resumed.time_budget and metrics.get('train_seconds', 0.0) >= 60 * resumed.time_budget
    more = f'--time_budget=M with M > {resumed.time_budget}' if spent else f'--train_steps=N with N > {metrics["step"]}'
    raise RunFinished(f'{workdir} is finished (step {metrics["step"]} of {metrics["total_steps"]}'
                      f'{"; test " + scores if scores else ""}); nothing to do. To train on, add {more}.')
  return resumed


def _trains_on(config, changes, metrics):
  """Whether `config` trains past the step metrics.json records as its end.

  Compared with the config itself, not with this command's flags: a
  config.json rewritten by a resume that then failed still asks for its steps.
  A time-budgeted run trains on while both its budget and its step cap (if
  any) are ahead of it.
  """
  if config.time_budget:
    return (metrics.get('train_seconds', 0.0) < 60 * config.time_budget
            and (not config.train_steps or metrics['step'] < config.train_steps))
  if config.train_steps:
    return config.train_steps != metrics['total_steps']
  if 'steps_per_epoch' in metrics:
    return config.epochs * metrics['steps_per_epoch'] != metrics['total_steps']
  return bool({'train_steps', 'epochs'} & set(changes))  # metrics.json of an older version.


class RunLock:
  """An exclusive flock on <workdir>/.lock while this process trains there; the OS drops it when the process dies.

  Re-entrant within a process (flock locks on two descriptors of one file
  exclude each other, even in one process).
  """
  _held = {}  # Real path of the lock file -> [descriptor, holds].

  def __init__(self, workdir):
    self.workdir = workdir
    self.path = os.path.join(workdir, LOCK_FILE)
    self._key = None

  def acquire(self):
    self._key = os.path.realpath(self.path)
    if self._key in RunLock._held:
      RunLock._held[self._key][1] += 1
      return
    # Never through a link (anyone who can write the logdir could point one at
    # a file of ours, which the lock's note would overwrite), never a FIFO's wait.
    try:
      descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError as e:
      if e.errno not in (errno.ELOOP, errno.EISDIR):
        raise
      raise UserError(f'{self.path}: is a {"link" if e.errno == errno.ELOOP else "folder"}, not a lock this harness '
                      'made; remove it (someone else may have put it there)') from None
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
      os.close(descriptor)
      raise UserError(f'{self.path}: not a plain file, not a lock this harness made; remove it')
    try:
      fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.read(descriptor, 500).decode(errors='replace').strip() or 'another process'
      os.close(descriptor)
      raise UserError(f'{self.workdir} is in use by {holder}; wait for it to end or stop it first') from None
    os.ftruncate(descriptor, 0)
    os.write(descriptor, f'harness.train pid {os.getpid()} on {socket.gethostname()} since '
                         f'{datetime.datetime.now().isoformat(timespec="seconds")}\n'.encode())
    RunLock._held[self._key] = [descriptor, 1]

  def release(self):
    held = RunLock._held.get(self._key)
    if not held:
      return
    held[1] -= 1
    if not held[1]:
      os.close(held[0])  # Closing the last descriptor drops the flock.
      del RunLock._held[self._key]


def write_whole(path, text):
  """Writes `text` to `path` through a temporary file and a rename: the file is old or new, never half."""
  temporary = f'{path}.tmp-{os.getpid()}'
  try:
    with open(temporary, 'w') as f:
      f.write(text)
    os.replace(temporary, path)
  except OSError as e:
    if os.path.exists(temporary):
      os.remove(temporary)
    raise EnvironmentFault(f'cannot write {path} ({e.strerror or e})') from None


class RunFolder:
  """A run folder held by this process: created (or an unstarted one taken over) and locked by the chief.

  Other workers of a multi-worker run never touch the folder: every method is
  then a no-op.
  """

  def __init__(self, workdir, chief):
    self.workdir = workdir
    self.chief = chief
    self.lock = RunLock(workdir)

  def claim(self, fresh):
    """Creates or takes over the folder and locks it; `fresh`: it must not hold a started run."""
    if not self.chief:
      return
    try:
      os.makedirs(os.path.dirname(os.path.abspath(self.workdir)), exist_ok=True)
      os.mkdir(self.workdir)
    except FileExistsError:
      state = run_state(self.workdir)
      if state == 'foreign' or (fresh and state == 'started'):
        raise UserError(f'{self.workdir} already exists ({"not a harness run" if state == "foreign" else "started"}); '
                        'pass --resume to continue it, or choose another name') from None
    except OSError as e:
      raise EnvironmentFault(f'cannot create the run folder {self.workdir} ({e.strerror or e})') from None
    try:
      self.lock.acquire()
    except OSError as e:
      raise EnvironmentFault(f'cannot lock the run folder {self.workdir} ({e.strerror or e})') from None

  def release(self):
    self.lock.release()

  def write_config(self, config, comments):
    """flags.txt (re-runs the config as a new run, `comments` on top) and config.json: the run as it is."""
    if not self.chief:
      return
    config = dataclasses.replace(config, run_name=os.path.basename(os.path.normpath(self.workdir)), resume=False)
    write_whole(os.path.join(self.workdir, 'flags.txt'), config_lib.to_flagfile(config, comments))
    write_whole(os.path.join(self.workdir, 'config.json'), config_lib.to_json(config))

  def write_metrics(self, metrics):
    if self.chief:
      write_whole(os.path.join(self.workdir, 'metrics.json'), json.dumps(metrics, indent=2, sort_keys=True))


def data_source_name(source):
  """A task's data source as an HParams column shows it: its name, without paths or notes.

  'tfds:fashion_mnist:3.0.1 at /root/tensorflow_datasets (imported ...)' -> 'tfds:fashion_mnist:3.0.1';
  'mnist_sample: 10,000 real MNIST digits ...' -> 'mnist_sample'. The whole text is in the run's
  environment text and metrics.json; in a parallel-coordinates axis it overran its neighbours.
  """
  return re.split(r' at | \(|: |; ', source, maxsplit=1)[0]


def hparams(config, extra):
  """The run's hyperparameters for the HParams dashboard: every config field that can change a result.

  Only the fields that apply to the run (`config.applicable_fields`: a task's
  or an arch's own where they are its own); the recipe only when one is set.
  Integers are recorded as text: TensorBoard prints every number with five
  significant digits (batch size 128 as 128.00).

  Args:
    config: the run's Config.
    extra: facts known once the run starts ({name: value}: data source, parameters).
  """
  values = {}
  for name in config_lib.applicable_fields(config):
    if not config_lib.FIELDS[name].metadata['hparam'] or (name == 'recipe' and not config.recipe):
      continue
    value = getattr(config, name)
    values[name] = config_lib.flag_value(value) if isinstance(value, tuple) else value
  values.update(extra)
  return {name: str(value) if isinstance(value, int) and not isinstance(value, bool) else value
          for name, value in values.items()}


def sweep_of(workdir):
  """The folder of the sweep the run is a trial of (its parent holds sweep.json), or ''."""
  parent = os.path.dirname(os.path.normpath(workdir))
  return parent if os.path.isfile(os.path.join(parent, 'sweep.json')) else ''


def trial_id(workdir):
  """The run's name in the HParams table: `<sweep>/<trial>` in a sweep (two sweeps never merge), else its folder's."""
  name = os.path.basename(os.path.normpath(workdir))
  sweep = sweep_of(workdir)
  return f'{os.path.basename(sweep)}/{name}' if sweep else name


def describe_os_error(error):
  """One line for an OSError from the file system: what failed, on which path, and why."""
  reasons = {errno.ENOSPC: 'no space left on the device', errno.EDQUOT: 'disk quota exceeded',
             errno.EROFS: 'read-only file system', errno.EACCES: 'permission denied',
             errno.ENAMETOOLONG: 'file name too long'}
  remedies = {errno.ENOSPC: 'free some space', errno.EDQUOT: 'free some space',
              errno.EROFS: 'choose a folder on a writable file system', errno.EACCES: 'make it writable',
              errno.EPERM: 'make it writable', errno.ENAMETOOLONG: 'choose a shorter name'}
  reason = reasons.get(error.errno, error.strerror or str(error))
  remedy = f'; {remedies[error.errno]} and run the command again' if error.errno in remedies else ''
  return f'{error.filename}: {reason}{remedy}' if error.filename else f'{reason}{remedy}'
