"""HTTP plumbing of the API server as clients see it: ``Expect: 100-continue``, the body size
limit on chunked bodies, and the application's clean-up signal on stop (the server runs on
aiohttp's low-level server, not its router)."""

import asyncio
import json
import socket

import aiohttp

CM = "/api/v1/namespaces/default/configmaps"


def _raw_exchange(server, head: bytes, body: bytes, wait_for_continue: bool):
    """Send a request's head, optionally read the interim response, then send the body;
    return (interim bytes, final response bytes)."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head)
        interim = b""
        if wait_for_continue:
            while b"\r\n\r\n" not in interim:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                interim += chunk
            if not interim.startswith(b"HTTP/1.1 100"):
                return interim, b""
        sock.sendall(body)
        final = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            final += chunk
            head_end = final.find(b"\r\n\r\n")
            if head_end >= 0:
                length = [int(line.split(b":")[1]) for line in final[:head_end].split(b"\r\n")
                          if line.lower().startswith(b"content-length:")]
                if length and len(final) >= head_end + 4 + length[0]:
                    break
        return interim, final


def _head(method: str, path: str, body: bytes, expect: str) -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nExpect: {expect}\r\n\r\n").encode()


def test_expect_100_continue_gets_the_interim_response(apiserver):
    body = json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": "expect-continue"}, "data": {"a": "b"}}).encode()
    interim, final = _raw_exchange(apiserver, _head("POST", CM, body, "100-continue"), body,
                                   wait_for_continue=True)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert final.startswith(b"HTTP/1.1 201 ")
    created = json.loads(final.split(b"\r\n\r\n", 1)[1])
    assert created["metadata"]["name"] == "expect-continue"


def test_unknown_expectation_is_417(apiserver):
    body = b"{}"
    _, final = _raw_exchange(apiserver, _head("POST", CM, body, "something-else"), b"",
                             wait_for_continue=False)
    assert final.startswith(b"HTTP/1.1 417 ")
    assert b"Unknown Expect: something-else" in final


def _post_chunked(server, size: int):
    payload = json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                          "metadata": {"name": "chunked-big"},
                          "data": {"a": "x" * size}}).encode()

    async def chunks():
        for i in range(0, len(payload), 65536):
            yield payload[i:i + 65536]

    async def go():
        async with aiohttp.ClientSession() as s:
            async with s.post(server.url + CM, data=chunks(),
                              headers={"Content-Type": "application/json"}) as r:
                return r.status, await r.json(content_type=None)
    return asyncio.run(go())


def test_chunked_body_limit_is_the_apis_not_aiohttps_default(apiserver):
    # over aiohttp's 1 MiB default, under the API's 3 MiB: read, then refused by validation
    status, body = _post_chunked(apiserver, 1536 * 1024)
    assert status == 422, body
    assert body["reason"] == "Invalid"
    status, body = _post_chunked(apiserver, 3 * 1024 * 1024)
    assert status == 413
    assert body["kind"] == "Status" and body["reason"] == "RequestEntityTooLarge"


def test_stop_sends_the_apps_cleanup_signal(start_apiserver):
    server = start_apiserver()
    proxy = server.server.node_proxy
    session = server.call(proxy._client)
    assert not session.closed
    server.stop()
    assert session.closed
