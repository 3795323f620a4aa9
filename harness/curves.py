"""A sweep's eval metrics against a numeric grid axis: the figure long-memory papers show, with ± sd over seeds.

When the grid varies a numeric flag (`seq_len`, `units`, `learning_rate`, ...),
the first such flag is the x axis; every categorical flag that varies (`arch`,
`optimizer`, ...) makes one line per value; a second numeric flag makes one
figure per value. For each eval metric a figure stacks, against x:

  final    the metric at the last step (metrics.json)
  best     the best value over the run's evaluations of the whole test split (eval/; lowest, highest for
           task_table.HIGHER_IS_BETTER)
  steps    where the task declares a threshold (`Task.thresholds`, recorded in
           metrics.json as threshold_<metric>): the first evaluation step at which
           the metric reached it. Over the seeds that reached it; a seed that
           never did is counted as not reached (k/n), never as a number.

Points are the mean over the finished seeds with ± sd (sample sd) as error
bars; the task's baseline (metrics.json baseline_<metric>) is a dashed line,
the threshold a dotted one; an axis is logarithmic where its values span a
factor of ten or more. Written into the sweep folder (by `harness.aggregate`):

  curves/<metric>_vs_<flag>[,<flag2>=<value>].png    each figure
  sweep/                the same figures as images `curves/<metric>_vs_<flag>[/<flag2>=<value>]`
                        and their tables as text (the sweep's own event folder)
  summary.md            one table per figure, after the summary
"""

import dataclasses
import math
import os
import shutil
import statistics

from matplotlib import ticker

from harness import summaries
from harness import task_table

_QUANTITIES = ('final', 'best', 'steps')
_LOG_SPAN = 10.0  # An axis whose positive values span this factor or more is drawn on a log scale.
_WIDTH_INCHES, _PANEL_INCHES = 6.4, 2.3  # 640 px wide at 100 dpi: legible at TensorBoard's image size.


@dataclasses.dataclass(frozen=True)
class Outcome:
  """One finished trial's eval metric."""
  final: float
  best: float
  steps: int | None  # The first eval step at the threshold; None if never reached or no threshold.
  threshold: float | None
  baseline: float | None


def outcomes(metrics, eval_curves):
  """{metric: Outcome} of one finished trial.

  Args:
    metrics: the trial's metrics.json (eval_<m>, and baseline_<m>, threshold_<m> where the task has them).
    eval_curves: {metric: {step: value}} of its evaluations.
  """
  result = {}
  for key, final in metrics.items():
    if not key.startswith('eval_'):
      continue
    name = key[len('eval_'):]
    curve, higher = eval_curves.get(name, {}), name in task_table.HIGHER_IS_BETTER
    best = (max if higher else min)([*curve.values(), final])
    threshold = metrics.get(f'threshold_{name}')
    steps = None
    if threshold is not None:
      steps = next((step for step in sorted(curve) if reached(curve[step], threshold, name)), None)
    result[name] = Outcome(final, best, steps, threshold, metrics.get(f'baseline_{name}'))
  return result


def reached(value, threshold, metric):
  """Whether `value` of `metric` is at its threshold or beyond (at most; at least for a rising metric)."""
  return value >= threshold if metric in task_table.HIGHER_IS_BETTER else value <= threshold


def _threshold_text(metric, threshold):
  return f'{metric} {"≥" if metric in task_table.HIGHER_IS_BETTER else "≤"} {threshold:g}'


def _number(text):
  try:
    value = float(text)
  except ValueError:
    return None
  return value if math.isfinite(value) else None


def axes_of(grid):
  """(x flag or None, other numeric flags, categorical flags) of the flags the grid varies (two values or more)."""
  varying = [(flag, values) for flag, values in grid if len(values) > 1]
  numeric = [flag for flag, values in varying if all(_number(v) is not None for v in values)]
  categorical = [flag for flag, _ in varying if flag not in numeric]
  return (numeric[0] if numeric else None), numeric[1:], categorical


def _mean_sd(values):
  return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


@dataclasses.dataclass(frozen=True)
class Point:
  """One grid point's metric over its seeds: mean ± sd of each quantity."""
  x: float
  x_text: str
  n: int  # Finished seeds.
  seeds: int  # All seeds.
  final: tuple  # (mean, sd); (nan, nan) with no finished seed.
  best: tuple
  steps: tuple | None  # (mean, sd) over the seeds that reached the threshold; None if none did.
  reached: int
  threshold: float | None
  baseline: float | None


