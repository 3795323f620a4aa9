"""The probes' figures, drawn for a Time Series card: their size and their text's height in pixels, what they name."""

from absl.testing import absltest
import numpy as np

from harness import probe_figures
from tests import testing


class FigureTest(absltest.TestCase):

  def assert_card_sized(self, figure, image):
    return testing.assert_card_sized(self, figure, image)

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

  def test_timescale_axis_spans_whole_decades_so_its_ticks_are_labelled(self):
    figure = probe_figures.TimescaleFigure('gru 8 · r')
    images = figure.draw(0, {'timescales/layer_0': np.linspace(2.0, 5.0, 8)})
    self.assertEqual(figure.axes.get_ylim(), (1.0, 10.0))
    texts = self.assert_card_sized(figure.figure, images['timescales/by_unit'])
    self.assertTrue({'$\\mathdefault{10^{0}}$', '$\\mathdefault{10^{1}}$'} & texts, texts)


if __name__ == '__main__':
  absltest.main()
