"""Clients of the s2vc server: the Python SDK (:mod:`clients.sdk`), full-duplex stream requests
(:mod:`clients.duplex`) and the load generator (:mod:`clients.loadgen`). They talk to the server only over HTTP."""

from .errors import JobFailed, ServerError
from .sdk import S2VCClient, StreamReply

__all__ = ["JobFailed", "S2VCClient", "ServerError", "StreamReply"]
