"""Dict-based TensorBoard writing under CLU's method names, and turning matplotlib figures into summary images.

One `SummaryWriter` per event folder (`<run>/train`, `<run>/eval`, ...):
`write_scalars`, `write_histograms`, `write_images`, `write_texts`,
`write_summaries` (raw tensors) and `write_hparams`, each taking
`(step, {tag: value})` as CLU's `MetricWriter` does.
Writers on non-chief workers are no-ops, so callers never branch on the role.
"""

import contextlib

from matplotlib import figure as figure_lib
from matplotlib.backends import backend_agg
import numpy as np
import tensorflow as tf
from tensorboard.compat.proto import event_pb2
from tensorboard.plugins.custom_scalar import summary as custom_scalar_summary
from tensorboard.plugins.histogram import metadata as histogram_metadata
from tensorboard.plugins.hparams import api as hparams_api
from tensorboard.plugins.hparams import api_pb2
from tensorboard.plugins.hparams import summary as hparams_summary

FLUSH_MILLIS = 10_000  # Events reach disk at least this often while training runs.
HISTOGRAM_BUCKETS = 30  # TensorBoard's default.


def histogram_buckets(values, bucket_count=HISTOGRAM_BUCKETS):
  """The [bucket_count, 3] float64 rows (left edge, right edge, count) TensorBoard's histogram op makes of `values`.

  Equal-width buckets from the minimum to the maximum, the maximum in the
  last; all in the last bucket when every value is the same; zeros for no
  values. Values that are not finite are left out (the op's edges would be NaN).
  """
  data = np.asarray(values, np.float64).ravel()
  data = data[np.isfinite(data)]
  if not data.size:
    return np.zeros((bucket_count, 3))
  low, high = data.min(), data.max()
  counts = np.zeros(bucket_count)
  if low == high:
    counts[-1] = data.size
    return np.stack([np.full(bucket_count, high), np.full(bucket_count, high), counts], axis=1)
  indices = np.minimum(np.floor((data - low) / ((high - low) / bucket_count)).astype(np.int64), bucket_count - 1)
  counts += np.bincount(indices, minlength=bucket_count)
  edges = np.linspace(low, high, bucket_count + 1)
  edges[-1] = high
  return np.stack([edges[:-1], edges[1:], counts], axis=1)


# Figures are drawn for the size they are shown at: a Time Series image card is
# 230-400 px wide (TensorBoard 2.21, 1600-px window), the legacy Images card
# shows them at their own size. 330 x 240 px at 100 dpi, text 8 pt (11 px).
DPI = 100
CARD_FIGSIZE = (3.3, 2.4)
FONT_SIZE = 8


def card_tag(group, layer_tag, quantity):
  """`<group>/<layer>.<quantity>` (`layers/layer_0.weight_norm`): all that tells a card from its neighbours is
  after the last '/', which Time Series keeps whole up to ~26 characters (it cuts a long title's middle)."""
  return f'{group}/{layer_tag}.{quantity}'


class SummaryWriter:
  """Writes scalars, histograms, images, text and hparams to one event folder."""

  def __init__(self, logdir, enabled=True):
    self.enabled = enabled
    self._writer = (tf.summary.create_file_writer(logdir, flush_millis=FLUSH_MILLIS)
                    if enabled else tf.summary.create_noop_writer())

  @contextlib.contextmanager
  def as_default(self, step):
    with self._writer.as_default(step=step):
      yield

  def write_scalars(self, step, values):
    """values: {tag: number}."""
    with self.as_default(step):
      for tag, value in values.items():
        tf.summary.scalar(tag, value)

  def write_histograms(self, step, arrays):
    """arrays: {tag: tensor or array of any shape}, bucketed here in numpy (`histogram_buckets`).

    TensorBoard's own op bucketed through a [values, 30] float64 one-hot in a
    tf.cond: ~0.3 s per probe of a small model, and tracing it for a probe's
    ~30 tags took ~9 s of every run's start-up on 2 cores.
    """
    metadata = histogram_metadata.create_summary_metadata(display_name=None, description=None)
    with self.as_default(step):
      for tag, value in arrays.items():
        tf.summary.write(tag, histogram_buckets(value), step=step, metadata=metadata)

  def write_summaries(self, step, tensors):
    """tensors: {tag: tensor}, written raw (no plugin), for tbparse, pandas or numpy to read back."""
    with self.as_default(step):
      for tag, value in tensors.items():
        tf.summary.write(tag, value, step=step)

  def write_images(self, step, images):
    """images: {tag: uint8 [k, height, width, channels]}."""
    with self.as_default(step):
      for tag, value in images.items():
        tf.summary.image(tag, value, max_outputs=len(value))

  def write_texts(self, step, texts):
    """texts: {tag: markdown string}."""
    with self.as_default(step):
      for tag, value in texts.items():
        tf.summary.text(tag, value)

  def write_hparams(self, values, trial_id):
    """Records this run's hyperparameters ({name: bool, int, float or str}); the table names it `trial_id`."""
    if not self.enabled:
      return
    with self.as_default(0):
      hparams_api.hparams(values, trial_id=trial_id)

  def session_end(self, status):
    """How the run ended, for the HParams table: 'finished', 'failed' or 'stopped' (resumable)."""
    if not self.enabled:
      return
    code = {'finished': api_pb2.STATUS_SUCCESS, 'failed': api_pb2.STATUS_FAILURE,
            'stopped': api_pb2.STATUS_RUNNING}[status]
    with self.as_default(0):
      tf.summary.experimental.write_raw_pb(hparams_summary.session_end_pb(code).SerializeToString(), step=0)

  def layout(self, layout):
    """A custom-scalars layout (`layout_pb2.Layout`): charts such as margin charts of mean ± sd."""
    if self.enabled:
      with self.as_default(0):
        tf.summary.experimental.write_raw_pb(custom_scalar_summary.pb(layout).SerializeToString(), step=0)

  def session_start(self, step):
    """Marks a (re)start at `step`: TensorBoard then drops events from step on that an earlier attempt wrote.

    TensorBoard ignores a run's first START and purges on later ones, so a
    resumed run's curves continue from its checkpoint instead of overlapping.
    """
    if not self.enabled:
      return
    event = event_pb2.Event(step=step, wall_time=0.0,
                            session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START))
    with self.as_default(step):
      tf.raw_ops.ImportEvent(writer=self._writer._resource,  # pylint: disable=protected-access
                             event=event.SerializeToString())

  def flush(self):
    self._writer.flush()

  def close(self):
    self._writer.close()


