"""Import MNIST-style IDX files into tfds, so image tasks train on them offline.

  python -m harness.data import --task=fashion_mnist --idx_dir=DIR [--data_dir=DIR]

DIR holds the four standard files (train-images-idx3-ubyte.gz, ...). The
dataset gets the tfds catalog's name, version, features and splits; prints
{"task": ..., "tfds_dir": ...} on success.
"""

import json
import signal
import sys

from absl import flags

from harness import cli
from harness import signals as signals_lib
from harness import task_table

_TASK = flags.DEFINE_enum('task', None, [name for name, spec in task_table.TASKS.items() if 'view' in spec.flags],
                          'The tfds dataset to create (an image task).')
_IDX_DIR = flags.DEFINE_string('idx_dir', None, 'Folder with the four standard IDX .gz files.')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'tfds data_dir (default: tfds\'s own).')
_PROGRAM = 'harness.data'


def main(argv):
  if argv[1:] != ['import'] or _TASK.value is None or _IDX_DIR.value is None:
    cli.fail(_PROGRAM, 'usage: python -m harness.data import --task=TASK --idx_dir=DIR [--data_dir=DIR]')
  cli.quiet_console()
  # A stop signal interrupts the import, which then removes its partial dataset.
  signals_lib.SignalCatcher(interrupt=True).install()
  try:
    with cli.native_output_filtered():
      from harness.tasks import sources  # pylint: disable=g-import-not-at-top
    path = sources.import_idx(_TASK.value, _IDX_DIR.value, _DATA_DIR.value)
  except signals_lib.Stopped as e:
    cli.fail(_PROGRAM, f'stopped by {e.signal}; nothing was imported', status=128 + getattr(signal, e.signal).value)
  print(json.dumps({'task': _TASK.value, 'tfds_dir': path}))
  sys.stdout.flush()


def run():
  cli.run(main, _PROGRAM)


if __name__ == '__main__':
  run()
