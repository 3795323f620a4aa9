"""A sweep's eval metrics against minutes of training: the comparison at equal time, mean ± sd over seeds.

Archs of different speeds compared at equal steps answer the wrong question for a
researcher with a machine and an afternoon: what each reaches in the same time.
Every evaluation records the training minutes spent when it ran (`loop`'s
`time/train_minutes`, beside the eval metrics in eval/ and eval_subset/), so a
sweep plots, for each eval metric, one line per group (the trials that differ
only in seed) against those minutes:

  line     the mean over the group's finished seeds of each seed's curve, linear between its
           evaluations, over the minutes every seed covers; ± sd as a band (none for one seed)
  marker   each seed's last evaluation: the whole test split (metrics.json's figure); the
           evaluations before it read the run's seeded subset of the test split (eval_subset/)
           where it has one, the whole split where the run evaluated on it (`--eval_examples`)

The colour is the value of the first flag the grid varies (the arch, say), the
line style the values of the others (the view); the task's baseline is a dashed
line, its threshold a dotted one. Written into the sweep folder (by
`harness.aggregate`):

  curves/<metric>_vs_train_minutes.png   each figure
  sweep/          the same as image `curves/<metric>_vs_train_minutes`, and its table as text: per
                  group, the metric at a quarter, a half, three quarters and all of the minutes
                  every seed of every group trained (linear between evaluations), and at the end
  summary.md      the tables, after the summary
"""

import dataclasses
import math
import os
import statistics

import numpy as np

from harness import curves
from harness import summaries
from harness import task_table

MINUTES_TAG = 'time/train_minutes'
_FRACTIONS = (0.25, 0.5, 0.75, 1.0)  # Of the common minutes, in the table.
_STYLES = ('-', '--', ':', '-.')
_WIDTH_INCHES, _HEIGHT_INCHES = 6.4, 4.6


@dataclasses.dataclass(frozen=True)
class Line:
  """One group's metric against training minutes."""
  label: str
  values: tuple  # The grid values of the group, in the grid's order of varied flags.
  minutes: np.ndarray  # [k] where the mean is defined: inside every seed's span, at any seed's evaluation.
  mean: np.ndarray  # [k]
  sd: np.ndarray  # [k] sample sd over seeds (zeros for one).
  finals: tuple  # ((minutes, value) of each finished seed's last evaluation, on the whole split).
  seeds: int  # All seeds of the group, finished or not.

  def at(self, minute):
    """The mean at `minute` (linear between points), or NaN outside the span."""
    if not len(self.minutes) or not self.minutes[0] <= minute <= self.minutes[-1]:
      return math.nan
    return float(np.interp(minute, self.minutes, self.mean))


def trial_curve(minutes, whole, subset):
  """One trial's (minutes [k], values [k]) of a metric, its evaluations in order of step.

  Args:
    minutes: {step: training minutes} of its evaluations (eval/ and eval_subset/).
    whole: {step: value} on the whole test split (eval/); where a step has both, it is the whole split's.
    subset: {step: value} on the test subset (eval_subset/).
  """
  points = {**subset, **whole}
  steps = sorted(step for step in points if step in minutes)
  return np.array([minutes[s] for s in steps], np.float64), np.array([points[s] for s in steps], np.float64)


def mean_curve(seed_curves):
  """(minutes, mean, sd) over seeds of curves [(minutes [k_i], values [k_i])], each linear between its points, over
  the minutes all cover (the union of their points there); empty arrays where they share no minute.
  """
  seed_curves = [(x, y) for x, y in seed_curves if len(x)]
  if not seed_curves:
    return np.zeros(0), np.zeros(0), np.zeros(0)
  start, end = max(x[0] for x, _ in seed_curves), min(x[-1] for x, _ in seed_curves)
  grid = np.unique(np.concatenate([x[(x >= start) & (x <= end)] for x, _ in seed_curves]))
  values = np.stack([np.interp(grid, x, y) for x, y in seed_curves])  # [seeds, k]
  sd = values.std(axis=0, ddof=1) if len(seed_curves) > 1 else np.zeros(len(grid))
  return grid, values.mean(axis=0), sd


def lines(grid, trials, results, whole_curves, subset_curves, minutes, metric):
  """The Lines of `metric`, one per group with a finished trial, in the grid's order.

  Args:
    grid: [(flag, [value texts])] of the sweep.
    trials: its `trials.Trial`s.
    results: {trial name: metrics.json dict}.
    whole_curves, subset_curves: {trial name: {metric: {step: value}}} of the finished trials (eval/, eval_subset/).
    minutes: {trial name: {step: training minutes}} of the finished trials' evaluations.
    metric: an eval metric's name (`accuracy`).
  """
  varied = [flag for flag, values in grid if len(values) > 1]
  groups = {}
  for trial in trials:
    groups.setdefault(trial.group, []).append(trial)
  found = []
  for members in groups.values():
    done = [t for t in members if t.name in whole_curves and minutes.get(t.name) and
            metric in whole_curves[t.name]]
    if not done:
      continue
    seed_curves = [trial_curve(minutes[t.name], whole_curves[t.name][metric],
                               subset_curves.get(t.name, {}).get(metric, {})) for t in done]
    finals = tuple((float(x[-1]), results[t.name].get(f'eval_{metric}', float(y[-1])))
                   for t, (x, y) in zip(done, seed_curves) if len(x))
    values = dict(members[0].values)
    line_values = tuple(values[flag] for flag in varied)
    found.append(Line(', '.join(line_values) or metric, line_values, *mean_curve(seed_curves), finals, len(members)))
  return found