def _point(x_text, members, trial_outcomes, metric):
  """The Point of one grid point's trials (`members`), from the outcomes of its finished ones."""
  found = [trial_outcomes[t.name][metric] for t in members if metric in trial_outcomes.get(t.name, {})]
  nan = (float('nan'), float('nan'))
  steps = [o.steps for o in found if o.steps is not None]
  thresholds = {o.threshold for o in found if o.threshold is not None}
  baselines = [o.baseline for o in found if o.baseline is not None]
  return Point(x=_number(x_text), x_text=x_text, n=len(found), seeds=len(members),
               final=_mean_sd([o.final for o in found]) if found else nan,
               best=_mean_sd([o.best for o in found]) if found else nan,
               steps=_mean_sd(steps) if steps else None, reached=len(steps),
               threshold=min(thresholds) if thresholds else None,
               baseline=statistics.fmean(baselines) if baselines else None)


@dataclasses.dataclass(frozen=True)
class Chart:
  """One figure: a metric against the x flag, {line values: [Point by x]}, at one value of the other numeric flags."""
  metric: str
  x_flag: str
  line_flags: tuple
  fixed: tuple  # ((flag, value text), ...) of the other numeric flags.
  lines: dict

  @property
  def name(self):
    return f'{self.metric}_vs_{self.x_flag}' + ''.join(f',{flag}={value}' for flag, value in self.fixed)

  @property
  def threshold(self):
    thresholds = {p.threshold for points in self.lines.values() for p in points if p.threshold is not None}
    return min(thresholds) if thresholds else None


def charts(grid, trials, trial_outcomes):
  """The Charts of a sweep ([] without a numeric axis).

  Args:
    grid: [(flag, [value texts])].
    trials: the sweep's `trials.Trial`s.
    trial_outcomes: {trial name: {metric: Outcome}} of the finished trials.
  """
  x_flag, other_flags, line_flags = axes_of(grid)
  if x_flag is None:
    return []
  metrics = sorted({m for o in trial_outcomes.values() for m in o})
  groups = {}  # (fixed, line, x text) -> trials, in grid order.
  for trial in trials:
    values = dict(trial.values)
    key = (tuple((f, values[f]) for f in other_flags), tuple(values[f] for f in line_flags), values[x_flag])
    groups.setdefault(key, []).append(trial)
  result = []
  for fixed in dict.fromkeys(key[0] for key in groups):
    for metric in metrics:
      lines = {}
      for (group_fixed, line, x_text), members in groups.items():
        if group_fixed == fixed:
          lines.setdefault(line, []).append(_point(x_text, members, trial_outcomes, metric))
      lines = {line: sorted(points, key=lambda p: p.x) for line, points in lines.items()}
      result.append(Chart(metric, x_flag, tuple(line_flags), fixed, lines))
  return result


def log_scale(values):
  """Whether an axis of `values` is drawn logarithmic: all positive, spanning a factor of ten or more."""
  values = [v for v in values if v is not None and math.isfinite(v)]
  return bool(values) and min(values) > 0 and max(values) / min(values) >= _LOG_SPAN


def draw(chart):
  """The chart's figure (on its own Agg canvas): a panel per quantity, stacked, sharing the x axis."""
  threshold = chart.threshold
  quantities = _QUANTITIES if threshold is not None else _QUANTITIES[:2]
  figure, panels = summaries.subplots(len(quantities), 1, sharex=True, squeeze=False)
  panels = panels[:, 0]
  points = [p for line in chart.lines.values() for p in line]
  xs = sorted({(p.x, p.x_text) for p in points})
  baselines = sorted({p.x: p.baseline for p in points if p.baseline is not None}.items())  # The task's, at each x.
  for panel, quantity in zip(panels, quantities):
    plotted = []
    for index, (line, line_points) in enumerate(chart.lines.items()):
      color = f'C{index % 10}'
      shown = [p for p in line_points if getattr(p, quantity) is not None]
      means = [getattr(p, quantity)[0] for p in shown]
      panel.errorbar([p.x for p in shown], means, yerr=[getattr(p, quantity)[1] for p in shown], color=color,
                     marker='o', markersize=4, capsize=3, linewidth=1.5, label=', '.join(line) or chart.metric)
      plotted += means
      if quantity == 'steps':
        _mark_not_reached(panel, line_points, color, index)
    if quantity != 'steps':
      if baselines:
        panel.plot(*zip(*baselines), color='black', linestyle='--', linewidth=1, label='baseline')
        plotted += [b for _, b in baselines]
      if threshold is not None:
        panel.axhline(threshold, color='gray', linestyle=':', linewidth=1,
                      label=f'threshold {_threshold_text(chart.metric, threshold)}')
        plotted.append(threshold)
    if quantity == 'steps' and not plotted:
      panel.set_yticks([])
      panel.text(0.5, 0.4, f'no seed reached {_threshold_text(chart.metric, threshold)}', ha='center',
                 transform=panel.transAxes, fontsize=10)
    if log_scale(plotted):
      panel.set_yscale('log')
    panel.set_ylabel(f'steps to {_threshold_text(chart.metric, threshold)}' if quantity == 'steps'
                     else f'{quantity} {chart.metric}', fontsize=10)
    panel.tick_params(labelsize=10)
    panel.grid(alpha=0.3)
  bottom = panels[-1]
  if log_scale([x for x, _ in xs]):
    bottom.set_xscale('log')
  bottom.set_xticks([x for x, _ in xs], labels=[text for _, text in xs])
  bottom.xaxis.set_minor_locator(ticker.NullLocator())
  bottom.set_xlabel(chart.x_flag, fontsize=10)
  _legend(figure, panels, chart)
  return figure


