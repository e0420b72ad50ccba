"""Error hierarchy: one root, input errors name what is wrong."""

from __future__ import annotations


class RagError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(RagError, ValueError):
    """A setting is invalid or cannot be honoured.

    Args:
        setting: the setting's name, e.g. ``RAG_EMBEDDING__MODEL``.
        message: what is wrong and what was tried.
    """

    def __init__(self, setting: str, message: str) -> None:
        self.setting = setting
        super().__init__(f"{setting}: {message}")


class ModelLoadError(ConfigError):
    """A configured model could not be loaded from any of the places tried."""


class InputError(RagError, ValueError):
    """A caller passed a bad value.

    Args:
        param: the parameter or request field at fault, e.g. ``top_k``.
        message: what is wrong with it.
    """

    def __init__(self, param: str, message: str) -> None:
        self.param = param
        super().__init__(f"{param}: {message}")


class NotFoundError(RagError, LookupError):
    """A named thing (collection, document) does not exist.

    Args:
        param: the field naming it, e.g. ``collection``.
        message: what was not found.
    """

    def __init__(self, param: str, message: str) -> None:
        self.param = param
        super().__init__(message)


class FileError(RagError):
    """A file could not be loaded; the reason is a single line.

    Args:
        path: the file at fault.
        reason: one-line reason, shown in the ingest report.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class IndexMismatchError(RagError):
    """An index on disk was built with another model, dimension or metric."""


class GeneratorUnavailableError(RagError):
    """The OpenAI-compatible generator is down, timed out or refused the request."""


class StructuredOutputError(RagError):
    """A reply that had to follow a JSON schema did not parse or did not match it.

    Planners catch it and fall back to one retrieval of the question; it never reaches a user.
    """
