"""The train state and the step functions: train, several trains in one call, eval.

Steps are built apart from the loop, so each can be tested alone. They run
under any `tf.distribute` strategy: the default one for a single device,
Mirrored for several local devices, MultiWorkerMirrored for several hosts.
Global step = `TrainState.global_step`: the number of train steps run. It is
`optimizer.iterations` too, except under float16 loss scaling, which skips the
update of a step whose scaled gradients overflow.
"""

import dataclasses
import math
import typing

import keras
import numpy as np
import tensorflow as tf

from harness import config as config_lib
from harness import models
from harness import runtime
from harness import summaries
from harness import task_table
from harness.errors import UserError

OPTIMIZERS = {
    'adam': keras.optimizers.Adam,
    'sgd': keras.optimizers.SGD,
    'rmsprop': keras.optimizers.RMSprop,
}
LAYER_DYNAMICS = 'layer_dynamics'  # The probe that runs in the train step.


class TrainMetrics:
  """The train step's running sums: their names, their update in the graph, and their means as summary tags.

  Sums since the last read: the loss (the step's mean), examples, steps, the
  global gradient norm, clipped steps, the task's train metrics (summed over
  examples) and, with the layer_dynamics probe, each layer's gradient norm and
  update-to-weight ratio |dw| / |w|. Nothing is read back to the host until
  `read_and_reset`.
  """

  def __init__(self, model, optimizer, task, config):
    self.model, self.optimizer = model, optimizer
    self.task_metrics = tuple(task.train_metric_names)
    self.clip_norm, self.batch_size = config.clip_norm, config.batch_size
    self.layer_tags = ([tag for tag, _ in model.named_layers()] if LAYER_DYNAMICS in config_lib.probe_names(config)
                       else [])
    names = ('loss', 'examples', 'steps', 'grad_norm', 'clipped') + self.task_metrics + tuple(
        f'{kind}/{tag}' for tag in self.layer_tags for kind in ('layer_grad_norm', 'layer_update_ratio'))
    self.sums = {name: tf.Variable(0.0, trainable=False, name=f'sum_{name.replace("/", "_")}') for name in names}
    self._read_and_reset = tf.function(self._read_and_reset_graph)  # One call, not two ops per sum.

  def update(self, loss, metrics, grad_norm, dynamics):
    """In the step's graph: adds one step's loss, summed `metrics`, gradient norm and per-layer `dynamics`."""
    sums = self.sums
    for name, value in dynamics.items():
      sums[name].assign_add(value)
    sums['loss'].assign_add(loss)
    for name, value in metrics.items():
      sums[name].assign_add(value)
    sums['examples'].assign_add(float(self.batch_size))
    sums['steps'].assign_add(1.0)
    sums['grad_norm'].assign_add(grad_norm)
    if self.clip_norm > 0:
      sums['clipped'].assign_add(tf.cast(grad_norm > self.clip_norm, tf.float32))

  def _read_and_reset_graph(self):
    values = {name: variable.read_value() for name, variable in self.sums.items()}
    with tf.control_dependencies(list(values.values())):
      for variable in self.sums.values():
        variable.assign(0.0)
    return values, self.optimizer.learning_rate

  def weight_norms(self):
    """{tag: global norm of each layer's weights} (layer_dynamics; empty without it)."""
    if not self.layer_tags:
      return {}
    return {summaries.card_tag('layers', tag, 'weight_norm'):
            float(tf.linalg.global_norm(layer.trainable_variables)) for tag, layer in self.model.named_layers()}

  def read_and_reset(self):
    """{tag: mean since the last read}, the sums zeroed in the same call; tags under METRICS_GROUP first."""
    values, learning_rate = self._read_and_reset()
    sums = {name: float(value) for name, value in values.items()}
    means = {f'{task_table.METRICS_GROUP}/loss': sums['loss'] / sums['steps']}
    means.update({f'{task_table.METRICS_GROUP}/{name}': sums[name] / sums['examples'] for name in self.task_metrics})
    means['optimizer/grad_norm'] = sums['grad_norm'] / sums['steps']
    means['optimizer/learning_rate'] = float(learning_rate)
    if self.clip_norm > 0:
      means['optimizer/clipped_fraction'] = sums['clipped'] / sums['steps']
    means.update(self.weight_norms())
    for tag in self.layer_tags:
      means[summaries.card_tag('layers', tag, 'grad_norm')] = sums[f'layer_grad_norm/{tag}'] / sums['steps']
      means[summaries.card_tag('layers', tag, 'update_ratio')] = sums[f'layer_update_ratio/{tag}'] / sums['steps']
    return means


class SubBatch(typing.NamedTuple):
  """What one sub-batch's forward and backward pass gives the step."""
  loss: tf.Tensor  # Its share of the batch's mean loss.
  gradients: list  # Per trainable variable.
  metrics: dict  # {train metric: sum over its examples}.
  final_state: list  # Per layer, its state tensors [rows, n].