def _legend(figure, panels, chart):
  """One legend for every panel, in a row under the title, so that it covers no point."""
  entries = {}
  for panel in panels:
    for handle, label in zip(*panel.get_legend_handles_labels()):
      entries.setdefault(label, handle)
  columns = min(len(entries), 4)
  header = 0.3 + 0.2 * -(-len(entries) // columns) + 0.2 * bool(chart.line_flags)  # Inches: title, legend.
  height = _PANEL_INCHES * len(panels) + 0.5 + header
  figure.set_size_inches(_WIDTH_INCHES, height)
  fixed = ''.join(f', {flag} = {value}' for flag, value in chart.fixed)
  figure.suptitle(f'eval {chart.metric} against {chart.x_flag}{fixed}: mean ± sd over seeds', fontsize=11,
                  y=1 - 0.1 / height)
  figure.legend(list(entries.values()), list(entries), loc='upper center', ncol=columns, fontsize=9,
                title=', '.join(chart.line_flags) or None, title_fontsize=9, bbox_to_anchor=(0.5, 1 - 0.35 / height),
                frameon=False)
  figure.tight_layout(rect=(0, 0, 1, 1 - header / height))


def _mark_not_reached(panel, points, color, index):
  """Seeds that never reached the threshold: k/n beside a point, an × near the top where none did."""
  never = [p.x for p in points if p.n and p.reached == 0]
  if never:  # In axes height (whatever the scale), a row per line so that they do not hide each other.
    panel.plot(never, [0.92 - 0.08 * (index % 8)] * len(never), transform=panel.get_xaxis_transform(), marker='x',
               markersize=8, color=color, linestyle='none', label='not reached')
  for p in points:
    if 0 < p.reached < p.n:
      panel.annotate(f'{p.reached}/{p.n}', (p.x, p.steps[0]), textcoords='offset points', xytext=(5, 5),
                     fontsize=9, color=color)


def _cell(value, digits):
  mean, sd = value
  return '—' if math.isnan(mean) else f'{mean:.{digits}f} ± {sd:.{digits}f}'


def table(chart):
  """The chart as a markdown table: a row per line and x value."""
  threshold = chart.threshold
  header = [*chart.line_flags, chart.x_flag, 'n', f'final {chart.metric}', f'best {chart.metric}']
  if threshold is not None:
    header.append(f'steps to {_threshold_text(chart.metric, threshold)}')
  lines = [f'| {" | ".join(header)} |', '|' + '---|' * len(header)]
  for line, points in chart.lines.items():
    for p in points:
      cells = [*line, p.x_text, f'{p.n}/{p.seeds}', _cell(p.final, 4),
               _cell(p.best, 4)]
      if threshold is not None:
        reached_cell = _cell(p.steps, 0) if p.steps else 'not reached'
        cells.append(reached_cell + (f' ({p.reached}/{p.n})' if p.reached < p.n or not p.n else ''))
      lines.append(f'| {" | ".join(cells)} |')
  fixed = ''.join(f', {flag} = {value}' for flag, value in chart.fixed)
  return f'Eval {chart.metric} against {chart.x_flag}{fixed} (mean ± sd over finished seeds; n = finished):\n\n' + \
      '\n'.join(lines)


def write(sweep_dir, grid, trials, results, eval_curves, writer):
  """Draws every chart of the sweep into curves/ and `writer`'s events; returns their tables ('' if none).

  Args:
    sweep_dir: the sweep folder.
    grid: [(flag, [value texts])].
    trials: the sweep's trials.
    results: {trial name: metrics.json dict} of the trials.
    eval_curves: {trial name: {metric: {step: value}}} of the finished trials.
    writer: a `summaries.SummaryWriter` of the sweep's event folder (sweep/).
  """
  folder = os.path.join(sweep_dir, 'curves')
  shutil.rmtree(folder, ignore_errors=True)  # Derived: recomputed whole.
  trial_outcomes = {name: outcomes(results[name], curves) for name, curves in eval_curves.items()}
  found = charts(grid, trials, trial_outcomes)
  if not found:
    return ''
  os.makedirs(folder)
  tables = []
  for chart in found:
    figure = draw(chart)
    figure.savefig(os.path.join(folder, f'{chart.name}.png'), dpi=100)
    tag = f'curves/{chart.metric}_vs_{chart.x_flag}' + ''.join(f'/{f}={v}' for f, v in chart.fixed)
    tables.append(table(chart))
    writer.write_images(0, {tag: summaries.figure_to_image(figure)})
    writer.write_texts(0, {tag: tables[-1]})
  return '\n\n'.join(tables)
