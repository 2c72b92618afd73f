"""ICE restrictions (server/webrtc/network.py, s2vc/transport/ice.py): offered candidates, incoming checks,
host addresses, STUN/TURN configuration."""

from __future__ import annotations

import aioice.ice
import pytest

from s2vc.transport.ice import refuse_checks_from_elsewhere, restrict_host_addresses
from s2vc_server.webrtc.network import filter_candidates, rtc_configuration

OFFER = "\r\n".join([
    "v=0",
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
    "a=candidate:1 1 udp 2122260223 192.0.2.2 50000 typ host",
    "a=candidate:2 1 udp 2122194687 127.0.0.1 50001 typ host",
    "a=candidate:3 1 udp 2122129151 0f3c6a2e-1111-2222-3333-444455556666.local 50002 typ host",
    "a=candidate:4 1 udp 1686052607 203.0.113.9 50003 typ srflx raddr 192.0.2.2 rport 50000",
    "a=sctp-port:5000",
]) + "\r\n"


def test_only_candidates_on_the_allowed_addresses_are_kept():
    kept = filter_candidates(OFFER, ["127.0.0.1"])
    assert [line.split()[4] for line in kept.splitlines() if line.startswith("a=candidate")] == ["127.0.0.1"]
    assert "a=sctp-port:5000" in kept and kept.startswith("v=0\r\nm=application")
    assert filter_candidates(OFFER, []) == OFFER


@pytest.fixture
def restore_aioice():
    before = aioice.ice.get_host_addresses, aioice.ice.Connection.request_received
    yield
    aioice.ice.get_host_addresses, aioice.ice.Connection.request_received = before


def test_host_addresses_are_replaced_by_the_setting(restore_aioice):
    restrict_host_addresses(["127.0.0.1", "::1"])
    assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) == ["127.0.0.1"]
    assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == ["127.0.0.1", "::1"]
    with pytest.raises(ValueError):
        restrict_host_addresses(["localhost"])


def test_checks_from_elsewhere_are_ignored(restore_aioice):
    seen = []
    aioice.ice.Connection.request_received = lambda self, message, addr, protocol: seen.append(addr)
    refuse_checks_from_elsewhere(["127.0.0.1"])
    refuse_checks_from_elsewhere(["127.0.0.1"])  # applying it twice wraps once
    handler = aioice.ice.Connection.request_received
    handler(None, None, ("192.0.2.2", 50000), None)
    handler(None, None, ("not-an-address", 1), None)
    handler(None, None, ("127.0.0.1", 50001), None)
    assert seen == [("127.0.0.1", 50001)]


def test_ice_servers_come_from_the_setting():
    config = rtc_configuration([{"urls": "turn:turn.example.com:3478", "username": "u", "credential": "p"}])
    assert [(s.urls, s.username, s.credential) for s in config.iceServers] == [("turn:turn.example.com:3478", "u", "p")]
    assert rtc_configuration([]).iceServers == []  # none: aiortc would otherwise use a public STUN server
    with pytest.raises(ValueError, match="urls"):
        rtc_configuration([{"username": "u"}])


def test_webrtc_settings_are_checked(monkeypatch):
    from s2vc_server.settings import Settings

    monkeypatch.setenv("S2VC_WEBRTC_HOSTS", "127.0.0.1, ::1")
    monkeypatch.setenv("S2VC_WEBRTC_ICE_SERVERS", '[{"urls": "stun:stun.example.com:3478"}]')
    settings = Settings()
    assert settings.webrtc_hosts == ["127.0.0.1", "::1"] and settings.webrtc_ice_servers[0]["urls"].startswith("stun:")
    monkeypatch.setenv("S2VC_WEBRTC_HOSTS", "localhost")
    with pytest.raises(ValueError, match="not an IP address"):
        Settings()
