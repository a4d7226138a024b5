"""Reading and adding X-Cost-* headers: the header-list fast path (httpx and httpx2) must give
exactly what the public `Headers` API gives, and other header classes use the public API."""

from __future__ import annotations

import httpx
import httpx2
import pytest

from cognocient_otel.llm import headers as cost

SDK_HEADERS = [
    ("Accept", "application/json"),
    ("Content-Type", "application/json"),
    ("User-Agent", "OpenAI/Python 3.57.0"),
    ("X-Stainless-Lang", "python"),
    ("Authorization", "Bearer sk-test"),
]


@pytest.fixture(params=[httpx, httpx2], ids=["httpx", "httpx2"])
def module(request):
    return request.param


def public_copy(headers):
    """The same headers in a class with no `_list`: only the public API can be used on it."""

    class PublicOnly:
        def __init__(self, inner):
            self._inner = inner

        @property
        def raw(self):
            return self._inner.raw

        def get(self, key, default=None):
            return self._inner.get(key, default)

        def __setitem__(self, key, value):
            self._inner[key] = value

    return PublicOnly(type(headers)(headers))


def test_both_httpx_and_httpx2_headers_take_the_fast_path(module):
    assert cost._layout_of(module.Headers) is True


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ([], (None, None, False)),
        ([("X-Cost-Run-ID", "run-1")], ("run-1", None, True)),
        ([("x-cost-feature", "search"), ("X-COST-RUN-ID", "run-2")], ("run-2", "search", True)),
        ([("X-Cost-Run-ID", "")], (None, None, True)),
        ([("X-Cost-Other", "x")], (None, None, False)),
    ],
)
def test_reading_gives_the_public_api_answer(module, extra, expected):
    headers = module.Headers(SDK_HEADERS + extra)
    assert cost.cost_headers(headers) == expected
    assert cost.cost_headers(public_copy(headers)) == expected


@pytest.mark.parametrize(
    ("extra", "run_id", "feature"),
    [
        ([], "run-1", "search"),
        ([], "run-1", None),
        ([], "run-1", "recherche-été"),  # not ASCII: percent-encoded (header_value)
        ([("X-Cost-Run-ID", "")], "run-1", "search"),  # an empty header is replaced, not doubled
        ([("X-Cost-Feature", "mine")], "run-1", None),
    ],
)
def test_adding_gives_what_setitem_gives(module, extra, run_id, feature):
    headers = module.Headers(SDK_HEADERS + extra)
    expected = module.Headers(headers)
    if run_id is not None:
        expected["X-Cost-Run-ID"] = cost.header_value(run_id)
    if feature is not None:
        expected["X-Cost-Feature"] = cost.header_value(feature)
    _, _, tagged = cost.cost_headers(headers)
    cost.add_cost_headers(headers, run_id, feature, replace=tagged)
    assert headers.raw == expected.raw
    assert headers.get("x-cost-run-id") == run_id


@pytest.mark.parametrize(("text", "sent"), [
    ("run-1 of 3", "run-1 of 3"),
    ("50%-off", "50%25-off"),  # "%" is encoded too, so that reading decodes exactly
    ("a\nb", "a%0Ab"),
    ("a\x00b", "a%00b"),
    (" padded ", "%20padded%20"),
    ("café", "caf%C3%A9"),
])
def test_header_values_are_sent_as_they_are_or_percent_encoded(text, sent):
    assert cost.header_value(text) == sent
    for module in (httpx, httpx2):  # what the HTTP libraries accept, in either way of adding it
        headers = module.Headers(SDK_HEADERS)
        cost.add_cost_headers(headers, text, text, replace=False)
        assert headers["x-cost-run-id"] == headers["x-cost-feature"] == sent


@pytest.mark.parametrize("text", ["run-1", "caf\u00e9", "caf%C3%A9", "a\nb", " x ", "100%", "%zz"])
def test_a_value_sent_is_the_value_read(text):
    for module in (httpx, httpx2):
        headers = module.Headers(SDK_HEADERS)
        cost.add_cost_headers(headers, text, text, replace=False)
        assert cost.cost_headers(headers) == (text, text, True)


def test_a_headers_class_with_another_layout_uses_the_public_api():
    class OtherLayout(httpx2.Headers):
        """Keeps `_list` but in a different shape: the probe must refuse it."""

        def __init__(self, headers=None):
            super().__init__(headers)
            self._list = [(lowered, value) for _, lowered, value in self._list]

        @property
        def raw(self):
            return list(self._list)

        def __setitem__(self, key, value):
            self._list.append((key.lower().encode(), value.encode()))

    assert cost._layout_of(OtherLayout) is False
    headers = OtherLayout([("Accept", "application/json")])
    run_id, feature, tagged = cost.cost_headers(headers)
    assert (run_id, feature, tagged) == (None, None, False)
    cost.add_cost_headers(headers, "run-1", "search", replace=tagged)
    assert headers.raw == [
        (b"accept", b"application/json"),
        (b"x-cost-run-id", b"run-1"),
        (b"x-cost-feature", b"search"),
    ]


@pytest.mark.parametrize(
    "answer_headers",
    [
        [("Content-Type", "text/event-stream; charset=utf-8"), ("X-Request-Id", "1")],
        [("content-type", "application/json"), ("CONTENT-ENCODING", "gzip"), ("Date", "today")],
        [("Date", "today")],
        [("content-encoding", "gzip"), ("Content-Encoding", "identity"), ("content-type", "a/b")],
    ],
)
def test_content_headers_equal_what_headers_get_gives(module, answer_headers):
    headers = module.Headers(answer_headers)
    expected = (headers.get("content-type", ""), headers.get("content-encoding", ""))
    assert cost.content_headers(headers) == expected
    assert cost.content_headers(public_copy(headers)) == expected
