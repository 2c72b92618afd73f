"""WebRTC calls (aiortc): signalling, the peer shell, encoder and decoder sessions, the roles of a call, rooms.
docs/webrtc.md ("Server side") lists the modules."""
