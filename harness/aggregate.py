"""A sweep's aggregates: every trial's final metrics, each group's mean ± sd over seeds, and TensorBoard views.

A group is the trials that differ only in seed. Written into the sweep folder,
recomputed from the trials' own files every time:

  results.csv            one row per trial: its grid values, seed, status, step and final metrics
  summary.csv, .md       one row per group: n finished, and mean ± sd (sample sd) of each final metric
  events.*.sweep         at the sweep's root: the summary as text, the HParams experiment (every
                         varying hparam with the grid's values as its domain, every task's metrics)
                         and a custom-scalars layout of margin charts
  mean/<group>/{train,eval}/   per step, the mean over the group's seeds of each `Metrics/` scalar
                         (it overlays the trials in Time Series) and band/Metrics/<metric>, with
                         /lower and /upper at mean -/+ sd: the margin charts' band
  curves/, events.*.curves   with a numeric grid axis: each eval metric against it (`harness.curves`),
                         its tables appended to summary.md
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

from harness import curves
from harness import runfiles
from harness import runs
from harness import summaries
from harness import task_table
from harness import trials as trials_lib
from harness.errors import UserError

_SPLITS = ('train', 'eval')


def _read_scalars(run_dir):
  """{tag: {step: value}} of the run's `Metrics/` scalars (restarts purged as TensorBoard does)."""
  if not os.path.isdir(run_dir):
    return {}
  accumulator = event_accumulator.EventAccumulator(run_dir, size_guidance={event_accumulator.TENSORS: 0})
  accumulator.Reload()
  return {tag: {event.step: float(tensor_util.make_ndarray(event.tensor_proto))
                for event in accumulator.Tensors(tag)}
          for tag in accumulator.Tags()['tensors'] if tag.startswith(f'{task_table.METRICS_GROUP}/')}


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
  shown = _markdown_metrics(metric_names, results)
  summary_rows, markdown = [], [
      '| ' + ' | '.join([*flags_varied, 'n', *(name[5:] for name in shown), 'train seconds']) + ' |',
      '|' + '---|' * (len(flags_varied) + len(shown) + 2)]
  for members in groups.values():
    done = [results[t.name] for t in members if runs.is_finished(results[t.name])]
    row, cells = [value for _, value in members[0].values], [value for _, value in members[0].values]
    row.append(len(done))
    cells.append(f'{len(done)}/{len(members)}')
    for name in metric_names + ['train_seconds']:
      values = [m[name] for m in done if name in m]
      mean, sd = _mean_sd(values) if values else (float('nan'), float('nan'))
      row += [mean, sd]
      if name in shown:
        cells.append(f'{mean:.4f} ± {sd:.4f}')
      elif name == 'train_seconds':
        cells.append(f'{mean:.1f} ± {sd:.1f}')
    summary_rows.append(row)
    markdown.append('| ' + ' | '.join(map(str, cells)) + ' |')
  markdown += _baseline_rows(groups, results, len(flags_varied), shown)
  _write_table(os.path.join(sweep_dir, 'summary.csv'),
               [*flags_varied, 'n', *(f'{n}_{s}' for n in metric_names + ['train_seconds'] for s in ('mean', 'sd'))],
               summary_rows)
  markdown = '\n'.join(markdown)
  with open(os.path.join(sweep_dir, 'summary.md'), 'w') as f:
    f.write(f'Mean ± sd over seeds of the final test metrics; n = finished trials.\n\n{markdown}\n')

  tags = _write_mean_runs(sweep_dir, groups, results)
  _write_root(sweep_dir, grid, configs, markdown, tags)
  curve_tables = curves.write(sweep_dir, grid, trials, results, _eval_curves(sweep_dir, trials, results))
  if curve_tables:
    with open(os.path.join(sweep_dir, 'summary.md'), 'a') as f:
      f.write(f'\n{curve_tables}\n')
  return '\n\n'.join(filter(None, [markdown, curve_tables]))


