"""Reading answer envelopes: pages, fail[] in both API shapes, tokens."""

import json

import pytest

from mimecast_exporter.mimecast.errors import PollError
from mimecast_exporter.mimecast.pages import decode_page
from mimecast_exporter.mimecast.responses import fail_errors, parse_token


def parse_page(raw, number, request_id):
    return decode_page(raw, number, request_id, 32 * 1024 * 1024)


def body(obj):
    return json.dumps(obj).encode()


def test_page_with_messages_and_next():
    page = parse_page(
        body(
            {
                "meta": {"status": 200, "pagination": {"next": "abc"}},
                "data": [{"messages": [{"id": 1}, {"id": 2}]}, {"messages": [{"id": 3}]}],
                "fail": [],
            }
        ),
        2,
        "rid",
    )
    assert (page.number, len(page.messages), page.next_token) == (2, 3, "abc")


def test_empty_queue_is_normal():
    page = parse_page(body({"meta": {"status": 200}, "data": [], "fail": []}), 1, "r")
    assert page.messages == [] and page.next_token is None
    page = parse_page(body({"data": [{"messages": None}]}), 1, "r")
    assert page.messages == []


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b'{"data": [',
        b"[]",
        b'"str"',
        body({"fail": []}),
        body({"data": {}}),
        body({"data": [{"messages": {}}]}),
        body({"data": [], "meta": {"pagination": {"next": []}}}),
        b"\xff\xfe",
    ],
)
def test_bad_envelopes_are_bad_response(raw):
    with pytest.raises(PollError) as info:
        parse_page(raw, 1, "r")
    assert info.value.reason == "bad_response"


def test_fail_on_200_is_api_fail_with_retryable_flag():
    with pytest.raises(PollError) as info:
        parse_page(
            body(
                {
                    "data": [],
                    "fail": [
                        {
                            "errors": [
                                {"code": "err_busy", "message": "try later", "retryable": True}
                            ]
                        }
                    ],
                }
            ),
            1,
            "r",
        )
    assert info.value.reason == "api_fail" and info.value.retryable
    assert info.value.code == "err_busy"
    with pytest.raises(PollError) as info:
        parse_page(body({"data": [], "fail": [{"code": "bad_thing", "message": "no"}]}), 1, "r")
    assert info.value.reason == "api_fail" and not info.value.retryable
    assert info.value.code == "bad_thing"


def test_fail_errors_tolerates_junk():
    assert fail_errors({"fail": ["oops", {"errors": "x"}, 3]})[1] == (None, None, False)
    assert fail_errors(None) == []
    assert fail_errors({"fail": None}) == []


def test_token_parsing():
    assert parse_token(body({"access_token": "t", "expires_in": 30}), "r") == ("t", 30.0)
    assert parse_token(body({"access_token": "t", "expires_in": "60"}), "r") == ("t", 60.0)
    assert parse_token(body({"access_token": "t"}), "r") == ("t", 1800.0)
    with pytest.raises(PollError) as info:
        parse_token(body({"token_type": "Bearer"}), "r")
    assert info.value.reason == "bad_response"
