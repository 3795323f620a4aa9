"""Reading back the files a run or a sweep wrote: config.json, metrics.json, sweep.json.

Every reader checks the file's shape and the type of each value it uses, so a
file edited by hand or damaged on disk is one `UserError` naming the file, the
value and what to do, never a traceback further in. A missing file is None
where a run may lack it. Nothing here imports TensorFlow.
"""

import dataclasses
import json
import os

from harness import config as config_lib
from harness.errors import UserError

STATUSES = ('finished', 'stopped', 'failed')
STOP_SIGNALS = ('SIGTERM', 'SIGINT', 'SIGHUP')  # What a run records in metrics.json's `stopped_by`.


def _is_int(value):
  return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
  return isinstance(value, (int, float)) and not isinstance(value, bool)


# metrics.json: {key: (check, what it must be)}; eval_* and baseline_* are numbers.
_METRICS_KEYS = {
    'step': (lambda v: _is_int(v) and v >= 0, 'an integer >= 0'),
    'total_steps': (lambda v: _is_int(v) and v >= 0, 'an integer >= 0'),
    'steps_per_epoch': (lambda v: _is_int(v) and v >= 1, 'an integer >= 1'),
    'params': (lambda v: _is_int(v) and v >= 0, 'an integer >= 0'),
    'examples': (lambda v: _is_int(v) and v >= 0, 'an integer >= 0'),
    'train_seconds': (_is_number, 'a number'),
    'status': (lambda v: v in STATUSES, f'one of {", ".join(STATUSES)}'),
    'stopped_by': (lambda v: v in STOP_SIGNALS, f'one of {", ".join(STOP_SIGNALS)}'),
    'data_source': (lambda v: isinstance(v, str), 'text'),
    'weights_sha256': (lambda v: isinstance(v, str), 'text'),
    'error': (lambda v: isinstance(v, str), 'text'),
}
_METRICS_REQUIRED = ('step', 'total_steps')


_MISSING = object()


def _load(path, what_to_do):
  """The JSON value in `path`, or _MISSING if there is no such file."""
  try:
    with open(path, encoding='utf-8') as f:
      text = f.read()
  except FileNotFoundError:
    return _MISSING
  except (OSError, UnicodeDecodeError) as e:
    raise UserError(f'{path}: cannot be read ({getattr(e, "strerror", None) or e}); {what_to_do}') from None
  try:
    return json.loads(text)
  except (ValueError, RecursionError) as e:  # RecursionError: nested deeper than Python's stack.
    raise UserError(f'{path}: not valid JSON ({e}); {what_to_do}') from None


def _bad(path, key, value, must_be, what_to_do):
  return UserError(f'{path}: "{key}" is {json.dumps(value)[:60]}, must be {must_be}; {what_to_do}')


def _load_object(path, what_to_do):
  """The JSON object in `path`, or None if the file is absent; UserError if it holds anything else."""
  values = _load(path, what_to_do)
  if values is _MISSING:
    return None
  if not isinstance(values, dict):
    raise UserError(f'{path}: holds {json.dumps(values)[:60]}, not a JSON object; {what_to_do}')
  return values


def read_metrics(workdir):
  """<workdir>/metrics.json as a checked dict, or None if the run has not written one.

  Raises:
    UserError: the file cannot be read, is not a JSON object, lacks its step
      and total_steps, or holds a value of the wrong type.
  """
  path = os.path.join(workdir, 'metrics.json')
  what_to_do = 'fix or remove it (a resumed run writes it again at its end)'
  metrics = _load_object(path, what_to_do)
  if metrics is None:
    return None
  for key in _METRICS_REQUIRED:
    if key not in metrics:
      raise UserError(f'{path}: has no "{key}"; {what_to_do}')
  for key, value in metrics.items():
    if key.startswith(('eval_', 'baseline_')):
      check, must_be = _is_number, 'a number'
    else:
      check, must_be = _METRICS_KEYS.get(key, (lambda v: True, ''))
    if not check(value):
      raise _bad(path, key, value, must_be, what_to_do)
  return metrics


def read_config(workdir, logdir, run_name):
  """<workdir>/config.json as a validated Config (as if it lived in `logdir`/`run_name`), or None if absent.

  Fields added since the file was written take their defaults; fields it
  holds that no longer exist are ignored.

  Raises:
    UserError: the file cannot be read, is not a JSON object, or holds a value
      of the wrong type or one that does not validate.
  """
  path = os.path.join(workdir, 'config.json')
  what_to_do = 'fix it, or start a new run'
  values = _load_object(path, what_to_do)
  if values is None:
    return None
  fields = {}
  for name, value in values.items():
    if name not in config_lib.FIELDS:
      continue
    default = config_lib.FIELDS[name].default
    if isinstance(default, tuple):
      if not isinstance(value, list):
        raise _bad(path, name, value, 'a list of integers', what_to_do)
      value = tuple(value)
    fields[name] = value
  try:
    config = dataclasses.replace(config_lib.Config(**fields), logdir=logdir, run_name=run_name, resume=False)
    config_lib.validate(config)
  except UserError as e:
    raise UserError(f'{path}: {e}; {what_to_do}') from None
  return config


def _is_grid(grid):
  return isinstance(grid, list) and all(
      isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str) and isinstance(entry[1], list)
      and entry[1] and all(isinstance(v, str) for v in entry[1]) for entry in grid)


_SWEEP_KEYS = {
    'grid': (_is_grid, 'a list of [flag, [values]]'),
    'seeds': (lambda v: _is_int(v) and v >= 1, 'an integer >= 1'),
    'fixed': (lambda v: isinstance(v, list) and all(isinstance(a, str) for a in v), 'a list of flags'),
}


def read_sweep(sweep_dir):
  """<sweep_dir>/sweep.json ({grid, seeds, fixed}) checked, or None if there is none.

  Raises:
    UserError: the file cannot be read or does not hold a sweep's identity.
  """
  path = os.path.join(sweep_dir, 'sweep.json')
  what_to_do = ('fix it (the sweep command\'s --grid, --seeds and the flags after --), or remove it and run the '
                'sweep command again')
  identity = _load(path, what_to_do)
  if identity is _MISSING:
    return None
  if not isinstance(identity, dict):
    raise UserError(f'{path}: holds {json.dumps(identity)[:60]}, not a JSON object; {what_to_do}')
  for key, (check, must_be) in _SWEEP_KEYS.items():
    if key not in identity:
      raise UserError(f'{path}: has no "{key}"; {what_to_do}')
    if not check(identity[key]):
      raise _bad(path, key, identity[key], must_be, what_to_do)
  return identity
