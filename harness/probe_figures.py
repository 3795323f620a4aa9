"""The probes' figures: one object per run and probe, built at its first draw, whose lines get new data at each probe.

Drawn for a Time Series card (`summaries.CARD_FIGSIZE`, text at `summaries.FONT_SIZE`), each titled
with the run (`arch units · run`) on its first line. Building the axes, ticks and legend anew at
every probe would cost more than the probe itself; fixed margins and legend places, likewise
(a tight layout or a 'best' legend costs more than the probe).
"""

import math

from matplotlib import ticker
import numpy as np

from harness import summaries

_FADED_PROBES = 4  # Earlier probe steps drawn faded in the gradient-flow image.
_GATE_STYLES = ('-', '--', ':', '-.')  # Lines that coincide (all at 0, say) stay told apart.


def _card(nrows=1, extra_height=0.0, **kwargs):
  """A card-sized figure of `nrows` axes in a column (`extra_height` inches taller) and its two-line title."""
  figure, axes, title = summaries.card(nrows, 1, extra_height, **kwargs)
  return figure, axes[:, 0], title


class FlowFigure:
  """log mean |dL/dh_t| against t, a line per layer (the inputs' |dL/dx_t| dashed); earlier probes faded."""

  def __init__(self, title):
    self.run_title = title
    self.figure, self.axes = None, None
    self.lines = []  # Per age (0 = newest), {tag: line}.
    self.history = []  # [(step, {tag: [T] numpy})], this process's probe steps.

  def _build(self, tags):
    self.figure, (axes,), self.title = _card()
    for age in range(_FADED_PROBES + 1):
      lines = {}
      for i, tag in enumerate(tags):
        label = 'input x_t' if tag == 'input' else f'{tag} h_t'
        lines[tag], = axes.semilogy([], [], color='black' if tag == 'input' else f'C{i}',
                                    linestyle='--' if tag == 'input' else '-', alpha=1.0 if age == 0 else 0.5 / age,
                                    linewidth=1.6 if age == 0 else 0.9, label=label if age == 0 else None,
                                    zorder=-age)
      self.lines.append(lines)
    axes.set_xlabel('time step t', fontsize=summaries.FONT_SIZE)
    axes.set_ylabel('mean |dL/d·|', fontsize=summaries.FONT_SIZE)
    axes.yaxis.set_major_locator(ticker.LogLocator(numticks=5))
    axes.yaxis.set_minor_locator(ticker.NullLocator())  # Decades suffice; minor ticks cost a third of the draw.
    rows = summaries.card_legend(self.figure, list(self.lines[0].values()))
    summaries.card_margins(self.figure, legend_rows=rows)
    self.axes = axes

  def draw(self, step, norms_by_tag):
    """norms_by_tag: {tag: [T] norms} at this probe. Returns {tag: uint8 [1, height, width, 3]}."""
    self.history.append((step, norms_by_tag))
    if self.figure is None:
      self._build(list(norms_by_tag))
    recent = self.history[::-1][:_FADED_PROBES + 1]
    for age, lines in enumerate(self.lines):
      for tag, line in lines.items():
        norms = recent[age][1][tag] if age < len(recent) else []
        line.set_data(np.arange(1, len(norms) + 1), np.maximum(norms, 1e-30))
    self.axes.relim()
    self.axes.autoscale_view()
    earlier = ', '.join(str(s) for s, _ in recent[1:][::-1])
    self.title.set_text(f'{self.run_title}\ngradient at step {step}' + (f'; faded: {earlier}' if earlier else ''))
    return {'gradient_flow/norm_by_step': summaries.figure_to_image(self.figure)}


