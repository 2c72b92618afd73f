"""Every error the codec raises on purpose. Each is documented in docs/bitstream.md (decoding) or README (files).

All derive from :class:`S2VCError`, so a server can catch one type and answer 4xx without guessing.
"""

from __future__ import annotations


class S2VCError(Exception):
    """Base class of all deliberate s2vc errors."""


class BitstreamError(S2VCError):
    """The bytes given to the decoder cannot be decoded. Subclasses say why."""


class TruncatedStreamError(BitstreamError):
    """The data ends inside a header or a unit (a partial upload, a cut connection)."""


class CorruptStreamError(BitstreamError):
    """Bad magic, an unknown field value or a checksum mismatch: the bytes were altered."""


class UnsupportedVersionError(BitstreamError):
    """The stream was written by a format version this decoder does not read."""


class UnitOrderError(BitstreamError):
    """A unit arrived out of order: a P unit before any I unit, a missing or repeated frame index."""


class ModelMismatchError(BitstreamError):
    """The stream was made by another model (preset, weights or rate point that this decoder lacks)."""


class StateMismatchError(BitstreamError):
    """This decoder computes other entropy parameters for a unit than its encoder did: the stream was made by
    another engine, machine or thread setting (or other weights under the same identity), or a live decoder
    drifted after a loss.

    Raised before the unit's picture is produced, so a caller never receives a wrong picture. ``frame_index`` is
    the frame that failed. In a file that is final (decode it where it was made); in a live call, request an
    I-frame to recover.
    """

    def __init__(self, message: str, frame_index: int | None = None) -> None:
        super().__init__(message)
        self.frame_index = frame_index


class CheckpointError(S2VCError):
    """A checkpoint file or folder is missing, incomplete or does not match the architecture."""


class InputError(S2VCError):
    """Input frames or video files that cannot be used (unreadable, wrong size, empty)."""


class LimitError(InputError):
    """A picture (a stream header, a frame, a video file) larger than the configured limits of width, height and
    pixels (:class:`s2vc.limits.FrameLimits`). Raised before anything of that size is allocated."""
