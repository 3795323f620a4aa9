"""What the command-line entries share: flags generated from `Config`, and one-line errors.

Every `Config` field becomes a flag of the same name, its type, help, choices
and default taken from the field (`config._field`), so the flag surface has one
source of truth. Fields whose default depends on the task get a None default
and say the task's values in their help.
"""

import os
import sys

from absl import flags

from harness import config as config_lib
from harness.errors import UserError


def _per_task_help(name):
  by_value = {}
  for task, defaults in config_lib.TASK_DEFAULTS.items():
    by_value.setdefault(config_lib.flag_value(defaults.get(name, getattr(config_lib.Config, name))), []).append(task)
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


def config_values(names=None, flag_values=flags.FLAGS):
  """{name: value} of the Config flags in `names` that have a value (unset per-task flags are left out).

  Raises:
    UserError: a list flag holds something other than integers.
  """
  values = {}
  for name in names or config_lib.FIELDS:
    value = flag_values[name].value
    if value is None:
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


def fail(program, message, status=2):
  """Prints `program: error: message` on one line of stderr and exits with `status`."""
  print(f'{program}: error: {message}', file=sys.stderr)
  sys.exit(status)