def subplots(nrows=1, ncols=1, figsize=None, **kwargs):
  """A figure on its own Agg canvas and its axes, as `plt.subplots` returns them.

  No pyplot: nothing global holds the figure (no display, no open-figure
  count), so a figure kept for a run is freed with it.
  """
  figure = figure_lib.Figure(figsize=figsize)
  backend_agg.FigureCanvasAgg(figure)
  return figure, figure.subplots(nrows, ncols, **kwargs)


def card(nrows=1, ncols=1, extra_height=0.0, **kwargs):
  """A figure to read at a Time Series card's size: CARD_FIGSIZE (`extra_height` inches taller), a
  [nrows, ncols] array of axes with ticks at FONT_SIZE, and its title (top left, empty: set it at each draw)."""
  width, height = CARD_FIGSIZE
  figure, axes = subplots(nrows, ncols, figsize=(width, height + extra_height), squeeze=False, **kwargs)
  title = figure.suptitle('', fontsize=FONT_SIZE, x=0.01, y=0.99, ha='left', va='top')
  for ax in axes.flat:
    ax.tick_params(labelsize=FONT_SIZE)
  return figure, axes, title


def titled(title, text):
  """A figure title: the run's `title` (arch, units, run) on the first line, then `text`."""
  return f'{title}\n{text}' if title else text


def card_legend(figure, handles, columns=3):
  """A legend in its own rows under the title, above every axes (none of it hides a line); returns its rows."""
  rows = -(-len(handles) // columns)
  top = 1 - (0.1 + 0.16 * 2) / figure.get_figheight()  # Under a two-line title.
  figure.legend(handles=handles, loc='upper left', bbox_to_anchor=(0.0, top), ncol=columns, fontsize=FONT_SIZE,
                frameon=False, handlelength=1.6, columnspacing=0.8, labelspacing=0.1, borderaxespad=0.1)
  return rows


def card_margins(figure, legend_rows=0, right_axis=False, title_lines=2):
  """Fixed margins (in inches, whatever the figure's size) for ticks, labels, the title and a legend.

  Fixed, not a tight layout: that costs more than a probe.
  """
  width, height = figure.get_size_inches()
  figure.subplots_adjust(left=0.62 / width, right=1 - (0.42 if right_axis else 0.12) / width, bottom=0.42 / height,
                         top=1 - (0.18 + 0.16 * (title_lines + legend_rows)) / height, hspace=0.12)


def figure_to_image(figure):
  """Renders a matplotlib figure to uint8 [1, height, width, 3] at DPI.

  Drawn straight to pixels: `tf.summary.image` encodes the PNG once (a PNG
  from `savefig` would be decoded and encoded again, at twice the cost).
  """
  figure.set_dpi(DPI)
  figure.canvas.draw()
  return np.asarray(figure.canvas.buffer_rgba())[None, ..., :3].copy()


def markdown_table(rows, header=('name', 'value')):
  """rows: iterable of (name, value) pairs. Returns a markdown table."""
  lines = [f'| {header[0]} | {header[1]} |', '|---|---|']
  lines += [f'| `{name}` | {value} |' for name, value in rows]
  return '\n'.join(lines)

