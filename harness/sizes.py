"""How big a model is, without TensorFlow: its parameter count, the units a --param_budget chooses, its memory.

The model is `models.SequenceModel`: the input projection (Dense(--input_units) per step, when set), one
layer of the arch per --units size (each arch's entry counts its layer, a block's projection, norms and MLP
included: `archs.parameter_count`), and the head (Dense(outputs) on the last layer's outputs). The count
equals the built model's trainable parameters (sizes_test). `config.make_config` resolves --param_budget
here with the task's sizes from its table entry (`task_table.TaskSpec.io_sizes`), before TensorFlow starts.
"""

import math
import os

from harness import archs
from harness import task_table
from harness.errors import UserError

# --param_budget=N: the chosen units' model has N parameters to within this fraction, or the run is refused.
BUDGET_TOLERANCE = 0.02
# Bytes per parameter a training step holds at least: float32 weights, their
# gradients, and two optimizer slots (Adam's moments).
_BYTES_PER_PARAMETER = 16
# Halvings of the scale's bracket: past ~60 two doubles this close round every layer alike.
_BISECTIONS = 100


def _count(config, num_features, num_outputs, units):
  count, width = 0, num_features
  if config.input_units:
    count, width = (num_features + 1) * config.input_units, config.input_units
  options = {name: getattr(config, name) for name in archs.get(config.arch).options}
  count += archs.parameter_count(config.arch, width, units, options)
  return count + (units[-1] + 1) * num_outputs


def parameter_count(config, num_features, num_outputs):
  """Trainable parameters of the model `config` builds over `num_features` inputs per step, computed without
  building it."""
  return _count(config, num_features, num_outputs, config.units)


def task_parameter_count(config):
  """`parameter_count` with the sizes of `config.task` from its table entry (no data loaded)."""
  return parameter_count(config, *task_table.TASKS[config.task].io_sizes(config.view))


def _units_flag(units):
  return f'--units={",".join(map(str, units))}'


def budget_units(config):
  """The --units whose model comes closest to `config.param_budget` parameters, for `config.units` as ratios.

  One scale s for every layer: layer i gets round(s a_i) units (at least 1), a_i = config.units[i]; the
  input projection (--input_units) keeps its size. Units whose model is within BUDGET_TOLERANCE of the
  budget already are kept as they are: the units a budget chose, which config.json and flags.txt record
  beside it, so choose themselves again (scaled anew as ratios, they could land on a neighbouring model).

  Raises:
    UserError: no scale comes within BUDGET_TOLERANCE (naming the nearest sizes and their counts), or the
      model would not fit in this machine's memory.
  """
  budget, ratios = config.param_budget, config.units
  sizes = task_table.TASKS[config.task].io_sizes(config.view)

  def count(units):
    return _count(config, *sizes, units)

  def scaled(s):
    return tuple(max(1, math.floor(s * a + 0.5)) for a in ratios)

  chosen = ratios
  if abs(count(ratios) - budget) > BUDGET_TOLERANCE * budget:
    # The count never falls as s grows: bisect s between a model below the budget and one at or above it.
    low, high = 0.0, 1.0
    while count(scaled(high)) < budget:
      low, high = high, 2 * high
    for _ in range(_BISECTIONS):
      middle = (low + high) / 2
      low, high = (middle, high) if count(scaled(middle)) < budget else (low, middle)
    below, above = scaled(low), scaled(high)
    chosen = min((below, above), key=lambda units: (abs(count(units) - budget), count(units)))
    if abs(count(chosen) - budget) > BUDGET_TOLERANCE * budget:
      what = f'--arch={config.arch} on --task={config.task}' + (
          f' with its --input_units={config.input_units} projection' if config.input_units else '')
      if count(below) >= budget:
        raise UserError(f'--param_budget={budget}: too small for {what}: its smallest model, {_units_flag(below)}, '
                        f'has {count(below):,} parameters')
      raise UserError(f'--param_budget={budget}: no scale of {_units_flag(ratios)} comes within '
                      f'{100 * BUDGET_TOLERANCE:.0f} % for {what}: {_units_flag(below)} gives {count(below):,} '
                      f'parameters, {_units_flag(above)} {count(above):,}; give other ratios or another budget')
  _check_memory(config, count(chosen), chosen)
  return chosen


def check_memory(config, num_features, num_outputs):
  """Refuses a model whose weights, gradients and optimizer state alone exceed this machine's memory.

  Raises:
    UserError: naming the size flags, the parameter count, and the memory it needs and has.
  """
  _check_memory(config, parameter_count(config, num_features, num_outputs), config.units)


def _check_memory(config, count, units):
  needed = count * _BYTES_PER_PARAMETER
  available = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
  if needed > available:
    flags = _units_flag(units) + (f' --input_units={config.input_units}' if config.input_units else '')
    if config.param_budget:
      flags = f'--param_budget={config.param_budget} ({flags})'
    raise UserError(f'{flags}: the model has {count:,} parameters and needs at least {needed / 2**30:,.1f} GiB for '
                    f'weights, gradients and optimizer state; this machine has {available / 2**30:,.1f} GiB of memory')
