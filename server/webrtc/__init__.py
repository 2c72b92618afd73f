"""WebRTC calls (aiortc): signalling, media in and out, the S²VC units on data channels, rooms. docs/webrtc.md."""
