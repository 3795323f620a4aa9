"""Test session setup: no network, no tfds data outside a temporary folder, and the `slow` marker."""

import os
import shutil
import tempfile

# Set before any test module imports the harness, and inherited by the
# subprocesses that tests start: downloads are never tried (even where a
# network exists), and tfds's default data_dir is a temporary folder.
os.environ['HARNESS_OFFLINE'] = '1'
_TFDS_DATA_DIR = tempfile.mkdtemp(prefix='harness-tests-tfds-')
os.environ['TFDS_DATA_DIR'] = _TFDS_DATA_DIR


def pytest_sessionfinish(session, exitstatus):
  del session, exitstatus
  shutil.rmtree(_TFDS_DATA_DIR, ignore_errors=True)


def pytest_configure(config):
  config.addinivalue_line('markers', 'slow: subprocesses, end-to-end runs and multi-step training; CI runs them, -m "not slow" skips them')
