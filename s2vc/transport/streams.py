"""What travels over a stream connection: raw frame layouts and the message framing of a stream response.

Pure (numpy, and PyAV through :mod:`s2vc.video_io`; no torch, no web framework), so the client SDK in ``clients/``
reads and writes the same bytes.

Raw frames (request body of an encode stream, response of a decode stream) are back to back, no header:
``i420`` = planar Y, U, V at 4:2:0 (width × height × 3/2 bytes; even sizes only), ``rgb24`` = packed RGB
(width × height × 3 bytes).

A stream response (``application/x-s2vc-messages``) is a sequence of messages ``kind u8 | length u32 | body``
(big-endian), so errors and drops can be told apart from data in the middle of a live response:

* ``DATA`` (1): encode streams: the 64-byte ``.s2vc`` file header (first message of a stream), then one packed
  unit per coded frame, then the ``END`` unit when the client ends the stream; the DATA bodies of a stream
  concatenated are a ``.s2vc`` file. Decode streams: one raw frame per decoded unit.
* ``ERROR`` (2): UTF-8 JSON ``{"error": class, "message": text, "frame": n or null, "fatal": bool}``; a
  non-fatal error concerns one input item and the stream goes on; after a fatal one the response ends.
* ``DROP`` (3): UTF-8 JSON ``{"frame": n, "reason": "inbox_full" | "stale" | "cancelled" | "shutdown"}``:
  the ``n``-th input frame of the request (0-based) was not coded.
"""

from __future__ import annotations

import enum
import json
import struct
from typing import Any

import numpy as np

from ..video_io import i420_to_rgb, rgb_to_i420

MEDIA_TYPE = "application/x-s2vc-messages"
PIXEL_FORMATS = ("i420", "rgb24")
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
_HEAD = struct.Struct(">BI")


class Kind(enum.IntEnum):
    DATA = 1
    ERROR = 2
    DROP = 3


class WireError(ValueError):
    """Bytes that are not a valid message sequence, or a frame of the wrong size."""


# ---------------------------------------------------------------------------------------------- frames
def frame_bytes(pixel_format: str, width: int, height: int) -> int:
    """Bytes of one raw frame."""
    if pixel_format == "rgb24":
        return width * height * 3
    if pixel_format == "i420":
        if width % 2 or height % 2:
            raise WireError(f"i420 needs an even width and height, got {width}x{height}")
        return width * height * 3 // 2
    raise WireError(f"pixel format {pixel_format!r} is not one of {', '.join(PIXEL_FORMATS)}")


def frame_from_bytes(pixel_format: str, width: int, height: int, data: bytes | memoryview) -> np.ndarray:
    """A raw frame → uint8 RGB (height, width, 3); I420 is converted exactly as ``s2vc encode`` reads a ``.yuv``."""
    expected = frame_bytes(pixel_format, width, height)
    if len(data) != expected:
        raise WireError(f"a {width}x{height} {pixel_format} frame is {expected} bytes, got {len(data)}")
    if pixel_format == "rgb24":
        return np.frombuffer(data, np.uint8).reshape(height, width, 3).copy()
    return i420_to_rgb(data, width, height)


def frame_to_bytes(pixel_format: str, frame: np.ndarray) -> bytes:
    """uint8 RGB (height, width, 3) → a raw frame; I420 is converted exactly as ``s2vc decode`` writes a ``.yuv``."""
    height, width = frame.shape[:2]
    frame_bytes(pixel_format, width, height)  # validates the format and the size
    if pixel_format == "rgb24":
        return np.ascontiguousarray(frame).tobytes()
    return rgb_to_i420(frame)


# ---------------------------------------------------------------------------------------------- messages
def pack_message(kind: Kind, body: bytes) -> bytes:
    return _HEAD.pack(kind, len(body)) + body


def pack_json(kind: Kind, obj: dict[str, Any]) -> bytes:
    return pack_message(kind, json.dumps(obj, separators=(",", ":")).encode())


class MessageReader:
    """Incremental parser: :meth:`feed` bytes as they arrive, get back the complete ``(kind, body)`` messages."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[Kind, bytes]]:
        self._buf += data
        out = []
        while len(self._buf) >= _HEAD.size:
            kind, length = _HEAD.unpack_from(self._buf)
            if kind not in Kind._value2member_map_:
                raise WireError(f"unknown message kind {kind}")
            if length > MAX_MESSAGE_BYTES:
                raise WireError(f"message of {length} bytes exceeds {MAX_MESSAGE_BYTES}")
            end = _HEAD.size + length
            if len(self._buf) < end:
                break
            out.append((Kind(kind), bytes(self._buf[_HEAD.size : end])))
            del self._buf[:end]
        return out

    def close(self) -> None:
        """Raise :class:`WireError` if the data ended inside a message."""
        if self._buf:
            raise WireError(f"response ended inside a message ({len(self._buf)} bytes left over)")
