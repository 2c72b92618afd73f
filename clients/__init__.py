"""Clients of the s2vc server (installed as ``s2vc_clients``): the Python SDK (:mod:`clients.sdk`), full-duplex
stream requests (:mod:`clients.duplex`), the native WebRTC peer (:mod:`clients.call`) and the load generator
(:mod:`clients.loadgen`). They talk to the server only over the wire."""

from .errors import JobFailed, ServerError
from .sdk import S2VCClient, StreamReply

__all__ = ["JobFailed", "S2VCClient", "ServerError", "StreamReply"]
