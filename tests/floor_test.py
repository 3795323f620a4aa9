"""harness.floor: a step's FLOPs and bytes counted from the model, and the floor from the rates."""

from absl.testing import absltest
import numpy as np

from harness import floor
from harness import models
from tests import testing


def _model(**overrides):
  config = testing.tiny_config(**overrides)
  return models.build_model(config, num_outputs=3, per_step_outputs=False, num_features=2)


class StepCostTest(absltest.TestCase):

  def test_an_lstm_counts_its_two_per_step_products_and_the_head_once(self):
    cost = floor.step_cost(_model(arch='lstm', units=(4,), input_units=0), batch=5, steps=7)
    # kernel [2, 16] and recurrent kernel [4, 16] at every step, the head [4, 3] on the last one.
    self.assertEqual(cost.flops, 6 * 5 * (7 * (2 * 16 + 4 * 16) + 4 * 3))
    self.assertEqual(cost.bytes, 4 * 5 * 7 * ((3 * 2 + 2 * 16) + (3 * 4 + 2 * 16)))
    self.assertEqual(cost.largest_product, (4, 16))

  def test_linear_archs_add_their_scan_passes(self):
    for arch, passes, value_bytes in (('mingru', 8, 4), ('lru', 6, 8)):
      model = _model(arch=arch, units=(4,), input_units=0, mlp_expansion=0)
      matrices = [tuple(v.shape) for v in model.trainable_variables
                  if len(v.shape) == 2 and all(v is not w for w in model.head.trainable_variables)]
      cost = floor.step_cost(model, batch=5, steps=7)
      products = 4 * 5 * 7 * sum(3 * i + 2 * o for i, o in matrices)
      self.assertEqual(cost.bytes, products + passes * 7 * 5 * 4 * value_bytes, arch)
      self.assertEqual(cost.flops, 6 * 5 * (7 * sum(i * o for i, o in matrices) + 4 * 3), arch)


class FloorReportTest(absltest.TestCase):

  def test_floor_is_the_products_plus_the_memory_time(self):
    cost = floor.StepCost(flops=2e9, bytes=1e9, largest_product=(128, 512))
    rates = floor.Rates(product_flops_per_sec=1e11, bytes_per_sec=1e10, product_shape=(8, 128, 512), dtype='float32')
    report = floor.floor_report(cost, rates, batch=64)
    self.assertEqual(report['floor_ms_per_step'], {'products': 20.0, 'memory': 100.0})
    np.testing.assert_allclose(report['floor_examples_per_sec'], 64 / 0.12)

  def test_measured_rates_are_positive_and_at_the_asked_shape(self):
    rates = floor.measure_rates(rows=256, product=(16, 32))
    self.assertEqual(rates.product_shape, (256, 16, 32))
    self.assertGreater(rates.product_flops_per_sec, 1e6)
    self.assertGreater(rates.bytes_per_sec, 1e7)


if __name__ == '__main__':
  absltest.main()
