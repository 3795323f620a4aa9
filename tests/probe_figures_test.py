"""The probes' figures, drawn for a Time Series card: their size and their text's height in pixels, what they name."""

from absl.testing import absltest
import numpy as np

from harness import probe_figures


class FigureTest(absltest.TestCase):

  def assert_card_sized(self, figure, image):
    height, width = image.shape[1:3]
    self.assertEqual(width, 330)  # Shown at 230-400 px in Time Series: never scaled below ~0.7.
    self.assertLessEqual(height, 400)
    unused = set()  # Labels of ticks the locator made beyond the axis's limits: not drawn.
    for axis in [axis for ax in figure.axes for axis in (ax.xaxis, ax.yaxis)]:
      low, high = sorted(axis.get_view_interval())
      unused |= {id(label) for tick in axis.get_major_ticks() if not low <= tick.get_loc() <= high
                 for label in (tick.label1, tick.label2)}
    texts = [t for t in figure.findobj(lambda o: hasattr(o, 'get_fontsize') and hasattr(o, 'get_text'))
             if t.get_text() and t.get_visible() and id(t) not in unused]
    renderer = figure.canvas.get_renderer()
    for text in texts:
      self.assertGreaterEqual(text.get_fontsize() * figure.dpi / 72, 11, text.get_text())  # At 230 px: >= 7.7 px.
      box = text.get_window_extent(renderer)
      self.assertGreaterEqual(box.x0, -1, text.get_text())  # Nothing cut at the edges.
      self.assertLessEqual(box.x1, width + 1, text.get_text())
    return {t.get_text() for t in texts}

  def test_flow_figure_names_the_run_its_lines_and_the_faded_steps(self):
    figure = probe_figures.FlowFigure('lstm 128 · fm_lstm')
    for step in (0, 100, 200):
      images = figure.draw(step, {'layer_0': np.logspace(-9, 0, 28), 'input': np.logspace(-10, -1, 28)})
    texts = self.assert_card_sized(figure.figure, images['gradient_flow/norm_by_step'])
    self.assertIn('lstm 128 · fm_lstm\ngradient at step 200; faded: 0, 100', texts)
    self.assertContainsSubset({'layer_0 h_t', 'input x_t'}, texts)

  def test_gates_figure_draws_saturation_and_the_cell_on_its_own_axis(self):
    figure = probe_figures.GatesFigure('lstm 4x5 · adding/arch=lstm,seed=0')
    fractions = {f'layer_{i}/{gate}': np.linspace(0, 1, 6) for i in (0, 1)
                 for gate in ('input', 'forget', 'candidate', 'output')}
    images = figure.draw(3, {'saturated': fractions,
                             'magnitude': {'layer_0/cell_abs': np.full(6, 2.5), 'layer_1/cell_abs': np.ones(6)}})
    texts = self.assert_card_sized(figure.figure, images['gates/saturated_by_step'])
    self.assertIn('lstm 4x5 · adding/arch=lstm,seed=0\nsaturated fraction of each gate, step 3', texts)
    self.assertContainsSubset({'layer_0: saturated', 'layer_1: saturated', 'mean cell_abs (right)'}, texts)
    self.assertEqual(figure.axes[0].get_ylim(), (-0.03, 1.03))  # Fractions on their axis, |c| on the right one.
    self.assertGreaterEqual(figure.magnitude_axes['layer_0'].get_ylim()[1], 2.5)
    figure.draw(6, {'saturated': fractions,
                    'magnitude': {'layer_0/cell_abs': np.full(6, 9.0), 'layer_1/cell_abs': np.ones(6)}})
    self.assertGreaterEqual(figure.magnitude_axes['layer_0'].get_ylim()[1], 9.0)  # Rescaled at every probe.

  def test_gates_figure_of_the_linear_archs(self):
    figure = probe_figures.GatesFigure('mingru 8 · r')
    images = figure.draw(0, {'saturated': {'layer_0/update': np.zeros(5)},
                             'magnitude': {'layer_0/candidate': np.linspace(-0.5, 3.0, 5)}})
    texts = self.assert_card_sized(figure.figure, images['gates/saturated_by_step'])
    self.assertContainsSubset({'update', 'mean candidate (right)'}, texts)
    low, high = figure.magnitude_axes['layer_0'].get_ylim()
    self.assertLessEqual(low, -0.5)
    self.assertGreaterEqual(high, 3.0)
    lru = probe_figures.GatesFigure('lru 8 · r')  # Nothing saturates: no figure.
    self.assertEqual(lru.draw(0, {'saturated': {}, 'magnitude': {'layer_0/modulus': np.full(5, 0.9)}}), {})

  def test_timescale_figure_names_the_run_and_the_first_probe(self):
    figure = probe_figures.TimescaleFigure('lru 16x16 · adding_lru')
    self.assertEqual(figure.draw(0, {}), {})  # An arch without retention.
    first = {'timescales/layer_0': np.geomspace(2, 100, 16), 'timescales/layer_1': np.geomspace(3, 1000, 16)}
    figure.draw(0, first)
    images = figure.draw(30, {tag: steps * 2 for tag, steps in first.items()})
    texts = self.assert_card_sized(figure.figure, images['timescales/by_unit'])
    self.assertIn('lru 16x16 · adding_lru\nmemory per unit, step 30 (dashed: step 0)', texts)
    self.assertContainsSubset({'layer_0', 'layer_1'}, texts)
    self.assertGreaterEqual(figure.axes.get_ylim()[1], 2000)


if __name__ == '__main__':
  absltest.main()
