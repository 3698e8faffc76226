"""Reading Mimecast's rate-limit headers and the per-account gate."""

from mimecast_exporter.mimecast.ratelimit import RateLimitGate, rate_limit_wait


def test_reset_is_milliseconds():
    assert rate_limit_wait({"X-RateLimit-Reset": "1500"}, 0) == 1.5


def test_retry_after_seconds_and_date_and_the_larger_wins():
    assert rate_limit_wait({"Retry-After": "7"}, 0) == 7
    now = 1_795_478_400.0  # 2026-11-24T00:00:00Z
    date = "Tue, 24 Nov 2026 00:00:30 GMT"
    assert rate_limit_wait({"Retry-After": date}, now) == 30
    assert rate_limit_wait({"Retry-After": "2", "X-RateLimit-Reset": "5000"}, 0) == 5


def test_garbage_headers_say_nothing():
    assert rate_limit_wait({}, 0) is None
    assert rate_limit_wait({"X-RateLimit-Reset": "soon", "Retry-After": "later"}, 0) is None
    assert rate_limit_wait({"X-RateLimit-Reset": "-5"}, 0) == 0


def test_gate_keeps_the_latest_reset():
    gate = RateLimitGate()
    assert gate.remaining(10) == 0
    gate.block_for(10, 5)
    gate.block_for(10, 2)  # a shorter wait never shortens the block
    assert gate.remaining(11) == 4
    assert gate.remaining(20) == 0
