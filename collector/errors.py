"""One exception type per failure kind, caught at the job boundary (STYLE.md)."""


class CycletimeError(Exception):
    """Base of our errors; messages are safe to log (secrets already redacted)."""


class ConfigError(CycletimeError):
    """The configuration is invalid; ``errors`` lists every problem as 'path: message'."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("; ".join(errors))


class SourceError(CycletimeError):
    """A source could not be read (after retries): unreachable, unauthorised, unexpected answer."""


class AuthError(SourceError):
    """The API rejected the credentials (401, 403 without rate limiting, or a sign-in page)."""


class RateLimited(SourceError):
    """The rate limit did not recover within the time we are willing to wait."""


class Rejected(CycletimeError, ValueError):
    """An input record is invalid; ``reason`` is the snake_case label of records_rejected_total."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class StoreError(CycletimeError):
    """The store cannot be opened or migrated."""


class StoreInUse(StoreError):
    """Another process holds the store's writer lease."""
