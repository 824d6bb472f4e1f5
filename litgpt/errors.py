"""One exception type for bad input: the CLI prints its message as one line and exits non-zero."""


class LitGPTError(ValueError):
    """A user-facing error whose message says what is wrong and how to fix it."""


class LitGPTWarning(UserWarning):
    """Something the user asked for was adjusted (a length cut to fit the context, ...); the CLI prints it as one
    line."""
