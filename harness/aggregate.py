"""A sweep's aggregates: every trial's final metrics, each group's mean ± sd over seeds, and TensorBoard views.

A group is the trials that differ only in seed. Written into the sweep folder,
recomputed from the trials' own files every time:

  results.csv            one row per trial: its grid values, seed, status, step and final metrics
  summary.csv, .md       one row per group: n finished, and mean ± sd (sample sd) of each final metric
                         and of what each trial spent (`RUN_COLUMNS`: parameters, training time, steps,
                         examples, examples per second of training)
  baseline/              for a task with a memoryless baseline, its eval metrics at the mean runs'
                         steps: one line in the Metrics cards (the trials write none)
  sweep/                 the summary as text, a custom-scalars layout (a margin chart per eval
                         metric) and the curves as images and tables (`harness.curves`, with a numeric
                         grid axis; `harness.time_curves`); its own event folder: TensorBoard names a logdir's
                         root run `.`, and the sweep's root holds no events
  mean/<group>/          per eval step, the mean over the group's finished seeds of each eval
                         metric, mean_sd/<metric>, and mean_sd/<metric>.lower and .upper at mean
                         -/+ sd: the margin charts' band. Eval only: train means add lines, not
                         answers; no `Metrics/` tag, so the Metrics cards hold the trials only.
  mean_subset/<group>/   the same of the trials' evaluations on a subset of the test split
                         (their eval_subset/, before the last step), never averaged with the
                         whole split's
  curves/                with a numeric grid axis: each eval metric against it as PNG
                         (`harness.curves`); each eval metric against minutes of training, one line per
                         group (`harness.time_curves`: the comparison at equal time); their tables appended
                         to summary.md

No HParams experiment is declared: TensorBoard builds the table from the
trials' own hparams and eval metrics (see `loop.DESCRIPTION_FOLDER`).
"""

import csv
import glob
import io
import math
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
from harness import time_curves
from harness import trials as trials_lib
from harness.errors import UserError

SUMMARY_FOLDER = 'sweep'
MEAN_FOLDER = 'mean'
MEAN_SUBSET_FOLDER = 'mean_subset'


def _per_second(metrics):
  seconds = metrics.get('train_seconds')
  return metrics['examples'] / seconds if 'examples' in metrics and seconds else None


# What each finished trial spent, after the metrics in the summary: (summary.md header, summary.csv name,
# metrics.json -> value or None, the mean's format). The training time is the training calls' (metrics.json's
# train_seconds: what --time_budget counts, the first call's tracing included), so examples/s is per second of it.
RUN_COLUMNS = (
    ('params', 'params', lambda m: m.get('params'), '{:,.0f}'),
    ('train minutes', 'train_minutes', lambda m: m['train_seconds'] / 60 if 'train_seconds' in m else None,
     '{:.2f}'),
    ('steps', 'steps', lambda m: m.get('step'), '{:,.0f}'),
    ('examples', 'examples', lambda m: m.get('examples'), '{:,.0f}'),
    ('examples/s', 'examples_per_sec', _per_second, '{:,.0f}'),
)


def _read_scalars(run_dir, wanted=lambda tag: tag.startswith(f'{task_table.METRICS_GROUP}/')):
  """{tag: {step: value}} of the run's scalars whose tag is `wanted` (restarts purged as TensorBoard does); by
  default the `Metrics/` ones."""
  if not os.path.isdir(run_dir):
    return {}
  accumulator = event_accumulator.EventAccumulator(run_dir, size_guidance={event_accumulator.TENSORS: 0})
  accumulator.Reload()
  return {tag: {event.step: float(tensor_util.make_ndarray(event.tensor_proto))
                for event in accumulator.Tensors(tag)}
          for tag in accumulator.Tags()['tensors'] if wanted(tag)}


