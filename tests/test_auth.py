"""API 1.0 signing and the API 2.0 token cache."""

from mimecast_exporter.config import HmacCredentials, Secret
from mimecast_exporter.mimecast.auth import (
    TokenCache,
    hmac_headers,
    hmac_signature,
    mc_date,
    token_safety_margin,
)

# Computed by hand with openssl from the reference's algorithm:
#   printf '%s' 'Tue, 24 Nov 2015 12:50:11 UTC:8578FCFC-A305-4D9A-99CB-F4D5ECEFE297:'\
#     '/api/gateway/find-processing-messages:app-key-123' \
#   | openssl dgst -sha1 -mac HMAC -macopt hexkey:<hex of "mimecast-test-secret-key"> -binary \
#   | base64
SECRET_KEY_B64 = "bWltZWNhc3QtdGVzdC1zZWNyZXQta2V5"  # base64("mimecast-test-secret-key")
DATE = "Tue, 24 Nov 2015 12:50:11 UTC"
REQUEST_ID = "8578FCFC-A305-4D9A-99CB-F4D5ECEFE297"
URI = "/api/gateway/find-processing-messages"
EXPECTED_SIGNATURE = "HdGFRT2wl3WpdNWR4rYG8nzEhjE="


def test_signature_matches_hand_computed_vector():
    assert hmac_signature(SECRET_KEY_B64, DATE, REQUEST_ID, URI, "app-key-123") == (
        EXPECTED_SIGNATURE
    )


def test_signature_depends_on_every_part():
    base = (SECRET_KEY_B64, DATE, REQUEST_ID, URI, "app-key-123")
    for index, other in enumerate(("b3RoZXI=", DATE + "x", "other-id", "/other", "other-key")):
        changed = list(base)
        changed[index] = other
        assert hmac_signature(*changed) != EXPECTED_SIGNATURE


def test_mc_date_is_rfc1123_in_utc():
    assert mc_date(1448369411) == DATE


def test_hmac_headers_carry_signed_date_and_id():
    creds = HmacCredentials(
        "app-id", Secret("app-key-123"), Secret("access"), Secret(SECRET_KEY_B64)
    )
    headers = hmac_headers(creds, URI, REQUEST_ID, 1448369411)
    assert headers == {
        "Authorization": f"MC access:{EXPECTED_SIGNATURE}",
        "x-mc-date": DATE,
        "x-mc-req-id": REQUEST_ID,
        "x-mc-app-id": "app-id",
    }


def test_token_margin_shrinks_for_short_lifetimes():
    assert token_safety_margin(1800) == 60
    assert token_safety_margin(30) == 3
    assert token_safety_margin(0) == 0


def test_token_cache_expiry_and_invalidation():
    cache = TokenCache()
    assert cache.current(0) is None
    cache.store("tok", 1800, now_monotonic=100)
    assert cache.current(100 + 1739) == "tok"
    assert cache.current(100 + 1740) is None  # 60 s before expiry
    cache.store("tok2", 1800, now_monotonic=0)
    cache.invalidate("tok")  # an older, already replaced token: keep the new one
    assert cache.current(1) == "tok2"
    cache.invalidate("tok2")
    assert cache.current(1) is None
