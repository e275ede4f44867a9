"""Errors a user can cause: each names the file/row/key, the bad value and what was expected."""


class TagnetError(Exception):
    """Base class of every error tagnet raises for bad input; the CLI prints it in one line."""


class DataError(TagnetError):
    """A label file, image or data set is missing, malformed or unusable."""


class ConfigError(TagnetError):
    """A setting has an unknown name or an invalid value."""


class ArtifactError(TagnetError):
    """A model artifact is missing, malformed or of an unsupported format version."""


class ModelError(TagnetError):
    """A model name is unknown or its weights cannot be loaded."""


class RequestError(TagnetError):
    """An HTTP request the server cannot take; `status` is the HTTP status to answer with (400, 413, 415)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Interrupted(TagnetError):
    """Training was stopped (Ctrl+C); the run folder can be resumed."""