def _mean_sd(values):
  return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _mean_sd_of(values):
  """`_mean_sd`, or NaNs for no values (a group without a finished trial)."""
  return _mean_sd(values) if values else (float('nan'), float('nan'))


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
    UserError: `sweep_dir` holds no sweep (no sweep.json), or its sweep.json is damaged.
  """
  identity = runfiles.read_sweep(sweep_dir)
  if identity is None:
    raise UserError(f'{sweep_dir}: not a sweep folder (no sweep.json)')
  grid, fixed = [(flag, values) for flag, values in identity['grid']], identity['fixed']
  trials = trials_lib.make_trials(grid, identity['seeds'])
  configs = trials_lib.check_trials(trials, fixed, sweep_dir)
  results = {trial.name: runfiles.read_metrics(os.path.join(sweep_dir, trial.name)) or {} for trial in trials}
  metric_names = sorted({k for m in results.values() for k in m if k.startswith('eval_')})
  flags_varied = [flag for flag, _ in grid]
  _write_table(os.path.join(sweep_dir, 'results.csv'),
               ['trial', *flags_varied, 'seed', 'status', 'step', *metric_names, 'train_seconds', 'params',
                'examples'],
               [[trial.name, *(value for _, value in trial.values), trial.seed,
                 results[trial.name].get('status', 'not started'), results[trial.name].get('step', ''),
                 *(results[trial.name].get(name, '') for name in metric_names + ['train_seconds', 'params',
                                                                                   'examples'])]
                for trial in trials])
  groups = {}
  for trial in trials:
    groups.setdefault(trial.group, []).append(trial)
  markdown = _write_summary(sweep_dir, groups, results, flags_varied, metric_names)

  eval_curves = _eval_curves(sweep_dir, trials, results, configs)
  metrics, steps = _write_mean_runs(sweep_dir, MEAN_FOLDER, groups, eval_curves, configs)
  subset_curves = _eval_curves(sweep_dir, trials, results, configs, runs.EVAL_SUBSET_FOLDER)
  subset_metrics, subset_steps = _write_mean_runs(sweep_dir, MEAN_SUBSET_FOLDER, groups, subset_curves, configs)
  _write_baseline(sweep_dir, configs, results, sorted(set(steps) | set(subset_steps)))
  writer = _summary_writer(sweep_dir, markdown, sorted(set(metrics) | set(subset_metrics)))
  curve_tables = [curves.write(sweep_dir, grid, trials, results, eval_curves, writer),
                  time_curves.write(sweep_dir, grid, trials, results, eval_curves, subset_curves,
                                    _eval_minutes(sweep_dir, trials, results), writer)]
  curve_tables = '\n\n'.join(filter(None, curve_tables))
  writer.close()
  if curve_tables:
    with open(os.path.join(sweep_dir, 'summary.md'), 'a') as f:
      f.write(f'\n{curve_tables}\n')
  return '\n\n'.join(filter(None, [markdown, curve_tables]))


def _write_summary(sweep_dir, groups, results, flags_varied, metric_names):
  """summary.csv (mean and sd over seeds per group) and summary.md; returns the markdown table."""
  shown = _markdown_metrics(metric_names, results)
  summary_rows, markdown = [], [
      '| ' + ' | '.join([*flags_varied, 'n', *(name[5:] for name in shown), *(c[0] for c in RUN_COLUMNS)]) + ' |',
      '|' + '---|' * (len(flags_varied) + len(shown) + 1 + len(RUN_COLUMNS))]
  for members in groups.values():
    done = [results[t.name] for t in members if runs.is_finished(results[t.name])]
    row, cells = [value for _, value in members[0].values], [value for _, value in members[0].values]
    row.append(len(done))
    cells.append(f'{len(done)}/{len(members)}')
    for name in metric_names:
      mean, sd = _mean_sd_of([m[name] for m in done if name in m])
      row += [mean, sd]
      if name in shown:
        cells.append('—' if math.isnan(mean) else f'{mean:.4f} ± {sd:.4f}')  # No finished seed: no figure.
    for _, _, value, form in RUN_COLUMNS:
      mean, sd = _mean_sd_of([v for v in map(value, done) if v is not None])
      row += [mean, sd]
      # Equal over the seeds (the parameters; the steps of a step budget): the value alone.
      cells.append('—' if math.isnan(mean) else form.format(mean) + ('' if not sd else f' ± {form.format(sd)}'))
    summary_rows.append(row)
    markdown.append('| ' + ' | '.join(map(str, cells)) + ' |')
  markdown += _baseline_rows(groups, results, len(flags_varied), shown)
  _write_table(os.path.join(sweep_dir, 'summary.csv'),
               [*flags_varied, 'n', *(f'{n}_{s}' for n in metric_names + [c[1] for c in RUN_COLUMNS]
                                      for s in ('mean', 'sd'))],
               summary_rows)
  markdown = '\n'.join(markdown)
  with open(os.path.join(sweep_dir, 'summary.md'), 'w') as f:
    f.write('Mean ± sd over seeds of the final test metrics, then of what each trial spent: its parameters, '
            'minutes of training steps, steps, examples and examples per second of training (the value alone '
            f'where the seeds agree); n = finished trials.\n\n{markdown}\n')
  return markdown


def _eval_curves(sweep_dir, trials, results, configs, folder='eval'):
  """{trial name: {metric: {step: value}}} of the finished trials' `Metrics/` scalars in their event `folder` (eval
  or eval_subset), a metric that is the loss (`task_table.TaskSpec.loss_is`: written once, as the loss) under its own
  name too, as metrics.json has it."""
  prefix, found = f'{task_table.METRICS_GROUP}/', {}
  for trial in trials:
    if runs.is_finished(results[trial.name]):
      scalars = _read_scalars(os.path.join(sweep_dir, trial.name, folder))
      found[trial.name] = {tag[len(prefix):]: series for tag, series in scalars.items()}
      same = task_table.TASKS[configs[trial.name].task].loss_is
      if same and 'loss' in found[trial.name]:
        found[trial.name][same] = found[trial.name]['loss']
  return found


def _eval_minutes(sweep_dir, trials, results):
  """{trial name: {step: training minutes}} of the finished trials' evaluations (eval/ and eval_subset/): where
  `harness.time_curves` puts their points."""
  found = {}
  for trial in trials:
    if runs.is_finished(results[trial.name]):
      for folder in ('eval', runs.EVAL_SUBSET_FOLDER):
        scalars = _read_scalars(os.path.join(sweep_dir, trial.name, folder),
                                lambda tag: tag == time_curves.MINUTES_TAG)
        found.setdefault(trial.name, {}).update(scalars.get(time_curves.MINUTES_TAG, {}))
  return found


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
  return ['| ' + ' | '.join([label, *[''] * num_flags, *('' if v is None else f'{v:.4f}' for v in values),
                             *[''] * len(RUN_COLUMNS)]) + ' |' for label, values in labels.items()]


def band_tags(metric):
  """The mean runs' tags of an eval metric: (mean, mean - sd, mean + sd), told apart after the last '/'."""
  return f'mean_sd/{metric}', f'mean_sd/{metric}.lower', f'mean_sd/{metric}.upper'


