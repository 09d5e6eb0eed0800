"""One exception tree for everything mllib reports to a user, with the CLI exit code each maps to."""

from __future__ import annotations

# Exit codes of the `mllib` command (documented in the README).
EXIT_OK = 0
EXIT_FAILED = 1  # a run failed in the user's code, or a general error
EXIT_USAGE = 2  # bad command line, params or configuration
EXIT_SYSTEM = 3  # the runtime or worker failed (killed, out of memory, engine unavailable)
EXIT_NOT_FOUND = 4  # a run, model or file that was asked for does not exist
EXIT_REFUSED = (
    5  # refused by a deploy rule or guard (staging first, budget, cooldown, prod load tests)
)
EXIT_CANCELLED = 130  # cancelled (Ctrl-C or `mllib runs cancel`)


class MllibError(Exception):
    """An error with a message a user can act on; `hint` says what to do next."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n{self.hint}"


class BadRequest(Exception):
    """Raised by a model's predict() to refuse one request as the caller's mistake: a server
    answers `status` (400, or 422 and other 4xx) with the message as JSON, counted as a client
    error; `mllib predict` exits 2 with it. Not for faults of the model itself (those are 500s).

    >>> raise mllib.BadRequest("expected 4 features, got 3")  # doctest: +SKIP
    """

    RESERVED = (401, 403, 429)  # the server's own answers: keys and limits

    def __init__(self, message: str, *, status: int = 400) -> None:
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 499:
            raise ValueError(
                f"BadRequest status must be a 4xx code such as 400 or 422, not {status!r}"
            )
        if status in self.RESERVED:
            raise ValueError(
                f"BadRequest status {status} is the server's own answer (keys and limits); "
                "use 400 or 422"
            )
        super().__init__(message)
        self.message = str(message)
        self.status = status


class UsageError(MllibError):
    """The command line, a param value or mllib.toml is wrong."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """mllib.toml (or an env file) cannot be read or holds an invalid value."""


class ParamError(UsageError):
    """A model param is unknown or its value does not convert to the declared type."""


class ModelDiscoveryError(UsageError):
    """No model class, or more than one, where exactly one was needed."""


class NotFoundError(MllibError):
    """A run, model version or file that was asked for does not exist."""

    exit_code = EXIT_NOT_FOUND


class PolicyError(MllibError):
    """A deploy rule or guard refused the action; the message says why and what to run instead."""

    exit_code = EXIT_REFUSED


class RuntimeUnavailableError(MllibError):
    """The chosen runtime (Docker engine, agent host) cannot be used right now."""

    exit_code = EXIT_SYSTEM


class DeployFailedError(MllibError):
    """A new server did not become ready; the previous deployment (if any) still serves."""

    exit_code = 3


class SerializationError(MllibError):
    """A value (a prediction, a metric) cannot be turned into JSON or a number."""


class RunFailedError(MllibError):
    """A run ended without success; carries its id and failure class."""

    def __init__(self, run_id: str, status: str, failure_class: str | None, message: str) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.status = status
        self.failure_class = failure_class
        if status == "cancelled":
            self.exit_code = EXIT_CANCELLED
        elif failure_class == "system_error":
            self.exit_code = EXIT_SYSTEM
        else:
            self.exit_code = EXIT_FAILED
