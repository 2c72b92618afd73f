"""The aioice workaround: which addresses a WebRTC peer of this process offers and answers, set process-wide.

aiortc exposes no setting for either, so both functions patch its ICE library (aioice) for every peer connection
of the process, and are meant to be called once at start-up (again with the same hosts is harmless):

* :func:`restrict_host_addresses` replaces ``aioice.ice.get_host_addresses`` (aioice gathers host candidates on
  every interface except loopback) with the given addresses, loopback included when named; the server
  (``S2VC_WEBRTC_HOSTS``) and native peers (``s2vc-client call``) both use it;
* :func:`refuse_checks_from_elsewhere` wraps ``aioice.ice.Connection.request_received`` so that connectivity
  checks from a source outside the given addresses are ignored: a peer may send checks from an address it never
  announced, which ICE would learn as a peer-reflexive candidate and answer to (the server uses it).

Empty ``hosts`` leave aioice as it is. This is the only module under :mod:`s2vc` that imports aioice; it is
imported lazily, so only processes that run WebRTC load it. Written against aioice 0.13 (aiortc 1.16).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence

__all__ = ["refuse_checks_from_elsewhere", "restrict_host_addresses"]


def restrict_host_addresses(hosts: Sequence[str]) -> None:
    """Make aioice gather host candidates on ``hosts`` only (IP addresses; a name raises ValueError)."""
    if not hosts:
        return
    import aioice.ice

    addresses = [ipaddress.ip_address(h) for h in hosts]  # raises ValueError for a name
    v4 = [str(a) for a in addresses if a.version == 4]
    v6 = [str(a) for a in addresses if a.version == 6]

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return (v4 if use_ipv4 else []) + (v6 if use_ipv6 else [])

    aioice.ice.get_host_addresses = host_addresses


def refuse_checks_from_elsewhere(hosts: Sequence[str]) -> None:
    """Make aioice ignore connectivity checks whose source is not in ``hosts``."""
    if not hosts:
        return
    import aioice.ice

    allowed = {ipaddress.ip_address(h) for h in hosts}
    original = aioice.ice.Connection.request_received
    if getattr(original, "s2vc_restricted", False):
        original = original.__wrapped__  # type: ignore[attr-defined]

    @functools.wraps(original)
    def request_received(self, message, addr, protocol, *args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            source = ipaddress.ip_address(addr[0].split("%")[0])
        except ValueError:
            return None
        if source not in allowed:
            return None
        return original(self, message, addr, protocol, *args, **kwargs)

    request_received.s2vc_restricted = True  # type: ignore[attr-defined]
    aioice.ice.Connection.request_received = request_received  # type: ignore[method-assign]
