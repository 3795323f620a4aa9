"""The exceptions the command-line entries turn into one line of output, never a traceback."""


class UserError(Exception):
  """Bad input: a flag, file or value the user can correct.

  The command-line entries print the message on one line and exit with
  status 2, with no traceback.
  """


class EnvironmentFault(Exception):
  """The machine cannot do what the run needs: a full disk, an unwritable folder, too little memory.

  The run folder and its checkpoints are kept; the message says what failed
  and where the run can resume from. Exit status 1.
  """


class NonFiniteLossError(Exception):
  """The loss became NaN or infinite; the message names the first such step."""


class RunFinished(Exception):
  """`--resume` of a run that has already reached its last step: nothing to do (exit status 0)."""
