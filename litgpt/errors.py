"""One exception type for bad input: the CLI prints its message as one line and exits non-zero."""


class LitGPTError(ValueError):
    """A user-facing error whose message says what is wrong and how to fix it."""
