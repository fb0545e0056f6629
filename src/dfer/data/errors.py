"""The one error type for bad input data: it names the file (and line) and says how to fix it."""
from __future__ import annotations

import os


class DataError(ValueError):
    """A data file is missing, corrupt, empty, mislabelled or malformed.

    ``str(err)`` reads ``<path>: <message>`` followed by ``fix: <fix>`` when a fix is known, so the CLI can
    print it as is. ``path`` may carry a line number (``anno.csv:12``).
    """

    def __init__(self, path: str | os.PathLike, message: str, fix: str | None = None):
        self.path = str(path)
        self.message = message
        self.fix = fix
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.path}: {self.message}"
        return f"{text} (fix: {self.fix})" if self.fix else text

    def __reduce__(self):  # picklable across DataLoader workers (subclasses too: CheckpointError)
        return (type(self), (self.path, self.message, self.fix))
