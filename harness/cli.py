"""What the command-line entries share: flags generated from `Config`, and one-line errors.

Every `Config` field becomes a flag of the same name, its type, help, choices
and default taken from the field (`config._field`), so the flag surface has one
source of truth. Fields whose default depends on the task get a None default
and say the task's values in their help.
"""

import contextlib
import logging as python_logging
import os
import re
import shlex
import shutil
import sys
import tempfile

from absl import app
from absl import flags
from absl import logging

from harness import config as config_lib
from harness import recipes
from harness import runs
from harness import task_table
from harness.errors import EnvironmentFault
from harness.errors import NonFiniteLossError
from harness.errors import RunFinished
from harness.errors import UserError


def _per_task_help(name):
  by_value = {}
  for task, spec in task_table.TASKS.items():
    by_value.setdefault(config_lib.flag_value(spec.defaults.get(name, getattr(config_lib.Config, name))),
                        []).append(task)
  return '; '.join(f'{", ".join(tasks)}: {value}' for value, tasks in by_value.items())


def define_config_flags(names=None, defaults=None, flag_values=flags.FLAGS):
  """Defines one flag per Config field in `names` (default: all).

  Args:
    names: the fields to expose.
    defaults: {name: value} replacing the field's default (e.g. a benchmark's own workload).
    flag_values: the FlagValues to define them in.
  """
  defaults = defaults or {}
  for name in names or config_lib.FIELDS:
    field = config_lib.FIELDS[name]
    metadata = field.metadata
    help_text = metadata['help']
    if name in defaults:
      default = defaults[name]
    elif metadata['per_task']:
      default = None
      help_text += f' (default per task: {_per_task_help(name)})'
    else:
      default = field.default if metadata['flag_default'] is None else metadata['flag_default']
    kwargs = dict(name=name, default=default, help=help_text, flag_values=flag_values)
    if metadata['choices'] is not None:
      flags.DEFINE_enum(enum_values=metadata['choices'], **kwargs)
    elif isinstance(field.default, bool):
      flags.DEFINE_bool(**kwargs)
    elif isinstance(field.default, tuple):
      flags.DEFINE_list(**{**kwargs, 'default': config_lib.flag_value(default) if default else []})
    elif isinstance(field.default, int):
      flags.DEFINE_integer(**kwargs)
    elif isinstance(field.default, float):
      flags.DEFINE_float(**kwargs)
    else:
      flags.DEFINE_string(**kwargs)


def config_values(names=None, flag_values=flags.FLAGS, present_only=False):
  """{name: value} of the Config flags in `names` that have a value (unset per-task flags are left out).

  Args:
    names: the fields to read (default: all).
    flag_values: where the flags were parsed.
    present_only: only the flags given on the command line or in a flagfile,
      so that a recipe's settings and the task's defaults fill in the others.

  Raises:
    UserError: a list flag holds something other than integers.
  """
  values = {}
  for name in names or config_lib.FIELDS:
    value = flag_values[name].value
    if value is None or (present_only and not flag_values[name].present):
      continue
    if isinstance(config_lib.FIELDS[name].default, tuple):
      try:
        value = tuple(int(part) for part in value if part.strip())
      except ValueError:
        raise UserError(f'--{name}={",".join(value)}: must be comma-separated integers') from None
    values[name] = value
  return values


def _flagfile_arguments(arguments):
  """The paths of the --flagfile=PATH (or --flagfile PATH) arguments in a list of arguments."""
  paths = []
  for i, argument in enumerate(arguments):
    if argument.startswith(('--flagfile=', '-flagfile=')):
      paths.append(argument.split('=', 1)[1])
    elif argument in ('--flagfile', '-flagfile') and i + 1 < len(arguments):
      paths.append(arguments[i + 1])
  return paths


