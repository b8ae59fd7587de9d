"""The one exception type for mistakes a user can make (bad file, column, value, config).

The CLI turns it into one line on stderr and exit code 2; anything else is a bug and keeps its traceback.
"""


class ScaletuneError(Exception):
    """A user-caused problem; the message names the file, column or value at fault."""
