"""server/slots.py and server/http_errors.py: the session slots shared by streams and calls, and how a refusal
answers over HTTP."""

from __future__ import annotations

import json

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from s2vc_server.errors import Gone, NotFound, QuotaExceeded, Unavailable
from s2vc_server.http_errors import install, status_of
from s2vc_server.ids import Tombstones
from s2vc_server.metrics import Metrics
from s2vc_server.settings import load_settings
from s2vc_server.slots import SlotPool


def test_a_full_pool_refuses_newcomers_and_keeps_its_holders(tmp_path):
    metrics = Metrics()
    pool = SlotPool(load_settings(data_dir=tmp_path, max_sessions=2, dev_mode=True), metrics)
    for holder in ("stream-1", "call-1"):
        pool.check(lambda: 9)
        pool.take(holder)
    with pytest.raises(Unavailable) as refused:
        pool.check(lambda: 7)
    assert refused.value.retry_after == 7 and "max_sessions" in refused.value.message
    assert pool.used == 2 and metrics.sessions_rejected._value.get() == 1
    pool.give_back("call-1")
    pool.check(lambda: 9)  # a slot given back counts again
    assert pool.used == 1


def test_refusals_answer_with_their_status_and_retry_after():
    app = FastAPI()
    install(app)
    gone = Tombstones("stream")
    gone.add("a" * 32, "idle")

    @app.get("/full")
    def full() -> None:
        raise Unavailable("all 2 session slots are taken", retry_after=3)

    @app.get("/gone/{item}")
    def ended(item: str) -> None:
        raise gone.missing(item)

    client = TestClient(app)
    full_answer = client.get("/full")
    assert (full_answer.status_code, full_answer.headers["retry-after"]) == (503, "3")
    assert json.loads(full_answer.content) == {"detail": "all 2 session slots are taken"}
    assert client.get(f"/gone/{'a' * 32}").json() == {"detail": f"stream {'a' * 32} has ended: idle"}
    assert client.get(f"/gone/{'a' * 32}").status_code == 410 and client.get("/gone/x").status_code == 404
    assert status_of(QuotaExceeded("x")) == 429 and isinstance(gone.missing("x"), NotFound) and isinstance(gone.missing("a" * 32), Gone)
