"""Ids of streams and jobs: made on the server side, never taken from a client.

Behind a router that hashes the id in the path to pick a replica (``deploy/k8s``), a new stream or job must get
an id that hashes to the replica it was created on. The router therefore mints a random id for every request
(nginx's ``$request_id``), routes a creating request by hashing it, and passes it on in a header that it always
overwrites; with ``S2VC_ROUTER_ID_HEADER`` set, the server adopts that id. Anything that is not exactly 32
lowercase hex digits, or an id already in use, is ignored and the server makes its own.
"""

from __future__ import annotations

import re
import secrets
from typing import Callable, Mapping

_ID = re.compile(r"[0-9a-f]{32}")


def new_id(headers: Mapping[str, str] | None = None, header: str | None = None, taken: Callable[[str], bool] = lambda _: False) -> str:
    """A 128-bit hex id: the trusted router's (``headers[header]``) when valid and free, else a fresh random one."""
    if header and headers is not None:
        proposed = headers.get(header, "")
        if _ID.fullmatch(proposed) and not taken(proposed):
            return proposed
    return secrets.token_hex(16)