class GatesFigure:
  """Each gate's saturated fraction against t, one panel per layer; the mean of each value without saturation
  (the LSTM's |c_t|, the minRNNs' candidate) on the panel's own right axis.

  Drawn where the arch has gates that saturate: the LRU has none (its |lambda| and phase are constant
  in t; `timescales` draws |lambda|).
  """

  def __init__(self, title):
    self.run_title = title
    self.figure, self.lines, self.magnitude_axes = None, {}, {}

  def _build(self, saturated_names, magnitude_names):
    layer_tags = sorted({name.split('/')[0] for name in saturated_names + magnitude_names})
    self.figure, self.axes, self.title = _card(len(layer_tags), 1.3 * (len(layer_tags) - 1), sharex=True)
    for ax, tag in zip(self.axes, layer_tags):
      names = [name for name in saturated_names if name.startswith(f'{tag}/')]
      for i, name in enumerate(names):
        self.lines[name], = ax.plot([], [], label=name.split('/')[1], color=f'C{i}',
                                    linestyle=_GATE_STYLES[i % len(_GATE_STYLES)], linewidth=1.4)
      ax.set_ylim(-0.03, 1.03)
      ax.set_ylabel(f'{tag}: saturated', fontsize=summaries.FONT_SIZE)
      handles = [self.lines[name] for name in names]
      magnitudes = [name for name in magnitude_names if name.startswith(f'{tag}/')]
      if magnitudes:
        right = self.magnitude_axes[tag] = ax.twinx()
        right.tick_params(labelsize=summaries.FONT_SIZE)
        for i, name in enumerate(magnitudes):
          self.lines[name], = right.plot([], [], color='black', linestyle=_GATE_STYLES[i % len(_GATE_STYLES)],
                                         linewidth=1.0, label=f'mean {name.split("/")[1]} (right)')
          handles.append(self.lines[name])
    self.axes[-1].set_xlabel('time step t', fontsize=summaries.FONT_SIZE)
    rows = summaries.card_legend(self.figure, handles)  # Every panel draws its arch's gates alike.
    summaries.card_margins(self.figure, legend_rows=rows, right_axis=bool(magnitude_names))

  def draw(self, step, by_step):
    """by_step: {'saturated': {'layer_0/forget': [T] fractions}, 'magnitude': {'layer_0/cell_abs': [T] means}}.

    Returns {tag: uint8 [1, height, width, 3]}, or {} where no gate saturates.
    """
    if not by_step['saturated']:
      return {}
    if self.figure is None:
      self._build(list(by_step['saturated']), list(by_step['magnitude']))
    for values in by_step.values():
      for name, series in values.items():
        self.lines[name].set_data(np.arange(1, len(series) + 1), series)
    for ax in self.axes:
      ax.relim()
      ax.autoscale_view(scaley=False)  # Fractions keep their 0..1 axis.
    for tag, right in self.magnitude_axes.items():  # Set, not autoscaled: a set limit stops autoscaling.
      series = np.concatenate([s for name, s in by_step['magnitude'].items() if name.startswith(f'{tag}/')])
      right.set_ylim(min(0.0, 1.05 * float(np.min(series))), max(1.05 * float(np.max(series)), 1e-3))
    self.title.set_text(f'{self.run_title}\nsaturated fraction of each gate, step {step}')
    return {'gates/saturated_by_step': summaries.figure_to_image(self.figure)}


class TimescaleFigure:
  """Each unit's memory 1 / (1 - r) steps against its rank, a line per layer: now solid, the first probe dashed."""

  def __init__(self, title):
    self.run_title = title
    self.figure, self.first, self.now = None, None, {}

  def _build(self, step, steps_by_tag):
    self.figure, (self.axes,), self.title = _card()
    self.first = step
    for i, (tag, steps) in enumerate(steps_by_tag.items()):
      self.axes.semilogy(np.arange(1, len(steps) + 1), steps, color=f'C{i}', linestyle='--', linewidth=0.9,
                         alpha=0.6)
      self.now[tag], = self.axes.semilogy([], [], color=f'C{i}', linewidth=1.6, label=tag.split('/')[-1])
    self.axes.set_xlabel('unit (sorted)', fontsize=summaries.FONT_SIZE)
    self.axes.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    self.axes.set_ylabel('1 / (1 - |a|)  (steps)', fontsize=summaries.FONT_SIZE)
    self.axes.yaxis.set_minor_locator(ticker.NullLocator())
    rows = summaries.card_legend(self.figure, list(self.now.values()))
    summaries.card_margins(self.figure, legend_rows=rows)

  def draw(self, step, steps_by_tag):
    """steps_by_tag: {'timescales/layer_0': [n] sorted}. Returns {tag: uint8 [1, height, width, 3]}."""
    if not steps_by_tag:
      return {}
    if self.figure is None:
      self._build(step, steps_by_tag)
    for tag, steps in steps_by_tag.items():
      self.now[tag].set_data(np.arange(1, len(steps) + 1), steps)
    self.axes.relim()
    self.axes.autoscale_view(scaley=False)
    # Whole decades: a log axis within one decade has no labelled tick to read the values against.
    low, high = self.axes.dataLim.intervaly
    low, high = 10.0 ** math.floor(math.log10(max(low, 1e-12))), 10.0 ** math.ceil(math.log10(max(high, 1e-12)))
    self.axes.set_ylim(low, high if high > low else 10 * low)
    self.title.set_text(f'{self.run_title}\nmemory per unit, step {step} (dashed: step {self.first})')
    return {'timescales/by_unit': summaries.figure_to_image(self.figure)}
