"""Error types that the command-line scripts map to exit codes.

`InputError` (and its subclasses) means the user gave something we cannot use: a bad
config key, a missing dataset folder, a run directory of another configuration. The
scripts print its message on one line and exit with code 2. Everything else is a bug or
an environment failure and exits with code 1.
"""

import re

# Terminal colour codes, which torch and Ray put in some of their messages (torch's
# refusal of a pickle is bold; Ray colours a task's name): on a terminal they style the
# text, in a log file or a TSV cell they are stray bytes (ESC[1m ... ESC[0m).
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def plain(text: str) -> str:
    """`text` without terminal escape codes."""
    return ANSI_ESCAPE.sub("", text)


def first_line(exc: BaseException, empty: str = "") -> str:
    """The first line of an exception's message, plain (`empty` if it has none)."""
    lines = plain(str(exc)).strip().splitlines()
    return lines[0].strip() if lines else empty


class InputError(Exception):
    """Bad input from the user: exit code 2, one line, no traceback."""


class ConfigError(InputError):
    """An invalid configuration file, key, type or value; `key` is the dotted key at
    fault where there is one (`model.candidate_ops[1]`), so that the loader can name the
    file it came from."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


class DataError(InputError):
    """A dataset that cannot be read: missing folder, wrong arrays, unknown name."""


class UntrustedFileError(InputError):
    """A file from a run directory that would need code execution to load."""


class TrainingError(RuntimeError):
    """A training job that cannot produce a model (a NaN loss, say)."""