def check_flagfiles(argv, _including=()):
  """Every --flagfile in `argv` (and in the flagfiles it names) is a readable text file that includes no cycle.

  absl reports a missing file oddly, a binary one with a traceback, and one
  that includes itself with only a warning (then it trains the defaults).

  Raises:
    UserError: naming the flagfile.
  """
  for path in _flagfile_arguments(argv):
    real = os.path.realpath(path)
    if real in _including:
      chain = ' -> '.join(list(_including[_including.index(real):]) + [real])
      raise UserError(f'--flagfile={path}: includes itself ({chain})')
    try:
      with open(path, encoding='utf-8') as f:
        lines = [line.strip() for line in f]
    except UnicodeDecodeError:
      raise UserError(f'--flagfile={path}: not a text file of flags') from None
    except OSError as e:
      raise UserError(f'--flagfile={path}: cannot be read ({e.strerror or e})') from None
    check_flagfiles(lines, _including + (real,))


_HARNESS_DIR = os.path.dirname(os.path.abspath(__file__))
# What TensorFlow's native code prints while it loads and finds devices: its
# logging banner (printed once per shared library that carries it: twice, since
# the profiler's extension module links its own copy), oneDNN and CPU notices,
# and the CUDA probe, an "error" on every machine without a GPU driver.
_NATIVE_NOISE = re.compile(r'^(WARNING: All log messages before absl::InitializeLog|[IW]\d{4} |E\d{4} .*(cuInit|cuda|CUDA)'
                           r'|To enable the following instructions|\s*$)')


class _LibraryFilter(python_logging.Filter):
  """Keeps the harness's own log lines, and only errors from libraries (TensorFlow, tfds, Keras)."""

  def filter(self, record):
    return record.levelno >= python_logging.ERROR or record.pathname.startswith(_HARNESS_DIR)


class _ConsoleFormatter(logging.PythonFormatter):
  """The harness's own lines as bare text (a warning or error says so); libraries' lines in absl's format.

  absl's prefix (`I1201 21:27:01.816425 139751946648448 loop.py:158]`) is for
  debugging; at the default verbosity the console is the run's report.
  """

  def format(self, record):
    if not record.pathname.startswith(_HARNESS_DIR):
      return super().format(record)
    message = python_logging.Formatter.format(self, record)
    return message if record.levelno <= python_logging.INFO else f'{record.levelname.lower()}: {message}'


# Libraries whose debug output buries a run's own lines even at --verbosity=1
# (matplotlib logs every font it considers, thousands of lines per figure).
_ALWAYS_QUIET = ('matplotlib', 'PIL')


def quiet_console():
  """At the default verbosity, the harness's own lines without absl's prefix, and only errors from libraries.

  Call first thing in an entry's main (before TensorFlow is imported). With
  --verbosity=1 (-v 1) or more, everything is shown as the libraries print it,
  in absl's format, except matplotlib's and PIL's debug lines.
  """
  for name in _ALWAYS_QUIET:
    python_logging.getLogger(name).setLevel(python_logging.WARNING)
  if logging.get_verbosity() > logging.INFO:
    return
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # Native INFO and WARNING, once TensorFlow is up.
  python_logging.captureWarnings(True)  # Python warnings become log records, filtered like the rest.
  handler = logging.get_absl_handler()
  handler.addFilter(_LibraryFilter())
  handler.setFormatter(_ConsoleFormatter())


@contextlib.contextmanager
def native_output_filtered():
  """Runs the block with the native stderr (file descriptor 2) captured, then passes on all but known noise.

  For the block that imports TensorFlow and finds devices, whose native code
  writes around Python's logging. If the block raises, everything is passed on.
  Does nothing above the default verbosity.
  """
  if logging.get_verbosity() > logging.INFO:
    yield
    return
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile(mode='w+b') as capture:
    os.dup2(capture.fileno(), 2)
    failed = True
    try:
      yield
      failed = False
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      capture.seek(0)
      lines = capture.read().decode(errors='replace').splitlines(keepends=True)
      sys.stderr.write(''.join(line for line in lines if failed or not _NATIVE_NOISE.match(line)))
      sys.stderr.flush()


