"""The one error type users see: a message and an exit code, never a traceback."""

from __future__ import annotations

__all__ = ["UrstError", "Terminated", "EXIT_FAILURE", "EXIT_USAGE", "EXIT_INPUT", "EXIT_OUTPUT", "EXIT_SOME_FAILED",
           "EXIT_INTERRUPTED", "EXIT_TERMINATED"]

EXIT_FAILURE = 1      # anything else that went wrong in a run
EXIT_USAGE = 2        # a bad option or argument (Typer/Click use 2 as well)
EXIT_INPUT = 3        # the input or style image is missing, unreadable or unsupported
EXIT_OUTPUT = 4       # the output cannot be written (exists, unwritable, disk full)
EXIT_SOME_FAILED = 5  # a batch of several inputs ran, and some of them failed (each reported; the rest are done)
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT), as shells report it: 128 + 2
EXIT_TERMINATED = 143   # SIGTERM: 128 + 15


class UrstError(Exception):
    """A failure the user can act on. ``str(err)`` is one line."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE):
        super().__init__(message)
        self.exit_code = exit_code


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM, so a run unwinds (and cleans up) as on Ctrl-C."""
