"""The tasks: one entry per `--task`, what the rest of the harness knows about it, without TensorFlow.

`config` (defaults, which flags apply, validation), `runs` (names),
`tasks.load_task` (the builder) and `metric_scalars` (its eval metrics' cards)
read a task only through its entry here. The task object itself
(`tasks.base.Task`) owns its data, loss, metrics and figures.

Adding a task: a builder(config) -> `tasks.base.Task` and one `TaskSpec` here.
"""

import dataclasses
from typing import Callable

# Images: a 128-unit input projection, LSTM(128), Adam 3e-3 with cosine decay
# and batch 128 reach >= 0.90 on Fashion-MNIST in 10 epochs (BUILD.md).
# sin2cos: the source tutorial's batch and rate, no projection. adding, copy:
# the sequence lengths of the papers (T = 100, 50), an epoch of generated data
# is 10,000 examples, and their recipes' settings (measured in the README):
# clipping at 1, 6,000 steps; copy's forget-gate bias of 4 keeps the gradient
# of a recall alive over the T + 10 steps back to its symbol (0.98^60 = 0.34,
# where a bias of 1 passes 0.73^60 = 7e-9).
_IMAGE_DEFAULTS = dict(batch_size=128, learning_rate=3e-3, epochs=10, input_units=128, seq_len=0)


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  """One task.

  Attributes:
    name: the `--task` value.
    builder: 'module:function', builder(config) -> `tasks.base.Task` (imported when called).
    defaults: the config defaults that depend on the task (every other default is in `Config`).
    flags: the config fields that apply to this task only: 'view' and 'permutation_seed' (images),
      'seq_len' (its sequence length is a flag; without it, --seq_len must stay 0).
    eval_metrics: what its evaluation returns, 'loss' first.
    io_sizes: --view -> (features per input step, outputs: classes, or outputs per step), what the task
      object's `num_features` and `num_outputs` will be, known before its data loads (--param_budget
      counts the model's parameters with them).
    min_seq_len: the shortest --seq_len it accepts (where 'seq_len' applies), and why.
    loss_is: the eval metric that equals the loss ('mse' of a regression): metrics.json keeps both,
      TensorBoard shows it once, as the loss.
  """
  name: str
  builder: str
  defaults: dict
  flags: tuple
  eval_metrics: tuple
  io_sizes: Callable[[str], tuple]
  min_seq_len: tuple = (1, '')
  loss_is: str = ''


_IMAGE_FLAGS = ('view', 'permutation_seed')


def _image_sizes(view):
  """28 x 28 images of 10 classes, read by rows (28 pixels per step) or by pixels (1)."""
  return 28 if view == 'rows' else 1, 10


TASKS = {
    'mnist': TaskSpec('mnist', 'harness.tasks.images:build', _IMAGE_DEFAULTS, _IMAGE_FLAGS, ('loss', 'accuracy'),
                      io_sizes=_image_sizes),
    'fashion_mnist': TaskSpec('fashion_mnist', 'harness.tasks.images:build', _IMAGE_DEFAULTS, _IMAGE_FLAGS,
                              ('loss', 'accuracy'), io_sizes=_image_sizes),
    'sin2cos': TaskSpec('sin2cos', 'harness.tasks.series:build_sin2cos',
                        dict(batch_size=50, learning_rate=6e-3, epochs=20, input_units=0, seq_len=20),
                        ('seq_len',), ('loss', 'mse'), loss_is='mse', io_sizes=lambda view: (1, 1)),
    'adding': TaskSpec('adding', 'harness.tasks.memory:build_adding',
                       dict(batch_size=50, learning_rate=1e-3, epochs=30, input_units=0, seq_len=100, clip_norm=1.0),
                       ('seq_len',), ('loss', 'mse'),
                       min_seq_len=(2, 'the adding problem needs T >= 2 (one marker in each half)'), loss_is='mse',
                       io_sizes=lambda view: (2, 1)),  # (value, marker) -> the sum.
    'copy': TaskSpec('copy', 'harness.tasks.memory:build_copy',
                     dict(batch_size=50, learning_rate=2e-3, epochs=30, input_units=0, seq_len=50, clip_norm=1.0,
                          forget_bias=4.0),
                     ('seq_len',), ('loss', 'accuracy'), io_sizes=lambda view: (10, 10)),  # One-hot classes in and out.
}

# TensorBoard's Time Series sorts card groups by tag, capitals before small
# letters: the loss and accuracy cards (train, eval and baseline) come before
# every diagnostic group.
METRICS_GROUP = 'Metrics'
HIGHER_IS_BETTER = ('accuracy',)  # Eval metrics that improve upward; the others (losses, errors) downward.


def metric_scalars(task, metrics):
  """{`Metrics/<name>`: value} of a `task`'s eval metrics (or baselines), one card per quantity: a metric that
  is the task's loss (its MSE) is shown as the loss."""
  return {f'{METRICS_GROUP}/{name}': value for name, value in metrics.items() if name != TASKS[task].loss_is}
