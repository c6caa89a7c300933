"""The OpenAPI 3.1 document of the pull API (``GET /v1/openapi.json``) against a real
``logsync serve`` of the interop app: it is valid OpenAPI 3.1, and schemathesis's generated
requests (valid and invalid, JSON and msgpack) to every operation it documents are never
answered 5xx and always with a documented status, content type, headers and body.

Bounded and repeatable: ``MAX_EXAMPLES`` per operation and mode, derandomized (a fixed seed), no example
database. Long-polls are capped by the server's ``--pull-wait-max-s`` so a generated ``wait``
costs at most that; the brute-force lock is lifted so random tokens do not lock the test's
address out of the authenticated paths.
"""

from __future__ import annotations

import json
import urllib.request
import zlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, reject, settings
from hypothesis.errors import Unsatisfiable
from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV31SpecValidator
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import INTEROP_APP
from tests.support.server import ServerProcess

Operation = schemathesis.APIOperation[Any, Any, Any, Any]
MAX_EXAMPLES = 40  # per operation and mode: 80 requests to each, half valid, half not
WAIT_MAX_S = "0.05"
TOKEN = "secret"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    # what the document forbids is refused (4xx). Not positive_data_acceptance: the bounds that
    # are settings (pull_page_max, pull_wait_max_s), node ids and credentials are checked by the
    # server, not written into the schema, so schema-valid data may rightly get a 400 or 401.
    negative_data_rejection,
]
# how invalid data may be refused: schemathesis's default list, plus 413 (a body over
# max_frame_bytes is refused before it is read)
REJECTED = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]


@schemathesis.serializer("application/msgpack")
def to_msgpack(ctx: schemathesis.SerializationContext, value: Any) -> bytes:
    try:
        packed: bytes = msgpack.packb(value, use_bin_type=True)
    except OverflowError:
        reject()  # an integer beyond 64 bits has no msgpack form: no client can send it
    return packed


@schemathesis.deserializer("application/msgpack", "application/x-msgpack")
def from_msgpack(ctx: schemathesis.DeserializationContext, response: schemathesis.Response) -> Any:
    return msgpack.unpackb(response.content, raw=False)


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    process = ServerProcess(
        INTEROP_APP, "--pull-wait-max-s", WAIT_MAX_S, "--bruteforce-failures", "1000000"
    )
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def document(server: ServerProcess) -> dict[str, Any]:
    with urllib.request.urlopen(server.http_url + "v1/openapi.json", timeout=10) as response:
        assert response.status == 200
        loaded: dict[str, Any] = json.load(response)
    return loaded


@pytest.fixture(scope="module")
def api(server: ServerProcess) -> schemathesis.BaseSchema:
    config = schemathesis.Config.from_dict(
        {"checks": {"negative_data_rejection": {"expected-statuses": REJECTED}}}
    )
    url = server.http_url + "v1/openapi.json"
    return schemathesis.openapi.from_url(url, config=config, timeout=10)


def test_document_is_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1.")
    validate(document, cls=OpenAPIV31SpecValidator)  # raises on any violation
    sync = document["paths"]["/v1/sync"]["post"]
    assert set(sync["responses"]) >= {"200", "400", "401", "409", "413", "415", "503"}
    assert set(sync["requestBody"]["content"]) == {"application/json", "application/msgpack"}


def authenticated(body: Any) -> Any:
    """A /v1/sync body given a valid node id of its own (and subprotocol 3 when it has none)
    three times in four, so that generated subscriptions and actions reach the engine's rules
    rather than all stopping at the door; chosen by a checksum of the body, so the same body is
    always treated the same. Still schema-valid: only positive cases are treated."""
    if not isinstance(body, dict) or not isinstance(body.get("node"), str):
        return body
    digest = zlib.crc32(json.dumps(body, sort_keys=True, default=str).encode())
    if digest % 4 == 0:
        return body
    return {"subprotocol": 3, **body, "node": f"fuzz{digest % 97}:c{digest % 89}"}


def check_operation(
    operation: Operation, mode: schemathesis.GenerationMode, base_url: str
) -> Counter[int]:
    """Send ``MAX_EXAMPLES`` generated requests of ``mode`` to ``operation``, each response
    through ``CHECKS``; how many got each status. Raises what schemathesis found."""
    statuses: Counter[int] = Counter()
    sync = operation.label == "POST /v1/sync"

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        # no shrinking: a failure is reported as generated, within the time bound
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case[Operation]) -> None:
        if sync and mode.is_positive:
            case.body = authenticated(case.body)
        response = case.call_and_validate(
            base_url=base_url,
            headers={"Authorization": f"Bearer {TOKEN}"},
            checks=CHECKS,
            timeout=10,
        )
        statuses[response.status_code] += 1

    run()
    return statuses


def operations(api: schemathesis.BaseSchema) -> list[Operation]:
    """The operations of the document (a part schemathesis cannot read fails the test)."""
    found = []
    for result in api.get_all_operations():
        assert isinstance(result, Ok), result
        found.append(result.ok())
    return found


WAKEUPS = {"GET /v1/vapid", "POST /v1/wakeups", "GET /v1/wakeups", "DELETE /v1/wakeups/{id}"}
MODES = pytest.mark.parametrize("mode", list(schemathesis.GenerationMode), ids=str)


# schemathesis's pytest integration (schema.parametrize over a fixture's schema) does not run on
# pytest 9 (it reads Function._nodeid); its Hypothesis strategies are driven directly instead.
@MODES
def test_sync_answers_as_documented(
    api: schemathesis.BaseSchema, server: ServerProcess, mode: schemathesis.GenerationMode
) -> None:
    [sync] = [op for op in operations(api) if op.label == "POST /v1/sync"]
    statuses = check_operation(sync, mode, server.http_url.rstrip("/"))
    assert sum(statuses.values()) >= MAX_EXAMPLES // 2, statuses
    if mode.is_positive:
        # not everything stopped at the door: some requests were answered with a page
        assert statuses[200] > 0, statuses
    else:
        assert all(400 <= status < 500 for status in statuses), statuses


@MODES
def test_other_operations_answer_as_documented(
    api: schemathesis.BaseSchema, server: ServerProcess, mode: schemathesis.GenerationMode
) -> None:
    """Every other operation of the document: the wake-ups."""
    failures, checked = [], []
    for operation in operations(api):
        if operation.label == "POST /v1/sync":
            continue
        checked.append(operation.label)
        try:
            check_operation(operation, mode, server.http_url.rstrip("/"))
        except Unsatisfiable:
            # nothing to make invalid (GET /v1/vapid has no parameters): no negative case
            assert mode.is_negative, operation.label
        except (Exception, FailureGroup) as error:  # run them all, report every failure
            failures.append(f"{operation.label}:\n{error}")
    assert set(checked) >= WAKEUPS, checked
    assert not failures, "\n\n".join(failures)
