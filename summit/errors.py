"""The user-facing error type and the one rule that turns errors into a user's line (kept free of
torch, so that light commands import fast)."""
from __future__ import annotations


class SummitError(Exception):
    """A user-facing error: printed as one line by the CLI (exit 2); answered by the server as
    ``{"error": line}`` with HTTP ``status`` (default 400)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def one_line(text: object, limit: int | None = None) -> str:
    """``text`` with every run of whitespace (newlines too) made one space, cut at ``limit`` characters."""
    s = " ".join(str(text).split())
    return s if limit is None else s[:limit]


def reason(e: BaseException, limit: int | None = 200) -> str:
    """Why an operation failed, as one line: an OSError's strerror, else the exception's message,
    else its type's name."""
    if isinstance(e, OSError) and e.strerror:
        return one_line(e.strerror, limit)
    return one_line(e, limit) or type(e).__name__


def error_line(e: BaseException | str) -> str:
    """The line the CLI prints for a refusal: ``summit: error: <one line>``."""
    return f"summit: error: {one_line(e) if isinstance(e, str) else reason(e, None)}"
