"""Ids of streams, calls and jobs: made on the server side, never taken from a client.

Behind a router that hashes the id in the path to pick a replica (``deploy/k8s``), a new stream or job must get
an id that hashes to the replica it was created on. The router therefore mints a random id for every request
(nginx's ``$request_id``), routes a creating request by hashing it, and passes it on in a header that it always
overwrites; with ``S2VC_ROUTER_ID_HEADER`` set, the server adopts that id. Anything that is not exactly 32
lowercase hex digits, or an id already in use, is ignored and the server makes its own.
"""

from __future__ import annotations

import re
import secrets
from collections import OrderedDict
from typing import Callable, Mapping

from .errors import Gone, NotFound, Refusal

_ID = re.compile(r"[0-9a-f]{32}")


def new_id(headers: Mapping[str, str] | None = None, header: str | None = None, taken: Callable[[str], bool] = lambda _: False) -> str:
    """A 128-bit hex id: the trusted router's (``headers[header]``) when valid and free, else a fresh random one."""
    if header and headers is not None:
        proposed = headers.get(header, "")
        if _ID.fullmatch(proposed) and not taken(proposed):
            return proposed
    return secrets.token_hex(16)


class Tombstones:
    """Why recently ended ids ended (the newest ``size``), so a late request learns why (410) instead of a bare 404."""

    def __init__(self, what: str, size: int = 4096) -> None:
        self.what, self.size = what, size
        self._reasons: OrderedDict[str, str] = OrderedDict()

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._reasons

    def add(self, item_id: str, reason: str) -> None:
        self._reasons[item_id] = reason
        while len(self._reasons) > self.size:
            self._reasons.popitem(last=False)

    def missing(self, item_id: str) -> Refusal:
        """The error for a request naming ``item_id``, which is not open: :class:`Gone` with the reason, or
        :class:`NotFound`."""
        if item_id in self._reasons:
            return Gone(f"{self.what} {item_id} has ended: {self._reasons[item_id]}")
        return NotFound(f"no {self.what} {item_id}")
