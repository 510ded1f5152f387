"""One error hierarchy for the whole pipeline."""


class SafeCityError(Exception):
    """Base of every error the pipeline raises on purpose."""


class ConfigError(SafeCityError):
    """The configuration is invalid; the message names the field, the value and what was expected."""


class SourceError(SafeCityError):
    """A camera source cannot be opened or read."""


class ModelError(SafeCityError):
    """A model cannot be fetched, verified, exported or loaded."""


class BackendUnavailableError(SafeCityError):
    """A backend that was asked for by name is not installed or has no device."""


class SinkError(SafeCityError):
    """The event sink or the transport to it failed."""


class SchemaError(SafeCityError):
    """An event does not match the iccc.incident schema."""
