"""The run configuration: one frozen dataclass, its per-task defaults and its validation.

Every field is a flag of `harness.train` (`harness.cli` generates the flags
from the field metadata: help text, choices, bounds), so a config round-trips
through an absl flagfile (`to_flagfile`) and through `config.json`
(`to_json`, read back by `harness.runfiles.read_config`). Tests build configs directly with `make_config`;
only the command-line entries touch FLAGS. Nothing here imports TensorFlow, so
usage errors come back at once.
"""

import dataclasses
import json
import math
import re

from harness import archs
from harness import linear_specs
from harness import recipes
from harness import schedule
from harness import sizes
from harness import task_table
from harness.errors import UserError

TASKS = tuple(task_table.TASKS)
# What --probes chooses from (harness.probes holds them; layer_dynamics runs in the train step).
PROBES = ('weights', 'gradients', 'activations', 'gradient_flow', 'gates', 'timescales', 'layer_dynamics')
VIEWS = ('rows', 'pixels', 'permuted')

_RUN_NAME_PATTERN = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._=,-]*$')
RUN_NAME_MAX_LENGTH = 200  # File names stop at 255 bytes; room for the suffixes of temporary folders.
# TensorFlow counts steps (and takes integer tensors) in int64; numpy, which
# keras.utils.set_random_seed seeds too, takes seeds below 2**32.
INT64_MAX = 2**63 - 1
SEED_MAX = 2**32 - 1
# The generated tasks' step streams end at 2**62 (tf.data.Dataset.range).
MAX_STEPS = 2**62
# Longer sequences fill memory with the generated tasks' fixed test sets
# (2,000 sequences) before training starts, and take hours per step.
MAX_SEQ_LEN = 100_000
# The sigmoid of the forget gate is 0 or 1 in float32 well before this.
MAX_FORGET_BIAS = 100.0