def _describe_fault(error, workdir):
  """One line for a TensorFlow error that is the machine's fault; None for any other (or before TensorFlow)."""
  if 'tensorflow' not in sys.modules:  # Not a TensorFlow error, then.
    return None
  from harness import runtime  # pylint: disable=g-import-not-at-top
  return runtime.describe_fault(error, workdir)


@contextlib.contextmanager
def exit_codes(program, workdir=lambda: None):
  """The one place errors become one line and an exit status: input 2, the machine 1, nothing to do 0.

  Args:
    program: the entry's name, which starts the line.
    workdir: returns the run folder the error concerns, if any (a TensorFlow fault's message says
      where the run can resume from).
  """
  try:
    yield
  except RunFinished as e:
    print(f'{program}: {e}')
    sys.exit(0)
  except (UserError, NonFiniteLossError) as e:
    fail(program, e)
  except EnvironmentFault as e:
    fail(program, e, status=1)
  except OSError as e:
    fail(program, runs.describe_os_error(e), status=1)
  except Exception as e:  # pylint: disable=broad-except  # TensorFlow's errors, named without importing it early.
    message = _describe_fault(e, workdir())
    if message is None:
      raise
    fail(program, message, status=1)


def _as_flag(name, value):
  if isinstance(value, bool):
    return f'--{name}' if value else f'--no{name}'
  return f'--{name}={config_lib.flag_value(value)}'


def _as_tuple(value):
  return tuple(value) if isinstance(value, list) else value


def changed_flags(config):
  """The flags (`--name=value`) in which `config` differs from the defaults of its task and recipe.

  What the user chose, not the ~50 fields of the config (flags.txt and
  config.json hold those). The run name is left out: the run folder names it.
  """
  recipe = recipes.RECIPES[config.recipe]['flags'] if config.recipe else {}
  defaults = {**{name: field.default for name, field in config_lib.FIELDS.items()},
              **task_table.TASKS[config.task].defaults, **recipe}
  return [_as_flag(name, getattr(config, name)) for name in config_lib.FIELDS
          if name != 'run_name' and getattr(config, name) != _as_tuple(defaults[name])]


def tensorboard_command(logdir):
  """A TensorBoard command for `logdir` that works as printed from the current folder.

  The Quick start runs `.venv/bin/python` without activating the venv, so its
  `tensorboard` is not on PATH: then the script's path (relative where it is
  below the current folder).
  """
  script = os.path.join(sys.prefix, 'bin', 'tensorboard')
  on_path = shutil.which('tensorboard')
  if not os.path.exists(script):
    program = f'{shlex.quote(sys.executable)} -m tensorboard.main'
  elif on_path and os.path.realpath(on_path) == os.path.realpath(script):
    program = 'tensorboard'
  else:
    relative = os.path.relpath(script)
    if relative.startswith(os.pardir):
      program = shlex.quote(script)
    else:
      program = shlex.quote(relative if os.sep in relative else os.path.join(os.curdir, relative))
  return f'{program} --logdir {shlex.quote(logdir)}'


def run(main, program):
  """absl's app.run with a flags parser that turns every flag or flagfile error into one line, and `main`
  inside `exit_codes`."""

  def parse(argv):
    try:
      check_flagfiles(argv[1:])
      return flags.FLAGS(argv)
    except (UserError, flags.Error) as e:
      fail(program, e)
    except SystemExit as e:
      # absl's --help, --helpshort, --helpfull and --helpxml print and exit 1:
      # asking for help is no fault of the machine's (exit 1 in the README).
      if e.code == 1:
        sys.exit(0)
      raise

  def guarded_main(argv):
    with exit_codes(program):
      return main(argv)

  app.run(guarded_main, flags_parser=parse)


def fail(program, message, status=2):
  """Prints `program: error: message` on one line of stderr and exits with `status`."""
  lines = str(message).splitlines() or ['']
  print(f'{program}: error: {" ".join(line.strip() for line in lines)}', file=sys.stderr)  # One line, always.
  sys.exit(status)
