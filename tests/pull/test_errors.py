"""POST /v1/sync's error answers (400, 401, 413, 415, 503), the brute-force lock, the OpenAPI
document and the metrics, on a real in-process node."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from logsync.engine import ServerNode
from logsync.protocol.pull import ErrorBody, SyncRequest, SyncResponse
from logsync.server.http import build_web_app
from tests.pull.conftest import ClientFactory, Puller, start_node

pytestmark = pytest.mark.timeout(30)

Client = TestClient[Any, Any]


async def post_raw(client: Client, data: bytes, content_type: str) -> tuple[int, Any, Any]:
    response = await client.post("/v1/sync", data=data, headers={"Content-Type": content_type})
    body = orjson.loads(await response.read())
    ErrorBody.model_validate(body) if response.status != 200 else SyncResponse.model_validate(body)
    return response.status, body, response.headers


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b"{not json", None),
        (orjson.dumps({"token": "secret"}), "node"),
        (orjson.dumps({"node": "no spaces allowed"}), "node"),
        (orjson.dumps({"node": "10:p", "limit": 0}), "limit"),
        (orjson.dumps({"node": "10:p", "limit": 5000}), "limit"),
        (orjson.dumps({"node": "10:p", "limit": True}), "limit"),
        (orjson.dumps({"node": "10:p", "wait": 26}), "wait"),
        (orjson.dumps({"node": "10:p", "surprise": 1}), "surprise"),
        (
            orjson.dumps(
                {"node": "10:p", "actions": [[{"type": 5}, {"id": "1 10:p 0", "time": 1}]]}
            ),
            "actions",
        ),
        (orjson.dumps({"node": "10:p", "actions": [[{"type": "a"}, {"time": 1}]]}), "actions"),
        (orjson.dumps({"node": "10:p", "subscribe": [{"since": {}}]}), "subscribe"),
    ],
)
async def test_malformed_requests_are_400(client: Client, body: bytes, where: str | None) -> None:
    status, answer, _ = await post_raw(client, body, "application/json")
    assert status == 400 and answer["error"] == "bad-request"
    if where is not None:
        assert any(detail["loc"][0] == where for detail in answer["details"]), answer


async def test_a_broken_cursor_or_action_id_is_400(client: Client) -> None:
    p = Puller(client, "10:phone")
    status, answer = await p.post({"cursor": "!!not-a-cursor"})
    assert (status, answer["error"]) == (400, "bad-request")
    status, answer = await p.post({"actions": [[{"type": "notify"}, {"id": "x", "time": 1}]]})
    assert (status, answer["error"]) == (400, "bad-request") and "action id" in answer["reason"]


async def test_wrong_credentials_and_subprotocol(client: Client) -> None:
    status, answer = await Puller(client, "10:phone", token="wrong").post({})
    assert (status, answer["error"]) == (401, "wrong-credentials")
    status, answer = await Puller(client, "server:x").post({})
    assert (status, answer["error"]) == (401, "wrong-credentials")  # reserved
    status, answer = await Puller(client, "10:phone").post({"subprotocol": 0})
    assert (status, answer["error"]) == (400, "wrong-subprotocol")
    assert (answer["supported"], answer["used"]) == (1, 0)


async def test_the_token_may_come_as_a_bearer_header(client: Client) -> None:
    body = orjson.dumps({"node": "10:phone", "subprotocol": 2})
    response = await client.post(
        "/v1/sync",
        data=body,
        headers={"Content-Type": "application/json", "Authorization": "Bearer secret"},
    )
    assert response.status == 200


async def test_brute_force_lock(client: Client) -> None:
    for _ in range(3):
        status, _answer = await Puller(client, "10:phone", token="guess").post({})
        assert status == 401
    status, answer = await Puller(client, "10:phone").post({})
    assert (status, answer["error"]) == (401, "wrong-credentials")  # locked, even when right


async def test_unsupported_media_type_is_415(client: Client) -> None:
    status, answer, headers = await post_raw(client, b"node=10:phone", "text/plain")
    assert (status, answer["error"]) == (415, "unsupported-media-type")
    assert headers["Cache-Control"] == "no-store"


@pytest.fixture
async def small_client(
    store_url: str, aiohttp_client: ClientFactory
) -> AsyncIterator[tuple[ServerNode, Client]]:
    node = await start_node(
        store_url, max_frame_bytes=2048, handshake_queue=2, handshake_rate=0.01, handshake_burst=1
    )
    try:
        yield node, await aiohttp_client(build_web_app(node))
    finally:
        await node.stop()


async def test_a_body_over_max_frame_bytes_is_413(
    small_client: tuple[ServerNode, Client],
) -> None:
    _, client = small_client
    big = orjson.dumps({"node": "10:phone", "token": "x" * 4000})
    status, answer, _ = await post_raw(client, big, "application/json")
    assert (status, answer["error"], answer["limit"]) == (413, "too-large", 2048)

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
        for _ in range(4):
            yield b" " * 1000

    response = await client.post(
        "/v1/sync", data=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status == 413


async def test_over_admission_is_503_with_a_retry_hint(
    small_client: tuple[ServerNode, Client],
) -> None:
    node, client = small_client
    admission = node.admission
    await admission.admit()  # the burst token, held (not done)
    waiting = []
    while not admission.full():  # take every place in the queue (one token per 100 s)
        waiting.append(asyncio.create_task(admission.admit()))
        await asyncio.sleep(0)  # the task queues itself
    body = {"node": "10:phone", "token": "secret", "subprotocol": 2}
    status, answer, headers = await post_raw(client, orjson.dumps(body), "application/json")
    assert (status, answer["error"]) == (503, "try-again-later")
    # the queue ahead drains at the current rate: far beyond the clamp
    assert int(headers["Retry-After"]) == node.settings.handshake_retry_max_ms // 1000
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    admission.done()
    assert (admission.waiting, admission.in_progress) == (0, 0)


async def test_openapi_document(client: Client) -> None:
    response = await client.get("/v1/openapi.json")
    assert response.status == 200
    document = await response.json()
    assert document["openapi"] == "3.1.0"
    sync = document["paths"]["/v1/sync"]["post"]
    assert set(sync["responses"]) >= {"200", "400", "401", "409", "413", "415", "503"}
    schemas = document["components"]["schemas"]
    assert {"SyncRequest", "SyncResponse", "ErrorBody", "SubscribeItem"} <= set(schemas)
    assert schemas["SyncRequest"]["required"] == ["node"]
    assert set(schemas["SyncRequest"]["properties"]) == set(SyncRequest.model_fields)


async def test_metrics_count_requests_by_status(client: Client) -> None:
    await Puller(client, "10:phone").sync()
    await Puller(client, "10:phone", token="bad").post({})
    text = await (await client.get("/metrics")).text()
    assert 'logsync_pull_requests_total{status="200"} 1.0' in text
    assert 'logsync_pull_requests_total{status="401"} 1.0' in text
    assert "logsync_pull_waiting 0.0" in text
    assert 'logsync_limit{setting="pull_page_max"} 1000.0' in text