def _field(default, help_text, *, choices=None, minimum=None, above=None, maximum=None, per_task=False,
           resumable=False, flag_default=None, hparam=True):
  """A Config field with the metadata that flags and validation are generated from.

  Args:
    default: the value when neither the task nor the user sets one.
    help_text: the flag's help.
    choices: the allowed values of a str field (an enum flag).
    minimum: numbers (every element of a tuple) must be >= this.
    above: numbers must be > this.
    maximum: numbers must be <= this (integers: at most INT64_MAX, whatever it says).
    per_task: the default comes from the task's entry (`task_table`) (the flag's own default is None).
    resumable: a resumed run may change it (it schedules the run, it does not define it).
    flag_default: the flag's default where it differs from `default` (e.g. '' for an empty tuple).
    hparam: it can change a result, so the HParams table records it (where it applies to the run's
      task and arch: `runs.hparams`); False for where a run writes, reads and reports.
  """
  metadata = dict(help=help_text, choices=choices, minimum=minimum, above=above, maximum=maximum, per_task=per_task,
                  resumable=resumable, flag_default=flag_default, hparam=hparam)
  return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything that defines a run. See `python -m harness.train --helpfull` for each field."""
  recipe: str = _field('', 'Start from the settings of a known system (flags given explicitly override them); '
                       '--recipe=list lists them.')
  task: str = _field('mnist', 'What to learn: mnist, fashion_mnist (images), sin2cos, adding, copy (generated).',
                     choices=TASKS)
  view: str = _field('rows', 'Images: read rows (28 steps of 28 pixels), pixels (784 steps of 1, row-major) or '
                     'permuted (784 pixels in one fixed order from --permutation_seed).', choices=VIEWS)
  permutation_seed: int = _field(0, 'Images, --view=permuted: the seed of the pixel order (the same for train and '
                                 'test).', minimum=0)
  arch: str = _field('lstm', 'Recurrent cell, stacked once per --units size: ' + '; '.join(
      f'{name} = {arch.description}' for name, arch in archs.ARCHS.items()) + ''.join(
          f'; {alias}: {name}, an old name' for alias, name in archs.ALIASES.items()) + '.',
                     choices=archs.NAMES)
  units: tuple = _field((128,), 'Units per recurrent layer, comma-separated: one layer of --arch per size (32,64 '
                        'stacks two); under --param_budget, the layers\' ratios.', minimum=1)
  param_budget: int = _field(
      0, 'Choose the units of every recurrent layer so that the whole model (input projection, recurrent layers '
      'or blocks with their MLPs and norms, head) has this many trainable parameters, as near as one scale of '
      f'--units allows and within {100 * sizes.BUDGET_TOLERANCE:.0f} %: --units gives the layers\' ratios (32,64: '
      'the second twice the first), --input_units keeps its size, and units within that already are kept '
      '(config.json and flags.txt record the chosen ones). 0 = off.', minimum=0)
  input_units: int = _field(128, 'Linear input projection per step before the recurrent layers (0 = none).',
                            minimum=0, per_task=True)
  forget_bias: float = _field(1.0, 'Initial LSTM forget-gate bias (lstm).', minimum=-MAX_FORGET_BIAS,
                              maximum=MAX_FORGET_BIAS, per_task=True)
  lstm_kernel: str = _field(
      'auto', 'LSTM implementation; same weights and math, and cuDNN on a GPU whatever the choice. On the CPU: '
      'fused = the harness\'s HarnessLstm op, one op per sequence (oneDNN GEMMs; built on first use, BlockLSTM '
      'where it cannot be); block = TensorFlow\'s BlockLSTM op, one op per sequence; keras = '
      'keras.layers.LSTM\'s per-step tf.while_loop; auto = fused at any width where HarnessLstm is built, else BlockLSTM up to 128 units and keras above.',
      choices=('auto', 'fused', 'block', 'keras'), resumable=True)
  scan_kernel: str = _field(
      linear_specs.DEFAULT_OPTIONS['scan_kernel'],
      'mingru, minlstm, lru: how h_t = a_t h_{t-1} + b_t is scanned over time; same math, the exact reversed-time '
      'gradient in each. fused = the harness\'s CPU op (built on first use; minGRU\'s and minLSTM\'s gates folded '
      'in; their pass is then not XLA-compiled); sequential = a tf.while_loop of elementwise ops; chunked = T/C loop steps over chunks '
      'of C ~ sqrt(T) steps done at once; associative = keras.ops.associative_scan; logcumsumexp = the log-space '
      'form (minGRU/minLSTM only, where a, b > 0); auto = the fastest measured for the arch, shape and device '
      '(harness.scan; BUILD.md).', choices=linear_specs.SCAN_KERNELS, resumable=True)
  mlp_expansion: int = _field(
      linear_specs.DEFAULT_OPTIONS['mlp_expansion'],
      'mingru, minlstm: hidden width of the block\'s per-step MLP in multiples of the layer\'s units (Feng et al. '
      '2024 train their minRNN layers in a pre-norm residual block with a 4x MLP; 0 = no MLP, the bare '
      'recurrence with its residual).', minimum=0, maximum=64)
  lru_r_min: float = _field(
      linear_specs.DEFAULT_OPTIONS['lru_r_min'],
      'lru: smallest |lambda| of the ring initialisation (|lambda|^2 uniform in [r_min^2, r_max^2]); 1 / (1 - '
      '|lambda|) is a unit\'s memory in steps. Orvieto et al. 2023 (App. A code, and NicolasZucchet/minimal-LRU) '
      'default to r_min 0, r_max 1, max_phase 2 pi and raise r_min towards 1 for long-range tasks; the harness '
      'starts at 0.9 for T in the hundreds.', minimum=0.0, maximum=1.0)
  lru_r_max: float = _field(
      linear_specs.DEFAULT_OPTIONS['lru_r_max'],
      'lru: largest |lambda| of the ring initialisation (0.999: timescales up to 1,000 steps).', above=0.0,
      maximum=1.0)
  lru_max_phase: float = _field(
      linear_specs.DEFAULT_OPTIONS['lru_max_phase'],
      'lru: the phase arg(lambda) starts uniform in [0, max_phase] radians (the paper\'s default 2 pi; it '
      'restricts it to a thin slice, pi / 10, on its longest task).', above=0.0, maximum=2 * math.pi)
  precision: str = _field(
      'float32', 'Compute precision: float32, or a Keras mixed policy with float32 variables: mixed_bfloat16 '
      '(bfloat16 matmuls: AMX or AVX-512 BF16 on CPUs, recent GPUs) or mixed_float16 (GPUs; with loss scaling).',
      choices=('float32', 'mixed_bfloat16', 'mixed_float16'))
  batch_size: int = _field(128, 'Global batch size.', minimum=1, per_task=True)
  epochs: int = _field(10, 'Epochs to train.', minimum=1, per_task=True, resumable=True)
  train_steps: int = _field(0, 'Steps to train; when set (> 0), overrides --epochs.', minimum=0, maximum=MAX_STEPS,
                            resumable=True)
  time_budget: float = _field(
      0.0, 'Train for this many minutes of training steps (metrics.json\'s train_seconds: the training calls, the '
      'first one\'s tracing of the step included; evaluations, probes and checkpoints are not counted), then '
      'evaluate; the cosine learning-rate decay follows the fraction of it spent. --train_steps, where set, caps '
      'the steps; --epochs does not apply. A resumed run continues its budget to the same total. Not with '
      '--deterministic or --strategy=multi_worker. 0 = off.', minimum=0, resumable=True)
  learning_rate: float = _field(3e-3, 'Learning rate.', above=0, per_task=True)
  optimizer: str = _field('adam', 'Optimizer.', choices=('adam', 'sgd', 'rmsprop'))
  lr_schedule: str = _field('cosine', 'constant, or cosine decay from --learning_rate to 0 over the run\'s steps '
                            '(under --time_budget, over its time).',
                            choices=('constant', 'cosine'))
  clip_norm: float = _field(0.0, 'Clip gradients to this global norm (0 = off).', minimum=0, per_task=True)
  seed: int = _field(0, 'Seed for weights and data order.', minimum=0, maximum=SEED_MAX)
  seq_len: int = _field(20, 'Steps per sequence: sin2cos windows, the adding problem\'s T, the copy task\'s blank '
                        'span T (images: fixed by --view).', minimum=0, maximum=MAX_SEQ_LEN, per_task=True)
  stateful: bool = _field(False, 'Carry each stream\'s final state into the next batch (reset at each epoch).')
  deterministic: bool = _field(False, 'Deterministic ops: a resumed run then ends bit-identical to an '
                               'uninterrupted one.')
  logdir: str = _field('runs', 'Folder that holds the runs.', resumable=True, hparam=False)
  run_name: str = _field('', 'Run folder name under --logdir (default: task-arch-units-time-random).',
                         resumable=True, hparam=False)
  data_dir: str = _field('', 'tfds data_dir (default: tfds\'s own, ~/tensorflow_datasets).', resumable=True, hparam=False)
  eval_every: int = _field(0, 'Evaluate every this many steps, and at the end (0 = about ten times per run and at '
                           'least once per epoch, or sparser where that would take more than 15 % of the run\'s time).',
                           minimum=0, resumable=True, hparam=False)
  eval_examples: str = _field(
      'auto', 'Test examples each evaluation before the last step reads (the last always reads the whole test '
      'split): auto = a fixed, seeded subset sized to the run, one example per example it trains on between two '
      f'of its ~{schedule.EVALUATIONS_PER_RUN} evaluations, in whole batches from {schedule.AUTO_EVAL_EXAMPLES[0]:,} '
      f'to {schedule.AUTO_EVAL_EXAMPLES[1]:,} (a split of at most {schedule.AUTO_EVAL_EXAMPLES[1]:,}: all of it); N '
      '= such a subset of N; all = the whole split every time.', resumable=True, hparam=False)
  checkpoint_every: int = _field(1000, 'Checkpoint every this many steps (and at the end).', minimum=1,
                                 resumable=True, hparam=False)
  summary_every: int = _field(100, 'Write train scalars every this many steps.', minimum=1, resumable=True, hparam=False)
  histogram_every: int = _field(1000, 'Run the probes (histograms, gradient flow, gates) every this many steps, '
                                'at step 0 and at the last step (0 = never).', minimum=0, resumable=True, hparam=False)
  probes: str = _field('all', f'What to measure at histogram steps and at step 0: all, none, or some of '
                       f'{",".join(PROBES)} (comma-separated).', resumable=True, hparam=False)
  profile_steps: tuple = _field((), 'START,STOP: profile the steps between them (TensorBoard profile plugin).',
                                minimum=1, resumable=True, flag_default='', hparam=False)
  strategy: str = _field('default', 'tf.distribute strategy: default (one device), mirrored (local devices), '
                         'multi_worker (hosts in TF_CONFIG).', choices=('default', 'mirrored', 'multi_worker'))
  num_cpu_devices: int = _field(0, 'Split the CPU into this many logical devices (0 = leave it whole).', minimum=0)
  batch_splits: int = _field(
      0, 'Split each step\'s batch into this many sub-batches whose forward and backward passes run in '
      'parallel (the summed gradient is the same update). 0 = auto: one per CPU core on a CPU-only single '
      'device if each gets 16+ examples (64+ unless every layer is a fused LSTM), else 1.', minimum=0,
      resumable=True, hparam=False)
  resume: bool = _field(False, 'Continue --run_name from its latest checkpoint.', resumable=True, hparam=False)


FIELDS = {field.name: field for field in dataclasses.fields(Config)}
RESUMABLE_OVERRIDES = frozenset(name for name, field in FIELDS.items() if field.metadata['resumable'])


def make_config(**overrides):
  """Returns a validated Config: the task's defaults, then the recipe's settings, then `overrides`.

  Raises:
    UserError: a value is out of range, names no known choice, or does not fit
      another value; the message names the flag.
  """
  recipe = overrides.get('recipe', Config.recipe)
  if recipe and recipe not in recipes.RECIPES:
    raise UserError(f'--recipe={recipe}: unknown recipe; choose one of {", ".join(recipes.RECIPES)} '
                    '(--recipe=list says what each is)')
  recipe_values = recipes.RECIPES[recipe]['flags'] if recipe else {}
  task = overrides.get('task', recipe_values.get('task', Config.task))
  _check_field('task', task)
  values = {**task_table.TASKS[task].defaults, **recipe_values, **overrides}
  for key in ('units', 'profile_steps'):
    if key in values:
      values[key] = tuple(values[key])
  unknown = sorted(set(values) - set(FIELDS))
  if unknown:
    raise UserError(f'unknown config field(s): {", ".join(unknown)}')
  config = Config(**values)
  validate(config)
  if config.param_budget:
    config = dataclasses.replace(config, units=sizes.budget_units(config))
  return config


def _check_number(name, value, metadata):
  is_int_field = isinstance(FIELDS[name].default, (int, tuple)) and not isinstance(FIELDS[name].default, bool)
  if is_int_field and (isinstance(value, bool) or not isinstance(value, int)):
    raise UserError(f'--{name}={value!r}: must be an integer')
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
    raise UserError(f'--{name}={value!r}: must be a finite number')
  if metadata['minimum'] is not None and value < metadata['minimum']:
    bound = 'positive' if metadata['minimum'] == 1 and is_int_field else f'>= {metadata["minimum"]}'
    raise UserError(f'--{name}={value}: must be {"0 or more" if metadata["minimum"] == 0 else bound}')
  if metadata['above'] is not None and value <= metadata['above']:
    raise UserError(f'--{name}={value}: must be > {metadata["above"]}')
  maximum = metadata['maximum'] if metadata['maximum'] is not None else INT64_MAX if is_int_field else None
  if maximum is not None and value > maximum:
    raise UserError(f'--{name}={value}: must be at most {maximum}')


def _check_field(name, value):
  """Checks one field against its metadata (type, choices, bounds)."""
  metadata = FIELDS[name].metadata
  default = FIELDS[name].default
  if metadata['choices'] is not None:
    if value not in metadata['choices']:
      raise UserError(f'--{name}={value!r}: unknown {name}; choose one of {", ".join(metadata["choices"])}')
  elif isinstance(default, bool):
    if not isinstance(value, bool):
      raise UserError(f'--{name}={value!r}: must be true or false')
  elif isinstance(default, tuple):
    for element in value:
      _check_number(name, element, metadata)
  elif isinstance(default, (int, float)):
    _check_number(name, value, metadata)
  elif not isinstance(value, str):
    raise UserError(f'--{name}={value!r}: must be text')
  elif any(ord(c) < 32 or ord(c) == 127 for c in value):  # A line break would add a line to flags.txt.
    raise UserError(f'--{name}={value!r}: holds a line break or another control character')


def validate(config):
  """Raises UserError naming the first flag whose value is invalid."""
  for name in FIELDS:
    _check_field(name, getattr(config, name))
  if not config.units:
    raise UserError('--units: needs at least one layer size')
  _check_task_flags(config)
  if config.lru_r_min > config.lru_r_max:
    raise UserError(f'--lru_r_min={config.lru_r_min}: must be at most --lru_r_max={config.lru_r_max}')
  if config.batch_splits and config.batch_size % config.batch_splits:
    raise UserError(f'--batch_splits={config.batch_splits}: must divide --batch_size={config.batch_size}')
  if config.profile_steps:
    if len(config.profile_steps) != 2:
      raise UserError(f'--profile_steps={",".join(map(str, config.profile_steps))}: give two steps, START,STOP')
    start, stop = config.profile_steps
    if stop <= start:
      raise UserError(f'--profile_steps={start},{stop}: STOP must be after START')
  probe_names(config)
  if config.eval_examples not in ('auto', 'all') and not (re.fullmatch('[0-9]+', config.eval_examples)
                                                         and int(config.eval_examples)):
    raise UserError(f'--eval_examples={config.eval_examples!r}: give auto, all or a positive number of test examples')
  check_run_name(config.run_name)
  if config.deterministic and config.time_budget:
    raise UserError(f'--time_budget={config.time_budget}: not with --deterministic (where a run ends depends on '
                    'the machine\'s speed, and TensorFlow reads no clock under op determinism)')
  if config.strategy == 'multi_worker' and config.time_budget:
    raise UserError(f'--time_budget={config.time_budget}: not with --strategy=multi_worker (each host\'s clock '
                    'would end the run at another step, and the workers step together)')
  if config.strategy == 'multi_worker' and not config.run_name:
    raise UserError('--strategy=multi_worker needs --run_name: every worker must name the same run')
  if config.resume and not config.run_name:
    raise UserError('--resume needs --run_name: the run to continue')


def _check_task_flags(config):
  """The task-specific flags (`task_table.TaskSpec.flags`) are set only for the tasks they apply to."""
  spec = task_table.TASKS[config.task]
  if 'seq_len' in spec.flags:
    minimum, why = spec.min_seq_len
    if config.seq_len < minimum:
      raise UserError(f'--seq_len={config.seq_len}: ' + (why or f'--task={config.task} needs a positive sequence '
                                                                'length'))
  elif config.seq_len:
    raise UserError(f'--seq_len={config.seq_len}: --task={config.task} has no sequence-length flag' + (
        ' (its steps come from --view: rows 28, pixels and permuted 784)' if 'view' in spec.flags else ''))
  if 'view' not in spec.flags and config.view != Config.view:
    with_views = [name for name, other in task_table.TASKS.items() if 'view' in other.flags]
    raise UserError(f'--view={config.view}: only image tasks ({", ".join(with_views)}) have views')


def probe_names(config):
  """The probes `--probes` selects, in PROBES order."""
  if config.probes in ('all', 'none'):
    return PROBES if config.probes == 'all' else ()
  names = [name.strip() for name in config.probes.split(',') if name.strip()]
  unknown = [name for name in names if name not in PROBES]
  if unknown:
    raise UserError(f'--probes={config.probes}: unknown {", ".join(unknown)}; choose all, none, or some of '
                    f'{", ".join(PROBES)}')
  return tuple(name for name in PROBES if name in names)


def check_run_name(name, flag='run_name'):
  """A run (or sweep, `flag`='name') folder name: one plain path component the harness's files can live under."""
  if not name:
    return
  if not _RUN_NAME_PATTERN.match(name):
    raise UserError(f'--{flag}={name!r}: use only ASCII letters, digits and . _ = , - (no spaces, accents or '
                    'slashes), starting with a letter or digit')
  if len(name) > RUN_NAME_MAX_LENGTH:
    raise UserError(f'--{flag}: {len(name)} characters; at most {RUN_NAME_MAX_LENGTH}')


