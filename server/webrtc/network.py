"""ICE configuration: which local addresses the server offers, which remote candidates it accepts, STUN/TURN.

aioice gathers host candidates on every interface except loopback. ``S2VC_WEBRTC_HOSTS`` replaces that list
(loopback included when named) for every peer connection of the process
(:func:`s2vc.transport.ice.restrict_host_addresses`, which native peers use too); :func:`filter_candidates` drops
the remote candidates outside it from an offer and :func:`s2vc.transport.ice.refuse_checks_from_elsewhere`
ignores checks that come from elsewhere, so the server never sends a connectivity check to an address outside it.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer

__all__ = ["filter_candidates", "rtc_configuration"]

log = logging.getLogger("s2vc.server")


def filter_candidates(sdp: str, hosts: Sequence[str]) -> str:
    """``sdp`` without the ``a=candidate`` lines whose address is not in ``hosts`` (unchanged when empty)."""
    if not hosts:
        return sdp
    allowed = {ipaddress.ip_address(h) for h in hosts}
    kept = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            parts = line.split()
            try:
                address = ipaddress.ip_address(parts[4])
            except (IndexError, ValueError):  # an mDNS name (.local) or garbage
                continue
            if address not in allowed:
                continue
        kept.append(line)
    return "\r\n".join(kept) + "\r\n"


def rtc_configuration(ice_servers: Sequence[dict[str, Any]]) -> RTCConfiguration:
    """The peer connections' configuration: the given STUN/TURN servers, none by default (aiortc would otherwise
    add a public STUN server)."""
    servers = []
    for entry in ice_servers:
        urls = entry.get("urls")
        if not urls:
            raise ValueError(f"webrtc_ice_servers: an entry needs 'urls': {entry!r}")
        servers.append(RTCIceServer(urls=urls, username=entry.get("username"), credential=entry.get("credential")))
    return RTCConfiguration(iceServers=servers)