@dataclasses.dataclass
class TrainState:
  """Everything a step touches. `carried_state`, per layer, holds [batch, units] variables when stateful."""
  model: models.SequenceModel
  optimizer: keras.optimizers.Optimizer
  carried_state: list
  metrics: TrainMetrics  # Running sums since the last summary.
  first_nonfinite_step: tf.Variable  # 0 until a step's loss is not finite.
  train_seconds: tf.Variable  # float64: seconds spent in training calls, over every start of the run.
  global_step: tf.Variable  # int64: train steps run.
  # float32 in [0, 1]: under --time_budget, the fraction of the run done before the current step, which the
  # learning rate follows (`budget_progress` sets it); derived from the two above, so never checkpointed.
  progress: tf.Variable

  @property
  def step(self):
    return int(self.global_step.numpy())

  def checkpoint(self):
    """What a checkpoint holds: weights, optimizer slots, the step, carried state, training time."""
    return tf.train.Checkpoint(model=self.model, optimizer=self.optimizer, carried_state=self.carried_state,
                               train_seconds=self.train_seconds, global_step=self.global_step)


class ProgressCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
  """Cosine decay from `rate` to 0 as `progress` (a float32 variable) goes from 0 to 1, whatever the step."""

  def __init__(self, rate, progress):
    self.rate, self.progress = rate, progress

  def __call__(self, step):
    del step  # A time budget's schedule follows the time spent; the steps it takes are not known in advance.
    return self.rate * 0.5 * (1.0 + tf.cos(math.pi * self.progress))


def learning_rate_schedule(config, total_steps, progress):
  """The learning rate: a constant, or a cosine decay from config.learning_rate to 0 at total_steps; under
  --time_budget, to 0 as `progress` (`TrainState.progress`) reaches 1."""
  if config.lr_schedule != 'cosine':
    return config.learning_rate
  if config.time_budget:
    return ProgressCosineDecay(config.learning_rate, progress)
  return keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=total_steps)


def create_train_state(config, task, strategy, total_steps):
  """Builds model, optimizer (its slots too) and metric variables inside `strategy.scope()`."""
  with strategy.scope():
    model = models.build_model(config, task.num_outputs, task.per_step_outputs, task.num_features)
    progress = tf.Variable(0.0, trainable=False, name='progress')
    optimizer = OPTIMIZERS[config.optimizer](learning_rate=learning_rate_schedule(config, total_steps, progress))
    if config.precision == 'mixed_float16':
      optimizer = keras.optimizers.LossScaleOptimizer(optimizer)  # float16 gradients underflow without it.
    optimizer.build(model.trainable_variables)  # Slots now, so the traced step creates no variables.
    carried_state = []
    if config.stateful:
      carried_state = [[tf.Variable(tf.zeros([config.batch_size, size]), trainable=False,
                                    name=f'carried_state_{i}_{j}') for j, size in enumerate(sizes)]
                       for i, sizes in enumerate(model.arch.state_sizes(n) for n in config.units)]
    metrics = TrainMetrics(model, optimizer, task, config)
    first_nonfinite_step = tf.Variable(0, dtype=tf.int64, trainable=False, name='first_nonfinite_step')
    train_seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False, name='train_seconds')
    global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name='global_step')
  return TrainState(model, optimizer, carried_state, metrics, first_nonfinite_step, train_seconds, global_step,
                    progress)


def check_batch(config, strategy):
  """The global batch splits evenly over the replicas, and each replica's over its sub-batches; returns those.

  Raises:
    UserError: naming --batch_size or --batch_splits.
  """
  replicas = strategy.num_replicas_in_sync
  if config.batch_size % replicas:
    raise UserError(f'--batch_size={config.batch_size}: must divide evenly over {replicas} replicas')
  splits = runtime.batch_splits(config)
  if config.batch_size // replicas % splits:
    raise UserError(f'--batch_splits={splits}: must divide the per-replica batch of {config.batch_size // replicas}')
  return splits


