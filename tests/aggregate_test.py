"""The sweep's summary table: which metrics it shows, and the baseline row (no subprocesses: tiny results)."""

from absl.testing import absltest

from harness import aggregate
from harness import trials as trials_lib


def finished(**metrics):
  return {'status': 'finished', 'step': 10, 'total_steps': 10, **metrics}


class SummaryTableTest(absltest.TestCase):

  def test_a_loss_equal_to_the_mse_is_shown_once_and_a_loss_that_differs_is_kept(self):
    regression = {'a': finished(eval_loss=0.2, eval_mse=0.2), 'b': finished(eval_loss=0.1, eval_mse=0.1)}
    self.assertEqual(aggregate._markdown_metrics(['eval_loss', 'eval_mse'], regression), ['eval_mse'])
    classes = {'a': finished(eval_loss=0.2, eval_accuracy=0.2), 'b': finished(eval_loss=0.3, eval_accuracy=0.9)}
    self.assertEqual(aggregate._markdown_metrics(['eval_accuracy', 'eval_loss'], classes),
                     ['eval_accuracy', 'eval_loss'])

  def test_one_baseline_row_when_the_groups_share_it_else_one_per_group(self):
    trials = trials_lib.make_trials([('arch', ['rnn', 'gru'])], 1)
    groups = {}
    for trial in trials:
      groups.setdefault(trial.group, []).append(trial)
    shared = {t.name: finished(eval_mse=0.01, baseline_mse=1 / 6, baseline_loss=1 / 6) for t in trials}
    self.assertEqual(aggregate._baseline_rows(groups, shared, 1, ['eval_mse']),
                     ['| memoryless baseline |  | 0.1667 |  |'])
    differing = {t.name: finished(eval_mse=0.01, baseline_mse=0.1 * (i + 1)) for i, t in enumerate(trials)}
    self.assertEqual(aggregate._baseline_rows(groups, differing, 1, ['eval_mse']),
                     [f'| baseline of {trials[0].group} |  | 0.1000 |  |',
                      f'| baseline of {trials[1].group} |  | 0.2000 |  |'])
    self.assertEqual(aggregate._baseline_rows(groups, {t.name: finished(eval_mse=0.01) for t in trials}, 1,
                                              ['eval_mse']), [])


if __name__ == '__main__':
  absltest.main()