def applicable_fields(config):
  """The config's field names that do something in `config`, in field order.

  Left out: a task's own flag (`task_table` flags) for another task, an arch's
  own field (`archs.ARCH_FIELDS`) for another arch, --permutation_seed outside
  the permuted view, --epochs under --train_steps or --time_budget, a budget
  that is off. The config text and the hparams list these only.
  """
  spec, arch_options = task_table.TASKS[config.task], archs.get(config.arch).options
  task_flags = {flag for other in task_table.TASKS.values() for flag in other.flags}
  return [name for name in FIELDS
          if not (name in task_flags and name not in spec.flags)
          and not (name in archs.ARCH_FIELDS and name not in arch_options)
          and not (name == 'permutation_seed' and config.view != 'permuted')
          and not (name == 'epochs' and (config.train_steps or config.time_budget))
          and not (name in ('param_budget', 'time_budget') and not getattr(config, name))]


def flag_value(value):
  """Formats a config value the way absl parses it back from a flagfile."""
  if isinstance(value, tuple):
    return ','.join(str(v) for v in value)
  if isinstance(value, bool):
    return 'true' if value else 'false'
  return repr(value) if isinstance(value, float) else str(value)


def to_flagfile(config, comments=()):
  """Returns an absl flagfile that re-runs `config` (as a new run: no run name, no resume)."""
  lines = [f'# {comment}' for comment in comments]
  for name in FIELDS:
    if name in ('run_name', 'resume'):
      continue
    lines.append(f'--{name}={flag_value(getattr(config, name))}')
  return '\n'.join(lines) + '\n'


def to_json(config):
  return json.dumps(dataclasses.asdict(config), indent=2, sort_keys=True)
