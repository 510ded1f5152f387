"""One error hierarchy for the whole pipeline."""

from __future__ import annotations


class SafeCityError(Exception):
    """Base of every error the pipeline raises on purpose."""


class ConfigError(SafeCityError):
    """The configuration is invalid; the message names the field, the value and what was expected."""


class SourceError(SafeCityError):
    """A camera source cannot be opened or read.

    The message says what happened without naming the camera; ``camera_id`` names it and ``reason``
    is a short code (``not_found``, ``no_video``, ``timeout``, ``open``, ``read``, ``ended`` ...).
    """

    def __init__(self, message: str, *, camera_id: str | None = None, reason: str = "source") -> None:
        super().__init__(message)
        self.camera_id = camera_id
        self.reason = reason


class ModelError(SafeCityError):
    """A model cannot be fetched, verified, exported or loaded."""


class BackendUnavailableError(SafeCityError):
    """A backend that was asked for by name is not installed or has no device."""


class SinkError(SafeCityError):
    """The event sink or the transport to it failed."""


class StorageError(SafeCityError):
    """A database file (the edge's outbox, the sink's store) cannot be opened, locked or written."""


class SchemaError(SafeCityError):
    """An event does not match the iccc.incident schema."""


class StageError(SafeCityError):
    """A stage of the pipeline died; the run ends with it (exit status 1)."""

    def __init__(self, stage: str, cause: BaseException) -> None:
        detail = str(cause) or type(cause).__name__
        super().__init__(f"{stage} stage failed: {type(cause).__name__}: {detail}")
        self.stage = stage
        self.cause = cause
