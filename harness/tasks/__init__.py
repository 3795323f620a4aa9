"""Tasks: what a run learns. A plain dict maps each `--task` name to a builder of its task object.

A builder takes the config and returns a `base.Task`: its data, loss, metrics,
figures and hparams. Add a task by writing one builder and one entry here (and
its defaults in `config.TASK_DEFAULTS`).
"""

from harness.tasks import images
from harness.tasks import memory
from harness.tasks import series

BUILDERS = {
    'mnist': images.build,
    'fashion_mnist': images.build,
    'sin2cos': series.build_sin2cos,
    'adding': memory.build_adding,
    'copy': memory.build_copy,
}


def load_task(config):
  """Returns the task object for `config.task`."""
  return BUILDERS[config.task](config)
