"""Training examples/s of one recurrent layer + head: the linear recurrent blocks against the harness's LSTMs.

  python tools/linear_throughput.py --units=128 --batch=128 --steps=784 --precision=float32

Each contender is one layer of `units` over [batch, steps, 1] inputs (a pixel
sequence), a Dense(10) head on the last step, softmax cross-entropy and Adam,
one compiled train step (forward + backward + update). Rounds interleave the
contenders; prints per contender the median examples/s and its min-max.
"""

import statistics
import time

from absl import app
from absl import flags
import keras
import tensorflow as tf

from harness import layers
from harness import linear_layers

_UNITS = flags.DEFINE_integer('units', 128, 'Width of the recurrent layer.')
_BATCH = flags.DEFINE_integer('batch', 128, 'Batch size.')
_STEPS = flags.DEFINE_integer('steps', 784, 'Sequence length T.')
_PRECISION = flags.DEFINE_enum('precision', 'float32', ['float32', 'mixed_bfloat16'], 'Keras dtype policy.')
_ROUNDS = flags.DEFINE_integer('rounds', 3, 'Interleaved rounds.')
_CALLS = flags.DEFINE_integer('calls', 3, 'Train steps per contender and round.')
_CONTENDERS = flags.DEFINE_list('contenders', ['fused_lstm', 'keras_lstm', 'mingru', 'minlstm', 'lru'],
                                'fused_lstm, keras_lstm, or a linear arch (optionally name:mlp_expansion).')


def _layer(name, units, dtype):
  if name in ('fused_lstm', 'keras_lstm'):
    layer_class = layers.FusedLSTM if name == 'fused_lstm' else keras.layers.LSTM
    return layer_class(units, return_sequences=True, return_state=True, dtype=dtype)
  arch, _, expansion = name.partition(':')
  options = {'dtype': dtype, **({'mlp_expansion': int(expansion)} if expansion else {})}
  return linear_layers.BUILDERS[arch](units, 'recurrent_0', options)


def _train_step(name, units, dtype):
  layer = _layer(name, units, dtype)
  head = keras.layers.Dense(10, dtype='float32')
  optimizer = keras.optimizers.Adam(1e-3)

  @tf.function
  def step(inputs, labels):
    with tf.GradientTape() as tape:
      logits = head(layer(inputs)[0][:, -1])
      loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
    variables = layer.trainable_variables + head.trainable_variables
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return loss

  return step


def main(argv):
  del argv
  dtype = keras.DTypePolicy(_PRECISION.value)
  inputs = tf.random.uniform([_BATCH.value, _STEPS.value, 1])
  labels = tf.random.uniform([_BATCH.value], 0, 10, tf.int32)
  steps = {name: _train_step(name, _UNITS.value, dtype) for name in _CONTENDERS.value}
  for step in steps.values():
    step(inputs, labels).numpy()
  rates = {name: [] for name in steps}
  for _ in range(_ROUNDS.value):
    for name, step in steps.items():
      start = time.perf_counter()
      for _ in range(_CALLS.value):
        step(inputs, labels).numpy()
      rates[name].append(_CALLS.value * _BATCH.value / (time.perf_counter() - start))
  print(f'units={_UNITS.value} batch={_BATCH.value} T={_STEPS.value} {_PRECISION.value}')
  for name, samples in rates.items():
    print(f'{name:>14} {statistics.median(samples):9.1f} examples/s  ({min(samples):.1f}-{max(samples):.1f})')


if __name__ == '__main__':
  app.run(main)