def make_train_step(state, task, config, strategy):
  """Returns train_step(iterator) -> the global step after it: one update from the next batch, under `strategy`.

  The loss is averaged over the global batch; gradients are summed over
  sub-batches (`runtime.batch_splits`) and replicas, their global norm is taken
  before clipping by `config.clip_norm`, and the running sums of
  `state.metrics` are updated. Nothing is read back to the host: the loop
  reads the sums only at summary steps.
  """
  # Over 60 lines: the closures below share what the traced step reads (the model, the variables'
  # layer groups, the splits); apart, each would take them all as arguments.
  model, optimizer = state.model, state.optimizer
  replicas = strategy.num_replicas_in_sync
  variables = model.trainable_variables
  # Per layer, the positions of its variables: for gradient norms and update ratios by layer.
  layer_groups = [(tag, [i for i, v in enumerate(variables) if any(v is w for w in layer.trainable_variables)])
                  for tag, layer in model.named_layers() if tag in state.metrics.layer_tags]

  # float16: gradients of the loss times a dynamic scale, which the optimizer
  # divides out again (skipping the update of a step whose gradients overflow).
  loss_scaling = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
  splits = check_batch(config, strategy)

  def split_rows(tensor):
    return tf.split(tensor, splits) if splits > 1 else [tensor]

  def sub_batch_gradients(inputs, targets, initial):
    """One sub-batch's `SubBatch`: loss share, gradients, summed train metrics, final state."""
    with tf.GradientTape() as tape:
      outputs, final_state = model(inputs, initial_state=initial, training=True)
      with tf.name_scope('loss'):
        losses = task.per_example_loss(targets, outputs)
        loss = tf.nn.compute_average_loss(losses, global_batch_size=config.batch_size)
      scaled_loss = optimizer.scale_loss(loss) if loss_scaling else loss
    with tf.name_scope('metrics'):
      metrics = {name: tf.reduce_sum(value) for name, value in task.train_metrics(targets, outputs).items()}
    return SubBatch(loss, tape.gradient(scaled_loss, variables), metrics, final_state)

  if models.xla_compiles(model):
    # BUILD.md (Benchmark, the linear recurrences): the elementwise passes 2-9x faster.
    sub_batch_gradients = tf.function(sub_batch_gradients, jit_compile=True)

  def replica_step(inputs, targets):
    # Sub-batches have no op in common until their gradients are summed, so
    # their forward and backward passes run in parallel, one per CPU core; the
    # sum is the whole batch's gradient, as one pass would give it.
    initial = [None] * splits
    if state.carried_state:
      rows = [[split_rows(v.value()) for v in layer] for layer in state.carried_state]
      initial = [[[tensor_parts[p] for tensor_parts in layer] for layer in rows] for p in range(splits)]
    with tf.name_scope('split_into_sub_batches'):
      sub_batches = list(zip(split_rows(inputs), split_rows(targets), initial))
    parts = []
    for k, (x, y, s) in enumerate(sub_batches):
      with tf.name_scope(f'sub_batch_{k}'):
        parts.append(sub_batch_gradients(x, y, s))
    with tf.name_scope('optimizer'):
      loss = tf.add_n([p.loss for p in parts])
      grads = [tf.add_n(list(g)) for g in zip(*[p.gradients for p in parts])]
      if replicas > 1:
        # The true global gradient, to measure (and clip by) its norm. Keras sums
        # what it is given over replicas once more, hence the division.
        grads = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, grads)
      if loss_scaling:
        grads = [g / optimizer.dynamic_scale for g in grads]
      grad_norm = tf.linalg.global_norm(grads)
      dynamics = {f'layer_grad_norm/{tag}': tf.linalg.global_norm([grads[i] for i in group])
                  for tag, group in layer_groups}
      before = [[tf.identity(variables[i]) for i in group] for _, group in layer_groups]
      if config.clip_norm > 0:
        grads, _ = tf.clip_by_global_norm(grads, config.clip_norm, use_norm=grad_norm)
      if loss_scaling:
        grads = [g * optimizer.dynamic_scale for g in grads]  # Scaled once more: the optimizer checks and divides.
      optimizer.apply_gradients(zip([g / replicas for g in grads] if replicas > 1 else grads, variables))
      for (tag, group), old in zip(layer_groups, before):
        update = tf.linalg.global_norm([variables[i] - value for i, value in zip(group, old)])
        dynamics[f'layer_update_ratio/{tag}'] = update / tf.maximum(tf.linalg.global_norm(old), 1e-12)
    with tf.name_scope('carried_state'):
      for i, layer_vars in enumerate(state.carried_state):
        for j, variable in enumerate(layer_vars):
          final = tf.concat([p.final_state[i][j] for p in parts], axis=0)
          variable.assign(tf.stop_gradient(final))  # Truncated BPTT at batch boundaries.
    with tf.name_scope('metrics'):
      metrics = {name: tf.add_n([p.metrics[name] for p in parts]) for name in parts[0].metrics}
    return loss, metrics, grad_norm, dynamics

  @tf.function
  def train_step(iterator):
    with tf.name_scope('input'):
      inputs, targets = next(iterator)
    loss, metrics, grad_norm, dynamics = strategy.run(replica_step, args=(inputs, targets))
    with tf.name_scope('running_sums'):  # What the loop reads at summary steps.
      loss = strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None)
      metrics = {name: strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
                 for name, value in metrics.items()}
      grad_norm = strategy.reduce(tf.distribute.ReduceOp.MEAN, grad_norm, axis=None)  # Same on every replica.
      dynamics = {name: strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)
                  for name, value in dynamics.items()}
      state.metrics.update(loss, metrics, grad_norm, dynamics)
      step = state.global_step.assign_add(1)
      # Under loss scaling an overflowing gradient is expected now and then: the optimizer skips that update.
      finite = tf.math.is_finite(loss) & (loss_scaling or tf.math.is_finite(grad_norm))
      state.first_nonfinite_step.assign(tf.where(
          (state.first_nonfinite_step == 0) & tf.logical_not(finite), step, state.first_nonfinite_step))
    return step  # A tf.function's result waits for all of its stateful ops: the whole step is done.

  return train_step


