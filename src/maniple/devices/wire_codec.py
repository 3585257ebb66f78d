"""Lossless wire encoding of activation rows: a zero bitmap and the nonzero elements.

Why: spatial inference sends rows of activation maps, shape (1, C, rows, W), between edge
boards over slow links, and after ReLU about half of each map is zeros. Sending one bit
per element plus only the nonzero elements cuts the bytes on the link to about
1/32 + 1/2 of the raw float32 size, and on a 100 Mbit/s board link those bytes cost far
more time than encoding them.

Lossless means bit for bit: elements are compared as raw bits (the array viewed as an
unsigned integer of the same itemsize), never as floats, so -0.0 stays -0.0 (a float
`!= 0` test would call it zero and send back +0.0), and NaN payloads and denormals come
back unchanged. Only elements whose bits are all zero are left out.

An `EncodedRows` crosses a process boundary (Ray pickles it between processes), so it is
a versioned structure (`WIRE_SCHEMA`) and `decode_rows` checks every field before it
trusts any of them; a mismatch is a `ManipleError` naming the field, the value found and
what was expected.

Speed (numpy only, no Python loop over elements): encode is one comparison, np.packbits
and np.extract; decode is np.unpackbits, np.flatnonzero and one fancy-index store. Boolean
indexing (`bits[mask]`, `out[mask] = values`) measured 2-5x slower at half zeros, where
its branches mispredict. Encode + decode of a (1, 64, 2, 224) float32 array with half
zeros (28,672 elements, 112 KiB) takes about 0.16 ms on this host (2-core VM, numpy 2.4,
timeit best of 9 x 500; ~0.07 ms encode, ~0.09 ms decode incl. validation; boolean
indexing: ~0.37 ms), and the encoding is 0.53 of the raw bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from maniple.errors import ManipleError

WIRE_SCHEMA = "maniple.wire_rows/1"
"""Version of the `EncodedRows` layout; a change of layout gets a new number."""

HEADER_BYTES = 64
"""Estimate of the fixed cost of one encoded piece on the wire (schema, dtype, shape)."""

_UINTS: dict[int, type[np.unsignedinteger]] = {
    1: np.uint8,
    2: np.uint16,
    4: np.uint32,
    8: np.uint64,
}
_KINDS = "biuf"  # bool, signed, unsigned, float: plain numbers with no inner structure
_SUPPORTED = "bool, int, uint or float of 1, 2, 4 or 8 bytes per element"


@dataclass(frozen=True, eq=False)
class EncodedRows:
    """An array as (dtype, shape, packed nonzero mask, nonzero elements' raw bits).

    schema: `WIRE_SCHEMA`, so a receiver can refuse a layout it does not know.
    dtype: the array's numpy dtype string (e.g. '<f4'), byte order included.
    shape: the array's shape.
    bitmap: np.packbits of the C-order mask "element's bits are not all zero" (uint8,
        ceil(prod(shape) / 8) bytes, padding bits zero).
    values: the nonzero elements' raw bits in C order, as unsigned integers of the
        array's itemsize (one per set bit of `bitmap`).

    eq=False: equality of numpy fields is element-wise and has no single truth value;
    compare decoded arrays instead. `encode_rows` makes both arrays read-only so that
    frozen means frozen.
    """

    schema: str
    dtype: str
    shape: tuple[int, ...]
    bitmap: np.ndarray
    values: np.ndarray

    @property
    def nbytes(self) -> int:
        """Bytes this encoding costs on the wire: bitmap, values and a fixed header."""
        return int(self.bitmap.nbytes) + int(self.values.nbytes) + HEADER_BYTES

    @property
    def raw_nbytes(self) -> int:
        """Bytes of the array uncompressed, to weigh the encoding against sending it raw."""
        return math.prod(int(s) for s in self.shape) * np.dtype(self.dtype).itemsize

    @property
    def ratio(self) -> float:
        """nbytes / raw_nbytes: below 1 the encoding pays off (1.0 for an empty array)."""
        raw = self.raw_nbytes
        return self.nbytes / raw if raw else 1.0


def _bits_dtype(dtype: np.dtype, what: str) -> type[np.unsignedinteger]:
    """The unsigned integer type whose values are `dtype`'s raw bits; refuse other dtypes.

    Why a whitelist: only plain numbers have "all bits zero" as their one zero and survive
    a view as unsigned integers; object arrays hold pointers, and complex, structured,
    datetime or 16-byte dtypes are not activations and have no unsigned view.
    """
    if dtype.kind not in _KINDS or dtype.itemsize not in _UINTS or dtype.fields is not None:
        raise ManipleError(
            f"{what}: dtype {dtype.str!r} ({dtype}, kind {dtype.kind!r}, itemsize "
            f"{dtype.itemsize}) is not supported; expected {_SUPPORTED}"
        )
    return _UINTS[dtype.itemsize]


def _raw_bits(a: np.ndarray, what: str) -> np.ndarray:
    """`a`'s elements as a flat C-order array of unsigned ints with the same bits."""
    if not isinstance(a, np.ndarray):
        raise ManipleError(f"{what}: expected a numpy array, got {type(a).__name__}")
    uint = _bits_dtype(a.dtype, what)
    return np.ascontiguousarray(a).reshape(-1).view(uint)


def encode_rows(a: np.ndarray) -> EncodedRows:
    """`a` as a zero bitmap and its nonzero elements, compared as raw bits.

    Any memory layout is accepted (a non-contiguous view is copied into C order first);
    the dtype must be a plain number of 1, 2, 4 or 8 bytes (`ManipleError` otherwise).
    """
    bits = _raw_bits(a, "encode_rows")
    mask = bits != 0
    bitmap = np.packbits(mask)
    values = np.extract(mask, bits)  # a fresh array; 3-5x faster than bits[mask] here
    bitmap.flags.writeable = False
    values.flags.writeable = False
    return EncodedRows(WIRE_SCHEMA, a.dtype.str, tuple(int(s) for s in a.shape), bitmap, values)


def _fail(field: str, found: object, expected: str) -> ManipleError:
    return ManipleError(f"wire rows: field {field!r} is {found}; expected {expected}")


def _check_dtype(e: EncodedRows) -> tuple[np.dtype, type[np.unsignedinteger]]:
    if not isinstance(e.dtype, str):
        raise _fail("dtype", f"a {type(e.dtype).__name__} ({e.dtype!r})", "a numpy dtype str")
    try:
        dtype = np.dtype(e.dtype)
    except (TypeError, ValueError):
        raise _fail("dtype", repr(e.dtype), "a numpy dtype str such as '<f4'") from None
    if dtype.kind not in _KINDS or dtype.itemsize not in _UINTS or dtype.fields is not None:
        raise _fail("dtype", f"{e.dtype!r} ({dtype})", _SUPPORTED)
    return dtype, _UINTS[dtype.itemsize]


def _check_shape(e: EncodedRows) -> int:
    """The element count of a valid shape (bool is not a size, though it is an int)."""
    shape = e.shape
    ok = isinstance(shape, tuple) and all(
        isinstance(s, (int, np.integer)) and not isinstance(s, (bool, np.bool_)) and s >= 0
        for s in shape
    )
    if not ok:
        raise _fail("shape", repr(shape), "a tuple of non-negative ints")
    return math.prod(int(s) for s in shape)


def _check_bitmap(e: EncodedRows, n: int) -> np.ndarray:
    bitmap, nbytes = e.bitmap, (n + 7) // 8
    if not isinstance(bitmap, np.ndarray):
        raise _fail("bitmap", f"a {type(bitmap).__name__}", "a numpy uint8 array")
    if bitmap.dtype != np.uint8 or bitmap.ndim != 1:
        raise _fail(
            "bitmap", f"{bitmap.ndim}-d of dtype {bitmap.dtype}", "a 1-d array of dtype uint8"
        )
    if bitmap.size != nbytes:
        raise _fail(
            "bitmap",
            f"{bitmap.size} bytes long",
            f"ceil({n} / 8) = {nbytes} bytes for shape {tuple(e.shape)}",
        )
    spare = 8 * nbytes - n  # bits of the last byte past the last element
    if spare and int(bitmap[-1]) & ((1 << spare) - 1):
        raise _fail(
            "bitmap",
            f"ending in byte 0x{int(bitmap[-1]):02x} with padding bits set",
            f"its last {spare} bits zero",
        )
    return bitmap


def _check_values(e: EncodedRows, uint: type[np.unsignedinteger], set_bits: int) -> np.ndarray:
    values, want = e.values, np.dtype(uint)
    if not isinstance(values, np.ndarray):
        raise _fail("values", f"a {type(values).__name__}", f"a numpy {want} array")
    if values.dtype.kind != "u" or values.dtype.itemsize != want.itemsize or values.ndim != 1:
        raise _fail(
            "values",
            f"{values.ndim}-d of dtype {values.dtype}",
            f"a 1-d array of dtype {want} (unsigned, itemsize of dtype {e.dtype!r})",
        )
    if values.size != set_bits:
        raise _fail("values", f"{values.size} long", f"{set_bits}, one per set bit of the bitmap")
    zeros = values.size - int(np.count_nonzero(values))
    if zeros:
        raise _fail("values", f"holding {zeros} zero(s)", "only nonzero bits (zeros are implied)")
    return values


def decode_rows(e: EncodedRows) -> np.ndarray:
    """The array `encode_rows` encoded, bit for bit, as a new writable C-contiguous array.

    Every field is validated first: the structure came over a process boundary, and a
    wrong length would otherwise surface as an unrelated numpy error or a silently
    wrong map.
    """
    if not isinstance(e, EncodedRows):
        raise ManipleError(f"wire rows: expected EncodedRows, got {type(e).__name__}")
    if e.schema != WIRE_SCHEMA:
        raise _fail("schema", repr(e.schema), repr(WIRE_SCHEMA))
    dtype, uint = _check_dtype(e)
    n = _check_shape(e)
    bitmap = _check_bitmap(e, n)
    set_bits = int(np.bitwise_count(bitmap).sum(dtype=np.int64))
    values = _check_values(e, uint, set_bits)
    bits = np.zeros(n, dtype=uint)
    if values.size:  # indices, then a fancy store: faster than bits[mask] = values
        mask = np.unpackbits(bitmap, count=n).view(np.bool_)  # bool: flatnonzero is 8x faster
        bits[np.flatnonzero(mask)] = values
    return bits.view(dtype).reshape(tuple(int(s) for s in e.shape))


def pack(a: np.ndarray, compress: bool) -> np.ndarray | EncodedRows:
    """What to send for `a`: `a` itself unless `compress`; encoded only when that is smaller.

    The fallback keeps dense maps (few zeros) from costing more on the wire than raw.
    """
    if not compress:
        return a
    e = encode_rows(a)
    return e if e.nbytes < a.nbytes else a


def unpack(p: np.ndarray | EncodedRows) -> np.ndarray:
    """The array a piece carries: arrays as they are, `EncodedRows` decoded."""
    return decode_rows(p) if isinstance(p, EncodedRows) else p


def wire_nbytes(p: np.ndarray | EncodedRows) -> int:
    """Bytes this piece costs on the link, to charge the emulated link time."""
    return p.nbytes if isinstance(p, EncodedRows) else int(p.nbytes)


def zero_fraction(a: np.ndarray) -> float:
    """Share of elements whose bits are all zero (0.0 for an empty array).

    Why raw bits: that is exactly what `encode_rows` leaves out, so -0.0 counts as nonzero.
    """
    bits = _raw_bits(a, "zero_fraction")
    return 1.0 - np.count_nonzero(bits) / bits.size if bits.size else 0.0
