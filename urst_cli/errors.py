"""The one error type users see: a message and an exit code, never a traceback."""

from __future__ import annotations

import signal

__all__ = ["UrstError", "Terminated", "EXIT_FAILURE", "EXIT_USAGE", "EXIT_INPUT", "EXIT_OUTPUT", "EXIT_SOME_FAILED",
           "EXIT_INTERRUPTED", "EXIT_TERMINATED", "stop_on_signal", "raise_if_stopped", "clear_stop"]

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

    def __reduce__(self):  # pickled with its exit code (an error raised on a Dask worker reaches the client whole)
        return type(self), (str(self), self.exit_code)


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM, so a run unwinds (and cleans up) as on Ctrl-C."""


_stopped_by: int | None = None  # the signal that asked this process to stop, once one has


def _stop_exception(signum: int) -> BaseException:
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated()


def stop_on_signal(signum: int, frame) -> None:
    """Handler for SIGINT and SIGTERM: remember the request, and raise KeyboardInterrupt or Terminated at once,
    unless Python is inside a function that C called back, where the exception would be printed and dropped."""
    global _stopped_by
    _stopped_by = signum
    if not _called_back_from_c(frame):
        raise _stop_exception(signum)


def _called_back_from_c(frame) -> bool:
    """Whether the interrupted code runs in pyvips' handler of libvips' log messages (libvips calls it, in
    this thread too, e.g. "threadpool completed"); ``raise_if_stopped`` raises at the next safe point instead."""
    while frame is not None:
        if frame.f_code.co_name == "_log_handler_callback" and "pyvips" in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False


def raise_if_stopped() -> None:
    """Raise the stop request a signal made, if any: the long loops (the engine's batches, the levels) call
    this at safe points, for a signal that arrived while C code had called back into Python."""
    if _stopped_by is not None:
        raise _stop_exception(_stopped_by)


def clear_stop() -> None:
    global _stopped_by
    _stopped_by = None
