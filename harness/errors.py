"""The one exception type for mistakes a user can fix."""


class UserError(Exception):
  """Bad input: a flag, file or value the user can correct.

  The command-line entry points print the message on one line and exit
  non-zero, with no traceback.
  """


class NonFiniteLossError(Exception):
  """The loss became NaN or infinite; the message names the first such step."""
