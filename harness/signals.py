"""SIGTERM, SIGINT and SIGHUP turned into a flag that a loop checks between units of work (no TensorFlow here).

A stop signal is handled once: the first is recorded (and, where the work
checks no flag, raised as `Stopped`); every later one is only recorded, so a
second signal from an impatient sender, or one during the final writes, never
lands as a traceback in code that cannot handle it. An entry installs a
catcher for the rest of the process (its exit and teardown too); a loop's
catcher nests inside it.
"""

import atexit
import signal

# SIGHUP: the terminal or ssh connection closed; the run stops as for SIGTERM.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Stopped(BaseException):
  """A stop signal during work that checks no flag; `signal` names it.

  A BaseException, so that `except Exception` in a library (a fallback
  around a data load, say) does not swallow it.
  """

  def __init__(self, name):
    super().__init__(name)
    self.signal = name


class SignalCatcher:
  """Turns the stop signals into `received`, the first one's name (then the loop checkpoints and stops).

  Args:
    interrupt: raise `Stopped` on the first signal, until a nested catcher is
      entered: from then on this catcher only records (the nested one's loop
      handles the stop, and this one must not raise during its final writes).
  """

  def __init__(self, interrupt=False):
    self.received = None
    self.interrupt = interrupt
    self._previous = {}

  def __enter__(self):
    return self._install_handlers()

  def install(self):
    """Installs the handlers; an entry calls this alone, to keep them to the process's very end.

    At exit the signals are then ignored: Python puts back the default
    handlers (which kill) before TensorFlow's teardown, which takes seconds.
    """
    atexit.unregister(_ignore_stop_signals)  # Registered once, however often this runs.
    atexit.register(_ignore_stop_signals)
    return self._install_handlers()

  def _install_handlers(self):
    for sig in STOP_SIGNALS:
      try:
        previous = signal.signal(sig, self._handle)
      except ValueError:  # Not the main thread: leave signals alone.
        continue
      self._previous[sig] = previous
      outer = getattr(previous, '__self__', None)
      if isinstance(outer, SignalCatcher):
        outer.interrupt = False
    return self

  def _handle(self, signum, frame):
    del frame
    if self.received:
      return
    self.received = signal.Signals(signum).name
    if self.interrupt:
      raise Stopped(self.received)

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def _ignore_stop_signals():
  for sig in STOP_SIGNALS:
    try:
      signal.signal(sig, signal.SIG_IGN)
    except ValueError:  # Not the main thread.
      pass
