"""Why a poll failed, as one exception type whose ``reason`` is a metric label value."""

from __future__ import annotations

# Every value of the `reason` label of mimecast_poll_errors_total. The counter is
# created at 0 for each, so that `increase()` works from the first failure on.
REASONS: tuple[str, ...] = (
    "timeout",  # connect or read timeout, or the poll's deadline passed
    "connection",  # refused, reset, DNS, TLS
    "http_5xx",  # Mimecast answered 5xx
    "http_4xx",  # 400, 404, 405, 409...: a request Mimecast will not take; not retried
    "rate_limited",  # 429, or the rate-limit reset falls after the poll's deadline
    "auth",  # 401 that a token refresh does not cure, 403, or token endpoint refusal
    "binding_expired",  # 418: the API 1.0 access key's binding lapsed
    "api_fail",  # HTTP 200 with a non-empty fail[]
    "bad_response",  # not JSON, wrong shape, too large
    "pagination_loop",  # Mimecast handed back a page token it had already given
    "local",  # the exporter's own host failed (no file descriptors, memory): not Mimecast
)


class PollError(Exception):
    """A failed request or poll. ``reason`` is one of REASONS; the other fields
    are for the log line that says what happened."""

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        assert reason in REASONS, reason
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id
        self.retryable = retryable
        self.retry_after = retry_after

    @property
    def refused(self) -> bool:
        """Mimecast refused the request as invalid: HTTP 400, or a fail[] on 200
        that is not to be retried."""
        invalid = (self.reason, self.status) in (("http_4xx", 400), ("api_fail", 200))
        return invalid and not self.retryable

    def log_fields(self) -> dict[str, object]:
        """The context worth logging with this error; never contains credentials."""
        fields: dict[str, object] = {"reason": self.reason}
        if self.status is not None:
            fields["status"] = self.status
        if self.code:
            fields["code"] = self.code
        if self.request_id:
            fields["request_id"] = self.request_id
        return fields
