"""Stop signals: handled once, recorded to the end of the process, never raised where nothing handles them."""

import os
import signal

from absl.testing import absltest

from harness import signals as signals_lib


class SignalCatcherTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    saved = {sig: signal.getsignal(sig) for sig in signals_lib.STOP_SIGNALS}
    self.addCleanup(lambda: [signal.signal(sig, handler) for sig, handler in saved.items()])

  def test_item7_a_flood_raises_once_then_only_records(self):
    outer = signals_lib.SignalCatcher(interrupt=True).install()
    with self.assertRaises(signals_lib.Stopped) as raised:
      os.kill(os.getpid(), signal.SIGTERM)
    self.assertEqual(raised.exception.signal, 'SIGTERM')
    for _ in range(5):
      os.kill(os.getpid(), signal.SIGINT)  # Recorded, never raised again.
    self.assertEqual(outer.received, 'SIGTERM')

  def test_item7_after_a_loop_signals_are_only_recorded(self):
    outer = signals_lib.SignalCatcher(interrupt=True).install()
    with signals_lib.SignalCatcher() as loop:
      os.kill(os.getpid(), signal.SIGTERM)
      os.kill(os.getpid(), signal.SIGTERM)
    self.assertEqual(loop.received, 'SIGTERM')
    for _ in range(5):  # The final writes, the exit: a flood lands here.
      os.kill(os.getpid(), signal.SIGTERM)
    self.assertEqual(outer.received, 'SIGTERM')

  def test_item19_sighup_stops_like_sigterm(self):
    with signals_lib.SignalCatcher() as catcher:
      os.kill(os.getpid(), signal.SIGHUP)
    self.assertEqual(catcher.received, 'SIGHUP')


if __name__ == '__main__':
  absltest.main()
