"""Tasks: what a run learns. `load_task` builds the task object of `--task` from its entry in `task_table`.

A builder takes the config and returns a `base.Task`: its data, loss, metrics
and figures. Add a task by writing its builder and one entry in
`harness.task_table` (its defaults, flags, metrics and hparams).
"""

from harness import archs
from harness import task_table


def load_task(config):
  """Returns the task object for `config.task`."""
  return archs.resolve(task_table.TASKS[config.task].builder)(config)
