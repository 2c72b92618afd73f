"""Stream and job ids: a trusted router's id is adopted only when configured, valid and free."""

from __future__ import annotations

import secrets

import httpx

from s2vc_server.ids import new_id

from .test_server_common import KEY, server_fixture

server = server_fixture("ids", api_keys=KEY, router_id_header="X-Request-ID")
AUTH = {"Authorization": f"Bearer {KEY}"}


def test_new_id_adopts_only_a_valid_free_router_id():
    good = secrets.token_hex(16)
    assert new_id({"X-Request-ID": good}, "X-Request-ID") == good
    assert new_id({"X-Request-ID": good}, None) != good  # not configured: ignored
    assert new_id({"X-Request-ID": good}, "X-Request-ID", taken=lambda i: i == good) != good
    for bad in ("../../etc", good.upper(), good[:-1], good + "0", ""):
        made = new_id({"X-Request-ID": bad}, "X-Request-ID")
        assert made != bad and len(made) == 32 and int(made, 16) >= 0


def test_streams_and_jobs_take_the_router_id(server):
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as http:
        rid = secrets.token_hex(16)
        reply = http.post("/v1/streams", json={"width": 64, "height": 64}, headers={"X-Request-ID": rid})
        assert reply.status_code == 201, reply.text
        assert reply.json()["id"] == rid
        again = http.post("/v1/streams", json={"width": 64, "height": 64}, headers={"X-Request-ID": rid})
        assert again.status_code == 201 and again.json()["id"] != rid  # in use: the server makes its own
        hostile = http.post("/v1/streams", json={"width": 64, "height": 64}, headers={"X-Request-ID": "../x"})
        assert hostile.status_code == 201 and hostile.json()["id"] != "../x"
        for sid in (rid, again.json()["id"], hostile.json()["id"]):
            assert http.delete(f"/v1/streams/{sid}").status_code in (200, 204)
        jid = secrets.token_hex(16)
        y4m = b"YUV4MPEG2 W16 H16 F25:1 C420jpeg\n" + b"FRAME\n" + bytes(16 * 16 * 3 // 2)
        job = http.post("/v1/jobs", files={"file": ("a.y4m", y4m)}, data={"operation": "encode"}, headers={"X-Request-ID": jid})
        assert job.status_code in (200, 201, 202), job.text
        assert job.json()["id"] == jid
        assert http.get(f"/v1/jobs/{jid}").status_code == 200
