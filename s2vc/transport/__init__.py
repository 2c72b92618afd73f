"""What travels between peers: the message formats of HTTP streams and WebRTC data channels.

The codec (every other module of :mod:`s2vc`) never imports this package; it builds on the codec's bitstream and
frame conversions, and the server and the clients share it so both ends read and write the same bytes.

* :mod:`s2vc.transport.streams`: raw frame layouts and the message framing of an HTTP stream response
  (``application/x-s2vc-messages``);
* :mod:`s2vc.transport.calls`: the data-channel messages of a WebRTC call (docs/webrtc.md);
* :mod:`s2vc.transport.ice`: the process-wide aioice settings both WebRTC ends use (the only place under
  :mod:`s2vc` that imports aiortc's ICE library).
"""
