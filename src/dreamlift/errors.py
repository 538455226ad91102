"""Errors a user can cause. The CLI prints them as one line and exits with code 2."""

from __future__ import annotations


class DreamliftError(Exception):
    """Base of user-facing errors: a one-line message and an optional hint."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class CaptionError(DreamliftError):
    """A caption the world's grammar cannot parse (unknown word, empty, bad structure)."""


class DataError(DreamliftError):
    """Input data that cannot be used: missing images, inconsistent sizes, bad files."""


class CheckpointError(DreamliftError):
    """A checkpoint that is missing, corrupt, truncated or from another kind of run."""


class OutputError(DreamliftError):
    """An output folder that cannot be written or would overwrite an earlier run."""


class TrainingError(DreamliftError):
    """Optimisation that cannot go on (e.g. a non-finite loss); the last good checkpoint stays."""


class ModelError(DreamliftError):
    """A model that cannot be loaded: missing or malformed folder, unknown zoo name, no weights."""


class ConfigError(DreamliftError):
    """A settings file that cannot be read, or a setting with an unknown name or a bad value."""
