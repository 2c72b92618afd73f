"""The S²VC container format: a file header followed by length-prefixed, CRC-protected units.

Pure bytes, no torch. The layout is documented field by field in ``docs/bitstream.md``; all integers are
big-endian.

File header (64 bytes)::

    magic "S2VC" | version u8 (=2) | SequenceParams (55 bytes) | crc32 u32 of all preceding header bytes

SequenceParams (55 bytes)::

    model_id 32s (ASCII, NUL-padded) | weight_hash 8s | rate u8 | width u16 | height u16 | fps_num u32 |
    fps_den u16 | reset_interval u16 | intra_period u16

Unit (20 + payload bytes)::

    length u32 (bytes after this field = 16 + payload) | type u8 | flags u8 | rate u8 | reserved u8 (=0) |
    frame_index u32 | state_check u32 | payload | crc32 u32 of type..payload

Any byte input either parses or raises one of :class:`TruncatedStreamError`, :class:`CorruptStreamError`,
:class:`UnsupportedVersionError` (all :class:`BitstreamError`). Constructing a :class:`SequenceParams` or
:class:`Unit` with bad values in Python raises ``ValueError`` (a programming error, not a stream error).
"""

from __future__ import annotations

import enum
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Union

from .errors import CorruptStreamError, TruncatedStreamError, UnsupportedVersionError

__all__ = [
    "MAGIC",
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "PARAMS_SIZE",
    "UNIT_OVERHEAD",
    "MAX_UNIT_LENGTH",
    "MAX_DIMENSION",
    "FLAG_RESET",
    "FLAG_OFFSET",
    "UnitType",
    "SequenceParams",
    "Unit",
    "pack_params",
    "unpack_params",
    "pack_header",
    "unpack_header",
    "pack_unit",
    "unpack_unit",
    "seq_unit",
    "end_unit",
    "StreamReader",
    "StreamWriter",
    "read_stream",
]

MAGIC = b"S2VC"
FORMAT_VERSION = 2  # 2: state_check = CRC of the entropy parameters (I and P), symbol check seeded with the unit context
MAX_DIMENSION = 16384
MODEL_ID_SIZE = 32
WEIGHT_HASH_SIZE = 8

_PARAMS = struct.Struct(">32s8sBHHIHHH")
PARAMS_SIZE = _PARAMS.size  # 55
_PREFIX = struct.Struct(">4sB")  # magic, version
HEADER_SIZE = _PREFIX.size + PARAMS_SIZE + 4  # 64

_LEN = struct.Struct(">I")
_UNIT_FIELDS = struct.Struct(">BBBBII")  # type, flags, rate, reserved, frame_index, state_check
_CRC = struct.Struct(">I")
UNIT_MIN_LENGTH = _UNIT_FIELDS.size + _CRC.size  # 16: value of `length` for an empty payload
UNIT_OVERHEAD = _LEN.size + UNIT_MIN_LENGTH  # 20 bytes around every payload
MAX_UNIT_LENGTH = 256 * 1024 * 1024  # largest accepted `length` field: hostile lengths are refused up front

FLAG_RESET = 0x01
FLAG_OFFSET = 0x02  # I/P: the payload ends with a latent offset (docs/bitstream.md, "Latent offset")
_KNOWN_FLAGS = FLAG_RESET | FLAG_OFFSET
_READ_CHUNK = 1 << 20


class UnitType(enum.IntEnum):
    SEQ = 1  # sequence parameters repeated in-band (for receivers joining a live stream)
    I = 2  # noqa: E741  intra frame
    P = 3  # inter frame
    END = 4  # end of stream


def _crc(*parts: bytes) -> int:
    c = 0
    for p in parts:
        c = zlib.crc32(p, c)
    return c & 0xFFFFFFFF


# ----------------------------------------------------------------------------------------------------------
# sequence parameters


def _params_problem(
    model_id, weight_hash, rate, width, height, fps_num, fps_den, reset_interval, intra_period
) -> tuple[str, str] | None:
    """(field, message) of the first invalid field, or None. Shared by the constructor and the parser."""
    if not isinstance(model_id, str):
        return "model_id", "must be a str"
    if not model_id or len(model_id) > MODEL_ID_SIZE or not all(0x20 <= ord(ch) < 0x7F for ch in model_id):
        return "model_id", f"must be 1..{MODEL_ID_SIZE} printable ASCII characters, got {model_id!r}"
    if not isinstance(weight_hash, bytes) or len(weight_hash) != WEIGHT_HASH_SIZE:
        return "weight_hash", f"must be {WEIGHT_HASH_SIZE} bytes"
    checks = (
        ("rate", rate, 0, 0xFF),
        ("width", width, 1, MAX_DIMENSION),
        ("height", height, 1, MAX_DIMENSION),
        ("fps_num", fps_num, 1, 0xFFFFFFFF),
        ("fps_den", fps_den, 1, 0xFFFF),
        ("reset_interval", reset_interval, 0, 0xFFFF),
        ("intra_period", intra_period, 0, 0xFFFF),
    )
    for name, value, lo, hi in checks:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            return name, f"must be an int in [{lo}, {hi}], got {value!r}"
    return None


@dataclass(frozen=True)
class SequenceParams:
    """What a decoder needs before the first unit: which model, which rate point, the picture size and rate.

    ``reset_interval``: P-frames between context resets (0 = never reset periodically).
    ``intra_period``: frames between I-frames (0 = only the first frame is an I-frame).
    """

    model_id: str
    weight_hash: bytes
    rate: int
    width: int
    height: int
    fps_num: int
    fps_den: int = 1
    reset_interval: int = 32
    intra_period: int = 0

    def __post_init__(self):
        if isinstance(self.weight_hash, (bytearray, memoryview)):
            object.__setattr__(self, "weight_hash", bytes(self.weight_hash))
        problem = _params_problem(*self._values())
        if problem:
            raise ValueError(f"SequenceParams.{problem[0]} {problem[1]}")

    def _values(self) -> tuple:
        return (
            self.model_id,
            self.weight_hash,
            self.rate,
            self.width,
            self.height,
            self.fps_num,
            self.fps_den,
            self.reset_interval,
            self.intra_period,
        )

    @property
    def fps(self) -> float:
        return self.fps_num / self.fps_den


def pack_params(params: SequenceParams) -> bytes:
    """The 55-byte serialisation of :class:`SequenceParams` (header body and SEQ payload)."""
    return _PARAMS.pack(params.model_id.encode("ascii"), *params._values()[1:])


def unpack_params(buf: bytes) -> SequenceParams:
    """Parse exactly :data:`PARAMS_SIZE` bytes; :class:`CorruptStreamError` naming the field if invalid."""
    if len(buf) != PARAMS_SIZE:
        raise CorruptStreamError(f"sequence parameters must be {PARAMS_SIZE} bytes, got {len(buf)}")
    raw_id, weight_hash, *rest = _PARAMS.unpack(bytes(buf))
    name, _, padding = raw_id.partition(b"\0")
    if padding.strip(b"\0"):
        raise CorruptStreamError("model_id: non-NUL bytes after the NUL padding")
    try:
        model_id = name.decode("ascii")
    except UnicodeDecodeError:
        raise CorruptStreamError("model_id: not ASCII") from None
    problem = _params_problem(model_id, weight_hash, *rest)
    if problem:
        raise CorruptStreamError(f"{problem[0]}: {problem[1]}")
    return SequenceParams(model_id, weight_hash, *rest)


# ----------------------------------------------------------------------------------------------------------
# file header


def pack_header(params: SequenceParams) -> bytes:
    """The 64-byte file header."""
    body = _PREFIX.pack(MAGIC, FORMAT_VERSION) + pack_params(params)
    return body + _CRC.pack(_crc(body))


def _need(buf, offset: int, n: int, what: str) -> None:
    have = len(buf) - offset
    if have < n:
        raise TruncatedStreamError(f"{what}: expected {n} bytes, {max(have, 0)} available")


def unpack_header(buf: bytes, offset: int = 0) -> tuple[SequenceParams, int]:
    """Parse the file header at ``offset``; returns (params, number of header bytes = 64)."""
    mv = memoryview(buf).cast("B")
    avail = mv[offset : offset + len(MAGIC)].tobytes()
    if avail != MAGIC[: len(avail)]:
        raise CorruptStreamError(f"magic: expected {MAGIC!r}, got {avail!r}")
    _need(mv, offset, _PREFIX.size, "file header")
    version = mv[offset + 4]
    if version != FORMAT_VERSION:
        raise UnsupportedVersionError(f"format version {version} (this decoder reads version {FORMAT_VERSION})")
    _need(mv, offset, HEADER_SIZE, "file header")
    body = mv[offset : offset + HEADER_SIZE - 4].tobytes()
    (stored,) = _CRC.unpack_from(mv, offset + HEADER_SIZE - 4)
    if stored != _crc(body):
        raise CorruptStreamError(f"header crc32: stored {stored:#010x}, computed {_crc(body):#010x}")
    return unpack_params(body[_PREFIX.size :]), HEADER_SIZE


# ----------------------------------------------------------------------------------------------------------
# units


def _unit_problem(type_, flags, rate, reserved, frame_index, state_check, payload) -> tuple[str, str] | None:
    if type_ not in UnitType._value2member_map_:
        return "type", f"unknown unit type {type_}"
    type_ = UnitType(type_)
    if flags & ~_KNOWN_FLAGS:
        return "flags", f"unknown flag bits {flags & ~_KNOWN_FLAGS:#04x}"
    if flags & FLAG_RESET and type_ != UnitType.P:
        return "flags", f"RESET is only valid on P units, not {type_.name}"
    if flags & FLAG_OFFSET and type_ not in (UnitType.I, UnitType.P):
        return "flags", f"OFFSET is only valid on I and P units, not {type_.name}"
    if reserved != 0:
        return "reserved", f"must be 0, got {reserved}"
    if type_ not in (UnitType.I, UnitType.P) and state_check != 0:
        return "state_check", f"must be 0 on {type_.name} units"
    if type_ == UnitType.END and payload:
        return "payload", f"END payload must be empty, got {len(payload)} bytes"
    if type_ == UnitType.SEQ:
        try:
            unpack_params(payload)
        except CorruptStreamError as exc:
            return "payload", f"SEQ payload: {exc}"
    return None


@dataclass(frozen=True)
class Unit:
    """One unit. ``payload`` of SEQ = :func:`pack_params`; END = empty; I/P = the codec's coded frame."""

    type: UnitType
    flags: int = 0
    rate: int = 0
    frame_index: int = 0
    state_check: int = 0
    payload: bytes = b""

    def __post_init__(self):
        if isinstance(self.payload, (bytearray, memoryview)):
            object.__setattr__(self, "payload", bytes(self.payload))
        if not isinstance(self.payload, bytes):
            raise ValueError("Unit.payload must be bytes")
        for name, value, hi in (
            ("type", self.type, 0xFF),
            ("flags", self.flags, 0xFF),
            ("rate", self.rate, 0xFF),
            ("frame_index", self.frame_index, 0xFFFFFFFF),
            ("state_check", self.state_check, 0xFFFFFFFF),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= hi:
                raise ValueError(f"Unit.{name} must be an int in [0, {hi}], got {value!r}")
        if len(self.payload) > MAX_UNIT_LENGTH - UNIT_MIN_LENGTH:
            raise ValueError(f"Unit.payload exceeds {MAX_UNIT_LENGTH - UNIT_MIN_LENGTH} bytes")
        problem = _unit_problem(
            self.type, self.flags, self.rate, 0, self.frame_index, self.state_check, self.payload
        )
        if problem:
            raise ValueError(f"Unit.{problem[0]}: {problem[1]}")
        object.__setattr__(self, "type", UnitType(self.type))

    @property
    def reset(self) -> bool:
        """P unit whose context is re-anchored (flag bit 0)."""
        return bool(self.flags & FLAG_RESET)

    def params(self) -> SequenceParams:
        """The sequence parameters carried by a SEQ unit."""
        if self.type != UnitType.SEQ:
            raise ValueError(f"{self.type.name} units carry no sequence parameters")
        return unpack_params(self.payload)


def seq_unit(params: SequenceParams, frame_index: int) -> Unit:
    """A SEQ unit repeating ``params``; ``frame_index`` = index of the next I/P unit."""
    return Unit(UnitType.SEQ, rate=params.rate, frame_index=frame_index, payload=pack_params(params))


def end_unit(frame_index: int, rate: int = 0) -> Unit:
    """An END unit; ``frame_index`` = number of frames (index the next frame would have)."""
    return Unit(UnitType.END, rate=rate, frame_index=frame_index)


def pack_unit(unit: Unit) -> bytes:
    body = _UNIT_FIELDS.pack(unit.type, unit.flags, unit.rate, 0, unit.frame_index, unit.state_check)
    body += unit.payload
    return _LEN.pack(len(body) + _CRC.size) + body + _CRC.pack(_crc(body))


def _check_length(length: int) -> None:
    if length < UNIT_MIN_LENGTH:
        raise CorruptStreamError(f"unit length {length} is below the minimum {UNIT_MIN_LENGTH}")
    if length > MAX_UNIT_LENGTH:
        raise CorruptStreamError(f"unit length {length} exceeds the maximum {MAX_UNIT_LENGTH}")


def _parse_unit_body(body: bytes) -> Unit:
    """``body`` = the ``length`` bytes after the length field."""
    content, (stored,) = body[: -_CRC.size], _CRC.unpack(body[-_CRC.size :])
    computed = _crc(content)
    if stored != computed:
        raise CorruptStreamError(f"unit crc32: stored {stored:#010x}, computed {computed:#010x}")
    type_, flags, rate, reserved, frame_index, state_check = _UNIT_FIELDS.unpack_from(content)
    payload = content[_UNIT_FIELDS.size :]
    problem = _unit_problem(type_, flags, rate, reserved, frame_index, state_check, payload)
    if problem:
        raise CorruptStreamError(f"unit {problem[0]}: {problem[1]}")
    return Unit(UnitType(type_), flags, rate, frame_index, state_check, payload)


def unpack_unit(buf: bytes, offset: int = 0) -> tuple[Unit, int]:
    """Parse one unit at ``offset``; returns (unit, offset just after it)."""
    mv = memoryview(buf).cast("B")
    _need(mv, offset, _LEN.size, "unit length")
    (length,) = _LEN.unpack_from(mv, offset)
    _check_length(length)
    start = offset + _LEN.size
    _need(mv, start, length, "unit")
    return _parse_unit_body(mv[start : start + length].tobytes()), start + length


# ----------------------------------------------------------------------------------------------------------
# streams


class _BytesSource:
    def __init__(self, data):
        self._mv = memoryview(data).cast("B")
        self._pos = 0

    def read(self, n: int) -> bytes:
        chunk = self._mv[self._pos : self._pos + n].tobytes()
        self._pos += len(chunk)
        return chunk


class StreamReader:
    """Parse a stream from bytes or a binary file-like object (anything with ``read(n)``).

    The header is read on construction (``self.params``). :meth:`read_unit` returns the next unit, the END
    unit included, then ``None``: after END, or when the data ends exactly at a unit boundary (a live stream
    that stopped; ``self.ended`` tells whether END was seen). ``require_end=True`` (a whole file) turns a missing
    END into :class:`TruncatedStreamError` and data after END into :class:`CorruptStreamError`; otherwise
    nothing is read after END. Frame order is the decoder's business.
    Reads at most :data:`MAX_UNIT_LENGTH` per unit, in 1 MiB chunks, so a hostile length allocates nothing.
    """

    def __init__(self, source: Union[bytes, bytearray, memoryview, BinaryIO], require_end: bool = False):
        if isinstance(source, (bytes, bytearray, memoryview)):
            source = _BytesSource(source)
        self._src = source
        self.require_end = require_end
        self.ended = False
        self._done = False
        self.position = 0
        # Read the prefix first so a wrong magic or version is reported as such even on short input.
        head = self._read(_PREFIX.size)
        if len(head) < _PREFIX.size or head[:4] != MAGIC or head[4] != FORMAT_VERSION:
            unpack_header(head)  # raises: corrupt magic, truncated or unsupported version
        head += self._read(HEADER_SIZE - _PREFIX.size)
        self.params, _ = unpack_header(head)

    def _read(self, n: int) -> bytes:
        parts, got = [], 0
        while got < n:
            chunk = self._src.read(min(n - got, _READ_CHUNK))
            if not chunk:
                break
            parts.append(bytes(chunk))
            got += len(chunk)
        data = b"".join(parts)
        self.position += len(data)
        return data

    def read_unit(self) -> Unit | None:
        if self._done:
            return None
        head = self._read(_LEN.size)
        if not head:
            self._done = True
            if self.require_end:
                raise TruncatedStreamError("stream ends without an END unit: expected a unit, 0 bytes available")
            return None
        if len(head) < _LEN.size:
            raise TruncatedStreamError(f"unit length: expected {_LEN.size} bytes, {len(head)} available")
        (length,) = _LEN.unpack(head)
        _check_length(length)
        body = self._read(length)
        if len(body) < length:
            raise TruncatedStreamError(f"unit: expected {length} bytes, {len(body)} available")
        unit = _parse_unit_body(body)
        if unit.type == UnitType.END:
            self.ended = True
            self._done = True
            if self.require_end:
                end_at = self.position
                extra = self._read(1)
                if extra:
                    raise CorruptStreamError(
                        f"data after the END unit (at byte {end_at}): a file ends with its END unit; frames after it would be lost"
                    )
        return unit

    def __iter__(self) -> Iterator[Unit]:
        while (unit := self.read_unit()) is not None:
            yield unit


class StreamWriter:
    """Write a stream to a binary file-like object: the header on construction, then units.

    :meth:`close` appends the END unit (``frame_index`` = one past the last I/P unit written) and flushes;
    it does not close the underlying file. Used as a context manager, END is written on normal exit only.
    """

    def __init__(self, sink: BinaryIO, params: SequenceParams):
        self._sink = sink
        self.params = params
        self.next_frame_index = 0
        self.closed = False
        self.bytes_written = 0
        self._emit(pack_header(params))

    def _emit(self, data: bytes) -> None:
        self._sink.write(data)
        self.bytes_written += len(data)

    def write_unit(self, unit: Unit) -> int:
        """Write one unit; returns its size in bytes."""
        if self.closed:
            raise ValueError("StreamWriter is closed")
        if unit.type == UnitType.END:
            raise ValueError("END is written by close()")
        data = pack_unit(unit)
        self._emit(data)
        if unit.type in (UnitType.I, UnitType.P):
            self.next_frame_index = unit.frame_index + 1
        return len(data)

    def write_seq(self) -> int:
        """Repeat the sequence parameters in-band (a join point for live receivers)."""
        return self.write_unit(seq_unit(self.params, self.next_frame_index))

    def close(self) -> None:
        if self.closed:
            return
        self._emit(pack_unit(end_unit(self.next_frame_index, self.params.rate)))
        self.closed = True
        flush = getattr(self._sink, "flush", None)
        if flush is not None:
            flush()

    def __enter__(self) -> StreamWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()


def read_stream(data: bytes, require_end: bool = True) -> tuple[SequenceParams, list[Unit]]:
    """Parse a whole stream held in memory: (params, units including END)."""
    reader = StreamReader(data, require_end=require_end)
    return reader.params, list(reader)