def _write_mean_runs(sweep_dir, mean_folder, groups, eval_curves, configs):
  """<mean_folder>/<group>: per eval step, the mean and mean -/+ sd over the group's finished seeds (`_eval_curves`),
  of each metric TensorBoard shows (not one that is the loss); none for a group without curves.

  Returns the metrics and the steps written.
  """
  shutil.rmtree(os.path.join(sweep_dir, mean_folder), ignore_errors=True)  # Derived: recomputed whole.
  metrics, steps = set(), set()
  for group, members in groups.items():
    series = [eval_curves[t.name] for t in members if eval_curves.get(t.name)]
    if not series:
      continue
    writer = summaries.SummaryWriter(os.path.join(sweep_dir, mean_folder, group))
    same = task_table.TASKS[configs[members[0].name].task].loss_is
    for metric in set.intersection(*(set(s) for s in series)) - {same}:
      metrics.add(metric)
      for step in sorted(set.intersection(*(set(s[metric]) for s in series))):
        steps.add(step)
        mean, sd = _mean_sd([s[metric][step] for s in series])
        writer.write_scalars(step, dict(zip(band_tags(metric), (mean, mean - sd, mean + sd))))
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
    writer.write_scalars(step, task_table.metric_scalars(configs[finished[0]].task, baselines))
  writer.close()


def _summary_writer(sweep_dir, markdown, metrics):
  """sweep/, made anew: the summary text and the margin charts' layout written; returns its open writer."""
  shutil.rmtree(os.path.join(sweep_dir, SUMMARY_FOLDER), ignore_errors=True)
  for path in glob.glob(os.path.join(sweep_dir, 'events.out.tfevents.*')):  # Where older versions wrote them.
    os.remove(path)
  name = os.path.basename(os.path.normpath(sweep_dir))
  layout = layout_pb2.Layout(category=[layout_pb2.Category(
      title=f'sweep {name}: mean ± sd over seeds, one line per {MEAN_FOLDER}/<group> run (select them)',
      chart=[layout_pb2.Chart(title=f'eval {metric}: mean ± sd over seeds', margin=layout_pb2.MarginChartContent(
          series=[layout_pb2.MarginChartContent.Series(value=value, lower=lower, upper=upper)]))
             for metric in metrics for value, lower, upper in [band_tags(metric)]])])
  writer = summaries.SummaryWriter(os.path.join(sweep_dir, SUMMARY_FOLDER))
  writer.write_texts(0, {'sweep/summary': markdown})
  writer.layout(layout)
  return writer
