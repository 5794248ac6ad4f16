"""Agent errors, each with the process exit code the CLI uses for it."""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1  # network, server or runtime trouble
EXIT_USAGE = 2  # missing URL/token, bad arguments
EXIT_INTEGRITY = 3  # downloaded bytes do not match the artifact's sha256: nothing run, nothing posted
EXIT_FAILING = 4  # measured and posted, and the service marks the artifact failing on this device


class AgentError(Exception):
    exit_code = EXIT_ERROR


class ConfigError(AgentError):
    exit_code = EXIT_USAGE


class IntegrityError(AgentError):
    """The artifact's bytes are not the ones the service recorded: refuse to run them."""

    exit_code = EXIT_INTEGRITY


class ApiError(AgentError):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RuntimeUnavailable(AgentError):
    """No runtime for this artifact kind is installed on the device."""
