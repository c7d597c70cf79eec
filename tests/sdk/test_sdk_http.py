"""The SDK's one HTTP exchange (`agent_variants._http`): what is retried, what is not, and
how answers become values or typed errors. Pure functions over real httpx objects."""

from __future__ import annotations

import httpx
import pytest
from agent_variants import Conflict, NotFound, RateLimited, Unavailable, ValidationFailed
from agent_variants._http import ATTEMPTS, Call, etag, result, segment, wait_before_retry

REQUEST = httpx.Request("GET", "http://service/v1/agents")


def answer(status: int, body: dict | None = None, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers, request=REQUEST)


GET = Call.of("GET", "/v1/agents")
POST = Call.of("POST", "/v1/agents", json={"name": "x"})
DELETE = Call.of("DELETE", "/v1/agents/x")
PATCH = Call.of("PATCH", "/v1/agents/x", json={"description": "y"})
PATCH_IF = Call.of("PATCH", "/v1/agents/x", json={"description": "y"}, if_match=3)
NEVER_SENT = httpx.ConnectError("refused", request=REQUEST)
LOST = httpx.ReadError("reset", request=REQUEST)


def test_every_post_carries_its_own_idempotency_key_and_a_given_one_is_kept() -> None:
    keys = {Call.of("POST", "/v1/agents").headers["Idempotency-Key"] for _ in range(100)}
    assert len(keys) == 100 and all(1 <= len(key) <= 255 for key in keys)
    assert Call.of("POST", "/v1/agents", idempotency_key="mine").headers["Idempotency-Key"] == "mine"
    assert "Idempotency-Key" not in GET.headers and "Idempotency-Key" not in PATCH.headers


def test_if_match_takes_a_version_an_etag_or_a_star() -> None:
    assert etag(3) == '"3"' and etag("*") == "*" and etag('"3"') == '"3"' and etag("4") == '"4"'
    assert PATCH_IF.headers["If-Match"] == '"3"'


def test_a_ref_is_one_path_segment_and_unset_params_are_left_out() -> None:
    assert segment("a/b?c") == "a%2Fb%3Fc"
    assert Call.of("GET", "/v1/agents", params={"limit": 5, "after": None}).params == {"limit": 5}
    assert Call.of("GET", "/x", params={"explain": True}).params == {"explain": "true"}


@pytest.mark.parametrize("call", [GET, POST, DELETE, PATCH, PATCH_IF])
def test_a_request_that_never_reached_the_service_is_always_retried(call: Call) -> None:
    assert wait_before_retry(call, 1, None, NEVER_SENT) is not None


@pytest.mark.parametrize(
    ("call", "retried"), [(GET, True), (POST, True), (PATCH, True), (DELETE, False), (PATCH_IF, False)]
)
def test_a_lost_answer_is_retried_only_where_a_second_attempt_does_nothing_twice(call: Call, retried: bool) -> None:
    assert (wait_before_retry(call, 1, None, LOST) is not None) is retried
    assert (wait_before_retry(call, 1, answer(503), None) is not None) is retried


def test_retries_stop_after_the_last_attempt_and_back_off() -> None:
    waits = [wait_before_retry(GET, attempt, answer(502), None) for attempt in range(1, ATTEMPTS + 1)]
    assert waits[-1] is None and all(w is not None and w > 0 for w in waits[:-1])
    # Jittered, but each doubles the base: attempt 3's least wait exceeds attempt 1's most.
    assert min(wait_before_retry(GET, 3, answer(502), None) or 0 for _ in range(50)) > 0.3


def test_retry_after_is_honoured_when_short_and_left_to_the_caller_when_long() -> None:
    assert wait_before_retry(GET, 1, answer(429, {"code": "rate_limited"}, **{"Retry-After": "2"}), None) == 2.0
    assert wait_before_retry(GET, 1, answer(429, {"code": "rate_limited"}, **{"Retry-After": "60"}), None) is None
    with pytest.raises(RateLimited) as limited:
        result(answer(429, {"code": "rate_limited"}, **{"Retry-After": "60"}), None)
    assert limited.value.retry_after == 60.0 and limited.value.code == "rate_limited"


def test_a_post_still_in_flight_under_its_key_is_waited_for_and_other_conflicts_are_final() -> None:
    assert wait_before_retry(POST, 1, answer(409, {"code": "idempotency_key_in_use"}), None) is not None
    assert wait_before_retry(POST, 1, answer(409, {"code": "slug_taken"}), None) is None
    assert wait_before_retry(GET, 1, answer(404, {"code": "resource_missing"}), None) is None


def test_answers_become_values_or_typed_errors_that_keep_the_problem() -> None:
    assert result(answer(200, {"object": "agent"}), None) == {"object": "agent"}
    assert result(httpx.Response(204, request=REQUEST), None) is None
    problem = {"status": 422, "code": "validation_error", "errors": [{"param": "name", "message": "required"}]}
    with pytest.raises(ValidationFailed) as invalid:
        result(answer(422, problem), None)
    assert invalid.value.errors == problem["errors"] and invalid.value.problem == problem
    with pytest.raises(Conflict) as conflict:
        result(answer(409, {"code": "slug_taken", "detail": "Slug 'x' is taken"}), None)
    assert conflict.value.code == "slug_taken" and str(conflict.value) == "Slug 'x' is taken"
    with pytest.raises(NotFound):
        result(answer(404, {"code": "resource_missing"}), None)
    with pytest.raises(Unavailable):
        result(httpx.Response(502, text="<html>bad gateway</html>", request=REQUEST), None)
    with pytest.raises(Unavailable) as unreachable:
        result(None, NEVER_SENT)
    assert isinstance(unreachable.value.__cause__, httpx.ConnectError)


@pytest.mark.parametrize("call", [GET, POST, DELETE, PATCH, PATCH_IF])
def test_a_429_did_nothing_so_any_request_goes_again_after_retry_after(call: Call) -> None:
    assert wait_before_retry(call, 1, answer(429, {"code": "rate_limited"}, **{"Retry-After": "1"}), None) == 1.0


def test_retry_after_as_an_http_date() -> None:
    from datetime import UTC, datetime, timedelta
    from email.utils import format_datetime

    in_a_while = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    with pytest.raises(RateLimited) as limited:
        result(answer(429, {"code": "rate_limited"}, **{"Retry-After": in_a_while}), None)
    assert limited.value.retry_after is not None and 25 <= limited.value.retry_after <= 30
    past = format_datetime(datetime.now(UTC) - timedelta(seconds=30), usegmt=True)
    assert wait_before_retry(GET, 1, answer(503, None, **{"Retry-After": past}), None) == 0.0
    assert wait_before_retry(GET, 1, answer(503, None, **{"Retry-After": "soon"}), None) is not None  # backoff
