"""The PyTorch references compute the harness's blocks: the same weights give the same outputs (skipped without PyTorch)."""

from absl.testing import absltest
from absl.testing import parameterized
import keras
import numpy as np
import pytest
import tensorflow as tf

from harness import archs

torch = pytest.importorskip('torch')
from harness import torch_blocks  # pylint: disable=g-import-not-at-top,wrong-import-position


def _copy_dense(layer, linear):
  linear.weight.copy_(torch.from_numpy(layer.kernel.numpy().T))
  linear.bias.copy_(torch.from_numpy(layer.bias.numpy()))


def _copy_norm(layer, norm):
  norm.weight.copy_(torch.from_numpy(layer.gamma.numpy()))
  norm.bias.copy_(torch.from_numpy(layer.beta.numpy()))


def _copy_weights(layer, block):
  """The Keras block's weights into the PyTorch one."""
  with torch.no_grad():
    if layer.encoder is not None:
      _copy_dense(layer.encoder, block.encoder)
    _copy_norm(layer.norm, block.norm)
    if isinstance(block, torch_blocks.LRUBlock):
      for name in ('nu_log', 'theta_log', 'gamma_log', 'd'):
        getattr(block, name).copy_(torch.from_numpy(getattr(layer, name).numpy()))
      block.b.copy_(torch.from_numpy(np.stack([layer.b_re.numpy(), layer.b_im.numpy()])))
      block.c.copy_(torch.from_numpy(np.stack([layer.c_re.numpy(), layer.c_im.numpy()])))
      _copy_dense(layer.glu_value, block.glu_value)
      _copy_dense(layer.glu_gate, block.glu_gate)
      return
    _copy_dense(layer.projection, block.projection)
    _copy_norm(layer.mlp_norm, block.mlp[0])
    _copy_dense(layer.mlp_in, block.mlp[1])
    _copy_dense(layer.mlp_out, block.mlp[3])


class TorchBlocksTest(parameterized.TestCase):

  @parameterized.parameters('mingru', 'minlstm', 'lru')
  def test_same_weights_same_outputs(self, name):
    keras.utils.set_random_seed(0)
    arch = archs.ARCHS[name]
    options = {'dtype': keras.DTypePolicy('float32'), 'forget_bias': 1.0, 'lstm_kernel': 'auto',
               'mlp_expansion': 2}
    layer = arch.build_layer(6, 'recurrent_0', options)
    inputs = np.random.default_rng(1).normal(size=[3, 9, 4]).astype(np.float32)
    outputs, *state = layer(tf.constant(inputs))
    block = archs.resolve(arch.torch_layer)(4, 6, {'mlp_expansion': 2})
    _copy_weights(layer, block)
    with torch.no_grad():
      torch_outputs, torch_state = block(torch.from_numpy(inputs))
    np.testing.assert_allclose(torch_outputs.numpy(), outputs.numpy(), rtol=1e-4, atol=1e-4)
    expected_state = state[0].numpy() + (1j * state[1].numpy() if name == 'lru' else 0)
    np.testing.assert_allclose(torch_state.numpy(), expected_state, rtol=1e-4, atol=1e-4)


if __name__ == '__main__':
  absltest.main()
