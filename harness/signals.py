"""SIGTERM and SIGINT turned into a flag that a loop checks between units of work (no TensorFlow here)."""

import signal


class SignalCatcher:
  """Turns SIGTERM/SIGINT into a flag the loop checks between steps (then it checkpoints and stops)."""

  def __init__(self):
    self.received = None
    self._previous = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._previous[sig] = signal.signal(sig, self._handle)
      except ValueError:  # Not the main thread: leave signals alone.
        pass
    return self

  def _handle(self, signum, frame):
    del frame
    self.received = signal.Signals(signum).name

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
