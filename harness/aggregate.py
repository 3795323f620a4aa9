"""A sweep's aggregates: every trial's final metrics, each group's mean ± sd over seeds, and TensorBoard views.

A group is the trials that differ only in seed. Written into the sweep folder,
recomputed from the trials' own files every time:

  results.csv            one row per trial: its grid values, seed, status, step and final metrics
  summary.csv, .md       one row per group: n finished, and mean ± sd (sample sd) of each final metric
  baseline/              for a task with a memoryless baseline, its eval metrics at the mean runs'
                         steps: one line in the Metrics cards (the trials write none)
  sweep/                 the summary as text and a custom-scalars layout: a margin chart per eval
                         metric (its own event folder: TensorBoard names a logdir's root run `.`)
  mean/<group>/          per eval step, the mean over the group's finished seeds of each eval
                         metric, mean_sd/<metric>, and mean_sd/<metric>.lower and .upper at mean
                         -/+ sd: the margin charts' band. Eval only: train means add lines, not
                         answers; no `Metrics/` tag, so the Metrics cards hold the trials only.

No HParams experiment is declared: TensorBoard builds the table from the
trials' own hparams and eval metrics (see `loop.DESCRIPTION_FOLDER`).
"""

import csv
import glob
import io
import json
import os
import shutil
import statistics

from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.util import tensor_util

from harness import loop
from harness import runfiles
from harness import runs
from harness import summaries
from harness import trials as trials_lib
from harness.errors import UserError

SUMMARY_FOLDER = 'sweep'
MEAN_FOLDER = 'mean'


def _read_scalars(run_dir):
  """{tag: {step: value}} of the run's `Metrics/` scalars (restarts purged as TensorBoard does)."""
  if not os.path.isdir(run_dir):
    return {}
  accumulator = event_accumulator.EventAccumulator(run_dir, size_guidance={event_accumulator.TENSORS: 0})
  accumulator.Reload()
  return {tag: {event.step: float(tensor_util.make_ndarray(event.tensor_proto))
                for event in accumulator.Tensors(tag)}
          for tag in accumulator.Tags()['tensors'] if tag.startswith(f'{loop.METRICS_GROUP}/')}


def _mean_sd(values):
  return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _write_table(path, header, rows):
  buffer = io.StringIO()
  writer = csv.writer(buffer, lineterminator='\n')
  writer.writerow(header)
  writer.writerows(rows)
  with open(path, 'w') as f:
    f.write(buffer.getvalue())


def aggregate(sweep_dir):
  """Recomputes every aggregate of the sweep in `sweep_dir`; returns the summary as a markdown table.

  Raises:
    UserError: `sweep_dir` holds no sweep (no sweep.json).
  """
  try:
    with open(os.path.join(sweep_dir, 'sweep.json')) as f:
      identity = json.load(f)
  except (OSError, ValueError):
    raise UserError(f'{sweep_dir}: not a sweep folder (no readable sweep.json)') from None
  grid, fixed = [(flag, values) for flag, values in identity['grid']], identity['fixed']
  trials = trials_lib.make_trials(grid, identity['seeds'])
  configs = trials_lib.check_trials(trials, fixed, sweep_dir)
  results = {trial.name: runfiles.read_metrics(os.path.join(sweep_dir, trial.name)) or {} for trial in trials}
  metric_names = sorted({k for m in results.values() for k in m if k.startswith('eval_')})
  flags_varied = [flag for flag, _ in grid]

  _write_table(os.path.join(sweep_dir, 'results.csv'),
               ['trial', *flags_varied, 'seed', 'status', 'step', *metric_names, 'train_seconds'],
               [[trial.name, *(value for _, value in trial.values), trial.seed,
                 results[trial.name].get('status', 'not started'), results[trial.name].get('step', ''),
                 *(results[trial.name].get(name, '') for name in metric_names),
                 results[trial.name].get('train_seconds', '')] for trial in trials])

  groups = {}
  for trial in trials:
    groups.setdefault(trial.group, []).append(trial)
  summary_rows, markdown = [], [
      '| ' + ' | '.join([*flags_varied, 'n', *(name[5:] for name in metric_names), 'train seconds']) + ' |',
      '|' + '---|' * (len(flags_varied) + len(metric_names) + 2)]
  for members in groups.values():
    done = [results[t.name] for t in members if runs.is_finished(results[t.name])]
    row, cells = [value for _, value in members[0].values], [value for _, value in members[0].values]
    row.append(len(done))
    cells.append(f'{len(done)}/{len(members)}')
    for name in metric_names + ['train_seconds']:
      values = [m[name] for m in done if name in m]
      mean, sd = _mean_sd(values) if values else (float('nan'), float('nan'))
      row += [mean, sd]
      cells.append(f'{mean:.4f} ± {sd:.4f}' if name != 'train_seconds' else f'{mean:.1f} ± {sd:.1f}')
    summary_rows.append(row)
    markdown.append('| ' + ' | '.join(map(str, cells)) + ' |')
  _write_table(os.path.join(sweep_dir, 'summary.csv'),
               [*flags_varied, 'n', *(f'{n}_{s}' for n in metric_names + ['train_seconds'] for s in ('mean', 'sd'))],
               summary_rows)
  markdown = '\n'.join(markdown)
  with open(os.path.join(sweep_dir, 'summary.md'), 'w') as f:
    f.write(f'Mean ± sd over seeds of the final metrics; n = finished trials.\n\n{markdown}\n')

  metrics, steps = _write_mean_runs(sweep_dir, groups, results)
  _write_baseline(sweep_dir, configs, results, steps)
  _write_summary(sweep_dir, markdown, metrics)
  return markdown