def _eval_curves(sweep_dir, trials, results):
  """{trial name: {metric: {step: value}}} of the finished trials' eval `Metrics/` scalars."""
  prefix = f'{task_table.METRICS_GROUP}/'
  return {trial.name: {tag[len(prefix):]: series
                       for tag, series in _read_scalars(os.path.join(sweep_dir, trial.name, 'eval')).items()}
          for trial in trials if runs.is_finished(results[trial.name])}


def _markdown_metrics(metric_names, results):
  """The metrics summary.md shows: all but a loss that equals another metric in every trial (a regression's MSE)."""
  finished = [m for m in results.values() if runs.is_finished(m)]

  def equal(a, b):
    return bool(finished) and all(m.get(a) == m.get(b) for m in finished)

  return [name for name in metric_names
          if not (name == 'eval_loss' and any(equal(name, other) for other in metric_names if other != name))]


def _baseline_rows(groups, results, num_flags, shown):
  """summary.md rows of what a memoryless model scores (tasks that have one): one row, or one per group if they differ.

  A grid over --seq_len changes the copy task's baseline loss, for example.
  """
  baselines = {}
  for group, members in groups.items():
    saved = next((results[t.name] for t in members if runs.is_finished(results[t.name])), {})
    values = tuple(saved.get(f'baseline_{name[5:]}') for name in shown)
    if any(value is not None for value in values):
      baselines[group] = values
  labels = {'memoryless baseline': v for v in baselines.values()} if len(set(baselines.values())) == 1 else {
      f'baseline of {group}': v for group, v in baselines.items()}
  return ['| ' + ' | '.join([label, *[''] * num_flags, *('' if v is None else f'{v:.4f}' for v in values), '']) + ' |'
          for label, values in labels.items()]


def _write_mean_runs(sweep_dir, groups, results):
  """mean/<group>/{train,eval}: per step, the mean (and the band mean ± sd) over the group's finished seeds."""
  shutil.rmtree(os.path.join(sweep_dir, 'mean'), ignore_errors=True)  # Derived: recomputed whole.
  tags = set()
  for group, members in groups.items():
    done = [t for t in members if runs.is_finished(results[t.name])]
    for split in _SPLITS:
      series = [_read_scalars(os.path.join(sweep_dir, t.name, split)) for t in done]
      if not series:
        continue
      writer = summaries.SummaryWriter(os.path.join(sweep_dir, 'mean', group, split))
      for tag in set.intersection(*(set(s) for s in series)):
        tags.add(tag)
        for step in sorted(set.intersection(*(set(s[tag]) for s in series))):
          mean, sd = _mean_sd([s[tag][step] for s in series])
          writer.write_scalars(step, {tag: mean, f'band/{tag}': mean, f'band/{tag}/lower': mean - sd,
                                f'band/{tag}/upper': mean + sd})
      writer.close()
  return sorted(tags)


def _write_root(sweep_dir, grid, configs, markdown, tags):
  """The sweep root's text, HParams experiment and margin-chart layout (its own event files, rewritten)."""
  for path in glob.glob(os.path.join(sweep_dir, 'events.out.tfevents.*.sweep')):
    os.remove(path)
  hparams = {name: runs.hparams(config, {}) for name, config in configs.items()}
  domains = dict.fromkeys(runs.HPARAM_NAMES)
  for flag in [flag for flag, _ in grid] + ['seed']:
    if flag in domains:
      domains[flag] = sorted({h[flag] for h in hparams.values() if flag in h}, key=str)
  layout = layout_pb2.Layout(category=[layout_pb2.Category(
      title=f'sweep {os.path.basename(os.path.normpath(sweep_dir))}: mean ± sd over seeds (mean/<group> runs)',
      chart=[layout_pb2.Chart(title=tag, margin=layout_pb2.MarginChartContent(series=[
          layout_pb2.MarginChartContent.Series(value=f'band/{tag}', lower=f'band/{tag}/lower',
                                               upper=f'band/{tag}/upper')]))
             for tag in tags])])
  writer = summaries.SummaryWriter(sweep_dir, filename_suffix='.sweep')
  writer.write_texts(0, {'sweep/summary': markdown})
  writer.hparams_experiment(domains, runs.hparams_metrics())
  writer.layout(layout)
  writer.close()
