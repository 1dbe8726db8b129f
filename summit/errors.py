"""The user-facing error type (kept free of torch, so that light commands import fast)."""


class SummitError(Exception):
    """A user-facing error: printed as one line by the CLI, 4xx by the server."""
