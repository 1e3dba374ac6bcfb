"""Errors raised when a run directory breaks the contract."""

from __future__ import annotations


class RunFormatError(ValueError):
    """A run file is missing, malformed, or disagrees with the manifest.

    ``file`` and ``column`` name the place at fault so that the message a user
    sees says where to look.
    """

    def __init__(self, file: str, column: str | None, problem: str) -> None:
        self.file = file
        self.column = column
        self.problem = problem
        where = file if column is None else f"{file}, column {column!r}"
        super().__init__(f"{where}: {problem}")


class RunExistsError(FileExistsError):
    """The target run already exists and overwriting was not asked for."""