def _styles(found):
  """{label: (colour, line style)}: the colour from the first varied value, the style from the rest."""
  firsts = list(dict.fromkeys(line.values[:1] for line in found))
  rests = list(dict.fromkeys(line.values[1:] for line in found))
  return {line.label: (f'C{firsts.index(line.values[:1]) % 10}', _STYLES[rests.index(line.values[1:]) % len(_STYLES)])
          for line in found}


def draw(found, metric, baseline=None, threshold=None, title_flags=()):
  """The figure (on its own Agg canvas) of `found` Lines of `metric` against training minutes."""
  figure, panel = summaries.subplots(figsize=(_WIDTH_INCHES, _HEIGHT_INCHES))
  styles, plotted = _styles(found), []
  for line in found:
    colour, style = styles[line.label]
    panel.plot(line.minutes, line.mean, color=colour, linestyle=style, linewidth=1.5, label=line.label)
    if line.sd.any():
      panel.fill_between(line.minutes, line.mean - line.sd, line.mean + line.sd, color=colour, alpha=0.15,
                         linewidth=0)
    if line.finals:
      panel.plot(*zip(*line.finals), color=colour, marker='o', markersize=5, linestyle='none')
    plotted += [*line.mean, *(value for _, value in line.finals)]
  if baseline is not None:
    panel.axhline(baseline, color='black', linestyle='--', linewidth=1, label='baseline')
    plotted.append(baseline)
  if threshold is not None:
    higher = metric in task_table.HIGHER_IS_BETTER
    panel.axhline(threshold, color='gray', linestyle=':', linewidth=1,
                  label=f'threshold {metric} {"≥" if higher else "≤"} {threshold:g}')
    plotted.append(threshold)
  if curves.log_scale(plotted):
    panel.set_yscale('log')
  panel.set_xlabel('minutes of training steps (evaluations, probes and checkpoints not counted)', fontsize=9)
  panel.set_ylabel(f'eval {metric}', fontsize=10)
  panel.tick_params(labelsize=9)
  panel.grid(alpha=0.3)
  panel.set_title(f'eval {metric} against training minutes: mean ± sd over seeds\n'
                  '● each seed\'s last evaluation (the whole test split)', fontsize=9)
  columns = min(len(found) + (baseline is not None) + (threshold is not None), 4)
  rows = -(-(len(found) + (baseline is not None) + (threshold is not None)) // columns)
  figure.legend(loc='lower center', ncol=columns, fontsize=8, frameon=False,
                title=', '.join(title_flags) or None, title_fontsize=8)
  figure.tight_layout(rect=(0, (0.2 + 0.17 * rows + 0.15 * bool(title_flags)) / _HEIGHT_INCHES, 1, 1))
  return figure


def table(found, metric):
  """The metric at fractions of the minutes every line covers, and at each group's end, as markdown."""
  common = min((line.minutes[-1] for line in found if len(line.minutes)), default=math.nan)
  at = [fraction * common for fraction in _FRACTIONS]
  header = ['group', 'n', *(f'at {minute:.1f} min' for minute in at), f'last ({metric}, minutes)']
  rows = [f'| {" | ".join(header)} |', '|' + '---|' * len(header)]
  for line in found:
    values = [line.at(minute) for minute in at]
    last = [value for _, value in line.finals]
    spent = [minute for minute, _ in line.finals]
    rows.append('| ' + ' | '.join([
        line.label, f'{len(line.finals)}/{line.seeds}', *('—' if math.isnan(v) else f'{v:.4f}' for v in values),
        f'{statistics.fmean(last):.4f} at {statistics.fmean(spent):.1f}' if last else '—']) + ' |')
  return (f'Eval {metric} against minutes of training (mean over seeds, linear between evaluations, on the test '
          'subset before the last evaluation and the whole split at it):\n\n' + '\n'.join(rows))


def write(sweep_dir, grid, trials, results, whole_curves, subset_curves, minutes, writer):
  """Draws each eval metric against training minutes into curves/ and `writer` (sweep/); returns the tables.

  Args: as `lines`, and the sweep folder and a `summaries.SummaryWriter` of its sweep/ event folder.
  """
  metrics = sorted({m for name in whole_curves if minutes.get(name) for m in whole_curves[name]})
  tables = []
  for metric in metrics:
    found = lines(grid, trials, results, whole_curves, subset_curves, minutes, metric)
    if not found:
      continue
    finished = [results[name] for name in whole_curves if minutes.get(name)]
    baselines = {m[f'baseline_{metric}'] for m in finished if f'baseline_{metric}' in m}
    thresholds = {m[f'threshold_{metric}'] for m in finished if f'threshold_{metric}' in m}
    figure = draw(found, metric, baselines.pop() if len(baselines) == 1 else None,
                  min(thresholds) if thresholds else None, [flag for flag, values in grid if len(values) > 1])
    os.makedirs(os.path.join(sweep_dir, 'curves'), exist_ok=True)
    figure.savefig(os.path.join(sweep_dir, 'curves', f'{metric}_vs_train_minutes.png'), dpi=summaries.DPI)
    tag = f'curves/{metric}_vs_train_minutes'
    tables.append(table(found, metric))
    writer.write_images(0, {tag: summaries.figure_to_image(figure)})
    writer.write_texts(0, {tag: tables[-1]})
  return '\n\n'.join(tables)
