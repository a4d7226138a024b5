"""OTLP/HTTP bodies: `gunzip` (whole gzip only, every member, the size limit across members) and
the JSON a route reads."""

from __future__ import annotations

import gzip

import pytest

from collector.http_server import MAX_GZIP_MEMBERS, HttpRequest, HttpResponse, gunzip

LIMIT = 1 << 20


def status_of(result: bytes | HttpResponse) -> int:
    return result.status if isinstance(result, HttpResponse) else 200


def test_every_member_is_inflated_in_order() -> None:
    first, second = gzip.compress(b"a" * 100), gzip.compress(b"b" * 200_000)  # the second spans chunks
    assert gunzip(first + second, LIMIT) == b"a" * 100 + b"b" * 200_000


def test_an_empty_body_is_empty_and_zero_padding_after_the_last_member_is_ignored() -> None:
    assert gunzip(b"", LIMIT) == b""
    assert gunzip(gzip.compress(b"a") + b"\0" * 4096, LIMIT) == b"a"


@pytest.mark.parametrize("body", [
    gzip.compress(b"a" * 1000)[:-3],  # cut inside the trailer
    gzip.compress(b"a" * 1000)[:20],  # cut inside the data
    gzip.compress(b"a") + b"junk",
    gzip.compress(b"a") + b"\0\0junk",
    b"\x1f\x8b garbage",
])
def test_anything_but_whole_gzip_is_400(body: bytes) -> None:
    result = gunzip(body, LIMIT)
    assert status_of(result) == 400 and b"not valid gzip" in result.body


def test_the_limit_holds_for_one_member_and_across_members() -> None:
    assert gunzip(gzip.compress(b"x" * LIMIT), LIMIT) == b"x" * LIMIT
    assert status_of(gunzip(gzip.compress(b"x" * (LIMIT + 1)), LIMIT)) == 413
    half = gzip.compress(b"x" * (LIMIT // 2 + 1))
    assert status_of(gunzip(half + half, LIMIT)) == 413


def test_the_number_of_members_is_bounded() -> None:
    # Empty members (20 bytes, nothing inflated) never reach the size limit.
    empty = gzip.compress(b"")
    assert gunzip(empty * MAX_GZIP_MEMBERS, LIMIT) == b""
    result = gunzip(empty * (MAX_GZIP_MEMBERS + 1), LIMIT)
    assert status_of(result) == 400 and b"more than" in result.body


def test_a_route_reading_json_gets_a_client_error_for_json_nested_too_deeply() -> None:
    # HttpRequest.json() is what a plugin's route reads its body with; its ValueError is the
    # client's error (a route answers 400 with the message), a RecursionError was a 500.
    deep = b"[" * 100_000 + b"]" * 100_000
    request = HttpRequest(method="POST", path="/x", query={}, headers={}, body=deep)
    with pytest.raises(ValueError, match="nested too deeply"):
        request.json()
