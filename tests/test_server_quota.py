"""Fairness on a real server (issue 17.10): one API key cannot take every stream slot, and the OpenAPI schema
documents the 4xx/5xx answers with a body schema that fits them."""

from __future__ import annotations

import httpx
import pytest

from s2vc_clients import S2VCClient, ServerError

from .test_server_common import server_fixture

KEY_A = "quota-key-a-0123456789abcdef"
KEY_B = "quota-key-b-0123456789abcdef"

server = server_fixture("quota", api_keys=f"{KEY_A},{KEY_B}", max_sessions=4, max_sessions_per_key=2, idle_timeout_s=30)


def test_one_key_gets_its_share_and_429_beyond_it(server):
    with S2VCClient(server.url, KEY_A) as a, S2VCClient(server.url, KEY_B) as b:
        held = [a.open_stream(width=64, height=64)["id"] for _ in range(2)]
        try:
            with pytest.raises(ServerError) as refused:
                a.open_stream(width=64, height=64)
            assert refused.value.status == 429 and "max_sessions_per_key" in refused.value.detail
            assert int(refused.value.headers["retry-after"]) >= 1
            other = b.open_stream(width=64, height=64)["id"]  # the other key still gets a slot
            b.close_stream(other)
            a.close_stream(held.pop())
            held.append(a.open_stream(width=64, height=64)["id"])  # a freed slot counts again
        finally:
            for stream_id in held:
                a.close_stream(stream_id)


def test_openapi_documents_the_error_answers(server):
    schema = httpx.get(f"{server.url}/openapi.json", timeout=30).json()
    post = schema["paths"]["/v1/streams"]["post"]["responses"]
    for status in ("422", "429", "503"):
        assert post[status]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
    assert "Retry-After" in post["503"]["headers"]
    assert "503" in schema["paths"]["/v1/jobs"]["post"]["responses"] or "413" in schema["paths"]["/v1/jobs"]["post"]["responses"]
    detail = schema["components"]["schemas"]["ErrorBody"]["properties"]["detail"]
    assert {"type": "string"} in detail["anyOf"]  # the service's own 422 messages fit the documented body
    # a real 422 from the service matches it
    r = httpx.post(f"{server.url}/v1/streams", json={"width": 64, "height": 64, "pixel_format": "i420", "fps": 1e6},
                   headers={"Authorization": f"Bearer {KEY_A}"}, timeout=30)
    assert r.status_code == 422 and isinstance(r.json()["detail"], str)