def make_multi_step(train_step, before_step=None):
  """Returns train_steps(iterator, count, seconds_left=inf) -> the steps it ran (int32 scalar).

  `count` (int32 scalar) calls of `train_step` in one call. With `before_step` (a time budget's:
  `budget_progress`), it runs that before each step with the call's seconds so far (float64 scalar) and
  ends before a step once the call has run for `seconds_left` (float64 scalar, the budget's remainder):
  the clock is read in the graph between steps, so the run ends within a step of its budget. Without, it
  reads no clock (TensorFlow refuses tf.timestamp under op determinism) and runs every step.

  Each call of a `tf.function` costs ~0.4 ms of Python and runtime dispatch:
  10 % of an LSTM(32)->LSTM(64) step at batch 64 on 2 cores (BUILD.md).
  """

  if before_step is None:
    # The graph returns nothing, as before --time_budget: one that returns even `count` is rewritten otherwise
    # by Grappler's constant folding, whose in-graph cosine learning rate then differs in its last bit at some
    # steps, and so do the weights of every run without a budget.
    @tf.function
    def every_step(iterator, count):
      for _ in tf.range(count):
        train_step(iterator)

    def train_all(iterator, count, seconds_left=math.inf):
      del seconds_left  # Without a budget every step runs.
      every_step(iterator, count)
      return count

    return train_all

  @tf.function
  def train_steps(iterator, count, seconds_left=math.inf):
    # The clock is read after each step's result: a stateful op that takes no resource (tf.timestamp) is
    # otherwise free to run before the step's ops, or, in the loop's condition, before `start`.
    start, done, elapsed = tf.timestamp(), tf.constant(0), tf.constant(0.0, tf.float64)
    while done < count and elapsed < seconds_left:
      before_step(elapsed)
      with tf.control_dependencies([train_step(iterator)]):
        elapsed = tf.timestamp() - start
      done += 1
    return done

  return train_steps


def budget_progress(state, budget_seconds, total_steps):
  """For --time_budget: a `make_multi_step` before_step that sets `state.progress` to the fraction of the run done.

  The fraction of the budget spent (the training seconds of the calls before this one, plus `elapsed` of
  this one), or of the step cap `total_steps` where that is further: the learning rate reaches 0 at
  whichever ends the run. It reads only what a checkpoint restores, so a resumed run goes on where it was.
  """

  def set_progress(elapsed):
    spent = (state.train_seconds + elapsed) / budget_seconds
    stepped = tf.cast(state.global_step, tf.float64) / total_steps
    state.progress.assign(tf.cast(tf.minimum(tf.maximum(spent, stepped), 1.0), tf.float32))

  return set_progress


def first_nonfinite(state, step):
  """(step, 'loss' or 'weights') where training first went non-finite, or None if all is finite."""
  bad_step = int(state.first_nonfinite_step.numpy())
  if bad_step:
    return bad_step, 'loss'
  if not all(bool(tf.reduce_all(tf.math.is_finite(v))) for v in state.model.trainable_variables):
    return step, 'weights'
  return None


def make_eval_step(model, task, strategy):
  """Returns eval_step(batch) -> ({name: per-example tensor}, example index [b]), gathered from all replicas."""

  def replica_step(inputs, targets, index):
    outputs, _ = model(inputs, training=False)
    return task.eval_outputs(targets, outputs), index

  @tf.function(reduce_retracing=True)
  def eval_step(batch):
    results, index = strategy.run(replica_step, args=batch)
    return {name: strategy.gather(value, axis=0) for name, value in results.items()}, strategy.gather(index, axis=0)

  return eval_step


def evaluate(eval_step, dataset):
  """Runs `eval_step` over a distributed eval dataset; returns {name: numpy array} in example order.

  'index' [k] holds the examples' numbers in the test split, ascending (a subset's are not 0 .. k - 1).
  """
  results, indices = [], []
  for batch in dataset:
    values, index = eval_step(batch)
    results.append({name: value.numpy() for name, value in values.items()})
    indices.append(index.numpy())
  indices = np.concatenate(indices)
  order = np.argsort(indices)
  return {**{name: np.concatenate([r[name] for r in results])[order] for name in results[0]}, 'index': indices[order]}