def band_tags(metric):
  """The mean runs' tags of an eval metric: (mean, mean - sd, mean + sd), told apart after the last '/'."""
  return f'mean_sd/{metric}', f'mean_sd/{metric}.lower', f'mean_sd/{metric}.upper'


def _write_mean_runs(sweep_dir, groups, results):
  """mean/<group>: per eval step, the mean and mean -/+ sd over the group's finished seeds.

  Returns the metrics and the steps written.
  """
  shutil.rmtree(os.path.join(sweep_dir, MEAN_FOLDER), ignore_errors=True)  # Derived: recomputed whole.
  metrics, steps = set(), set()
  for group, members in groups.items():
    series = [_read_scalars(os.path.join(sweep_dir, t.name, 'eval')) for t in members
              if runs.is_finished(results[t.name])]
    if not series:
      continue
    writer = summaries.SummaryWriter(os.path.join(sweep_dir, MEAN_FOLDER, group))
    for tag in set.intersection(*(set(s) for s in series)):
      metric = tag[len(loop.METRICS_GROUP) + 1:]
      metrics.add(metric)
      for step in sorted(set.intersection(*(set(s[tag]) for s in series))):
        steps.add(step)
        mean, sd = _mean_sd([s[tag][step] for s in series])
        writer.scalars(step, dict(zip(band_tags(metric), (mean, mean - sd, mean + sd))))
    writer.close()
  return sorted(metrics), sorted(steps)


def _write_baseline(sweep_dir, configs, results, steps):
  """baseline/: the memoryless baseline the trials recorded in metrics.json, flat over `steps`, as a trial's would be.

  None where the grid varies the task or its length (the baselines differ).
  """
  shutil.rmtree(os.path.join(sweep_dir, 'baseline'), ignore_errors=True)
  finished = [name for name, metrics in results.items() if runs.is_finished(metrics)]
  recorded = {tuple(sorted((k, v) for k, v in results[name].items() if k.startswith('baseline_'))) for name in finished}
  if len(recorded) != 1 or not steps:
    return
  baselines = {name[len('baseline_'):]: value for name, value in recorded.pop()}
  if not baselines:
    return
  writer = summaries.SummaryWriter(os.path.join(sweep_dir, 'baseline'))
  for step in steps:
    writer.scalars(step, loop.metric_scalars(configs[finished[0]], baselines))
  writer.close()


def _write_summary(sweep_dir, markdown, metrics):
  """sweep/: the summary text and the margin charts' layout (rewritten whole)."""
  shutil.rmtree(os.path.join(sweep_dir, SUMMARY_FOLDER), ignore_errors=True)
  for path in glob.glob(os.path.join(sweep_dir, 'events.out.tfevents.*.sweep')):  # Where older versions wrote them.
    os.remove(path)
  name = os.path.basename(os.path.normpath(sweep_dir))
  layout = layout_pb2.Layout(category=[layout_pb2.Category(
      title=f'sweep {name}: mean ± sd over seeds, one line per {MEAN_FOLDER}/<group> run (select them)',
      chart=[layout_pb2.Chart(title=f'eval {metric}: mean ± sd over seeds', margin=layout_pb2.MarginChartContent(
          series=[layout_pb2.MarginChartContent.Series(value=value, lower=lower, upper=upper)]))
             for metric in metrics for value, lower, upper in [band_tags(metric)]])])
  writer = summaries.SummaryWriter(os.path.join(sweep_dir, SUMMARY_FOLDER))
  writer.text(0, {'sweep/summary': markdown})
  writer.layout(layout)
  writer.close()
