"""The one exception type for mistakes a user can make (bad file, column, value, config).

The CLI turns it into one line on stderr and exit code 2; anything else is a bug and keeps its traceback.
"""


class ScaletuneError(Exception):
    """A user-caused problem; the message names the file, column or value at fault.

    ``hint`` says what to do instead, in the library's words (argument names, not command-line flags); the
    CLI renders it after the message, on the same line, or replaces it with the flag that applies.
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint
