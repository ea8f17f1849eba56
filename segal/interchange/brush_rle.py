"""Label Studio's brush RLE, written and read without the label-studio packages.

The format is a Python port of thi.ng ``rle-pack`` (label-studio-converter ``brush.py``): a header
of a 32-bit value count, a 5-bit ``word_size - 1`` and four 4-bit ``rle_sizes - 1``, then tokens of
one repeat bit, a 2-bit index into ``rle_sizes``, a run length ``- 1`` of that many bits, and either
one value (repeat) or that many literal values.  A brush mask is stored RGBA-interleaved (each pixel
repeated four times) and read back from channel 3.

:func:`encode_rle` emits exactly the bytes of the converter's ``encode_rle`` (word size 8, run sizes
3/4/8/16, one token per run, a full zero byte of padding when already aligned) but with numpy
instead of bit strings, so a 2048×1024 mask takes milliseconds.  :func:`decode_rle` reads the
general format (literal blocks, other run sizes) that Label Studio's own frontend writes.
"""

from __future__ import annotations

import numpy as np

WORD_SIZE = 8
RLE_SIZES = (3, 4, 8, 16)
_TOKEN_BLOCK = 1 << 18
MAX_VALUES = 4 << 28  # 4 channels of a 2^28-pixel image


class BrushRLEError(ValueError):
    """The RLE is corrupt, truncated or not what the caller expected."""


def _runs(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    change = np.flatnonzero(arr[1:] != arr[:-1]) + 1
    starts = np.concatenate(([0], change))
    lengths = np.diff(np.concatenate((starts, [arr.size])))
    return lengths.astype(np.int64), arr[starts].astype(np.int64)


def _tokens(lengths: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(code, bit width) of every token, with the converter's split of runs longer than 2^16."""
    big = lengths > 256
    pieces = np.where(big, (lengths - 1) // 65536 + 1, 1)
    run = np.repeat(np.arange(lengths.size), pieces)
    first = np.cumsum(pieces) - pieces
    piece = np.arange(run.size) - first[run]
    tok_len = np.where(big[run], np.where(piece < pieces[run] - 1, 65536, lengths[run] - (pieces[run] - 1) * 65536),
                       lengths[run])
    value, is_big, orig = values[run], big[run], lengths[run]
    code = np.empty(run.size, dtype=np.int64)
    width = np.empty(run.size, dtype=np.int64)
    single = orig == 1
    s3 = (orig > 1) & (orig <= 8)
    s4 = (orig > 8) & (orig <= 16)
    s8 = (orig > 16) & (orig <= 256)
    code[single], width[single] = value[single], 14
    code[s3], width[s3] = (1 << 13) | ((tok_len[s3] - 1) << 8) | value[s3], 14
    code[s4], width[s4] = (1 << 14) | (1 << 12) | ((tok_len[s4] - 1) << 8) | value[s4], 15
    code[s8], width[s8] = (1 << 18) | (2 << 16) | ((tok_len[s8] - 1) << 8) | value[s8], 19
    code[is_big], width[is_big] = (1 << 26) | (3 << 24) | ((tok_len[is_big] - 1) << 8) | value[is_big], 27
    return code, width


def _bits(code: np.ndarray, width: np.ndarray) -> np.ndarray:
    """Most-significant-bit-first bits of each code, concatenated, as a uint8 0/1 array."""
    if code.size == 0:
        return np.zeros(0, dtype=np.uint8)
    offsets = np.cumsum(width) - width
    owner = np.repeat(np.arange(code.size), width)
    shift = width[owner] - 1 - (np.arange(owner.size) - offsets[owner])
    return ((code[owner] >> shift) & 1).astype(np.uint8)


def encode_rle(arr: np.ndarray) -> list[int]:
    """Encode a flat array of bytes (e.g. ``np.repeat(mask.ravel(), 4)``) to LS brush RLE bytes."""
    arr = np.asarray(arr).ravel()
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise ValueError("brush RLE values must be bytes (0..255)")
    if arr.size >= 1 << 32:
        raise ValueError("too many values for a brush RLE")
    header = (arr.size << 21) | ((WORD_SIZE - 1) << 16)
    for k, size in enumerate(RLE_SIZES):
        header |= (size - 1) << (12 - 4 * k)
    parts = [_bits(np.array([header], dtype=np.int64), np.array([53], dtype=np.int64))]
    if arr.size:
        lengths, values = _runs(arr)
        code, width = _tokens(lengths, values)
        for start in range(0, code.size, _TOKEN_BLOCK):
            parts.append(_bits(code[start:start + _TOKEN_BLOCK], width[start:start + _TOKEN_BLOCK]))
    bits = np.concatenate(parts)
    pad = 8 - bits.size % 8  # the converter pads a full byte when already aligned; so do we
    bits = np.concatenate((bits, np.zeros(pad, dtype=np.uint8)))
    return np.packbits(bits).tolist()


class _BitReader:
    def __init__(self, data: bytes):
        self.data = data + bytes(8)
        self.nbits = len(data) * 8
        self.pos = 0
        self._unpacked: np.ndarray | None = None

    def read(self, n: int) -> int:
        p = self.pos
        if p + n > self.nbits:
            raise BrushRLEError("brush RLE is truncated")
        self.pos = p + n
        word = int.from_bytes(self.data[p >> 3:(p >> 3) + 8], "big")
        return (word >> (64 - (p & 7) - n)) & ((1 << n) - 1)

    def read_many(self, count: int, n: int) -> np.ndarray:
        p = self.pos
        if p + count * n > self.nbits:
            raise BrushRLEError("brush RLE is truncated")
        if self._unpacked is None:
            self._unpacked = np.unpackbits(np.frombuffer(self.data, dtype=np.uint8))
        self.pos = p + count * n
        block = self._unpacked[p:p + count * n].reshape(count, n).astype(np.int64)
        return block @ (1 << np.arange(n - 1, -1, -1, dtype=np.int64))


def decode_rle(rle, expected_len: int | None = None) -> np.ndarray:
    """Decode LS brush RLE bytes to the flat uint8 array; ``expected_len`` guards the allocation."""
    try:
        data = bytes(rle)
    except (TypeError, ValueError):
        raise BrushRLEError("brush RLE must be a list of bytes (integers 0..255)") from None
    reader = _BitReader(data)
    num = reader.read(32)
    word_size = reader.read(5) + 1
    sizes = [reader.read(4) + 1 for _ in range(4)]
    if expected_len is not None and num != expected_len:
        raise BrushRLEError(f"brush RLE holds {num} values, expected {expected_len} (width × height × 4)")
    if num > MAX_VALUES:
        raise BrushRLEError(f"brush RLE claims {num} values")
    if word_size > 8:
        raise BrushRLEError(f"brush RLE word size {word_size} is not supported (expected 8)")
    out = np.zeros(num, dtype=np.uint8)
    i = 0
    while i < num:
        repeat = reader.read(1)
        j = i + 1 + reader.read(sizes[reader.read(2)])
        if j > num:
            raise BrushRLEError("brush RLE runs past its declared length")
        if repeat:
            out[i:j] = reader.read(word_size)
        elif j - i == 1:
            out[i] = reader.read(word_size)
        else:
            out[i:j] = reader.read_many(j - i, word_size)
        i = j
    return out


def mask_to_rle(mask: np.ndarray) -> list[int]:
    """A boolean H×W mask as LS brush RLE (255 where set, in all four channels)."""
    return encode_rle(np.repeat(np.asarray(mask, dtype=bool).ravel().astype(np.uint8) * 255, 4))


def rle_to_mask(rle, height: int, width: int) -> np.ndarray:
    """The boolean H×W mask of an LS brush RLE: alpha channel at least 128."""
    flat = decode_rle(rle, expected_len=height * width * 4)
    return flat.reshape(height, width, 4)[:, :, 3] >= 128
