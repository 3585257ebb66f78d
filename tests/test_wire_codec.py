"""The lossless wire codec: bit-exact round trips, compression of ReLU maps, and a decode
that refuses every tampered field of an EncodedRows with a ManipleError naming it."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from maniple.devices.wire_codec import (
    WIRE_SCHEMA,
    EncodedRows,
    decode_rows,
    encode_rows,
    pack,
    unpack,
    wire_nbytes,
    zero_fraction,
)
from maniple.errors import ManipleError

DTYPES = ["<f4", "<f2", "<f8", "|i1", "<u2", "<i8"]
UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def raw(a: np.ndarray) -> np.ndarray:
    """`a`'s bits, so that -0.0 != +0.0 and NaN == NaN of the same payload."""
    return a.view(UINT[a.dtype.itemsize])


def assert_bit_exact(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape
    assert np.array_equal(raw(got), raw(want))  # same itemsize: any layout views


@st.composite
def arrays_with_zeros(draw: st.DrawFn) -> np.ndarray:
    """Arrays of every supported kind (any bits: NaNs, -0.0, denormals) with a share of
    elements forced to all-zero bits; shapes include () and 0-size dims."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=7))
    n = int(np.prod(shape, dtype=np.int64))
    bits = draw(hnp.arrays(UINT[dtype.itemsize], n))  # random bit patterns of this size
    zeros = draw(hnp.arrays(np.bool_, n, elements=st.booleans()))
    bits[zeros] = 0
    return bits.view(dtype).reshape(shape)


@settings(max_examples=150, deadline=None)
@given(arrays_with_zeros())
def test_round_trip_is_bit_exact(a: np.ndarray) -> None:
    e = encode_rows(a)
    assert e.schema == WIRE_SCHEMA and e.dtype == a.dtype.str and e.shape == a.shape
    assert e.values.size == np.count_nonzero(raw(a))
    out = decode_rows(e)
    assert_bit_exact(out, a)
    assert out.flags.c_contiguous and out.flags.writeable
    assert not np.shares_memory(out, a)
    assert_bit_exact(decode_rows(pickle.loads(pickle.dumps(e))), a)  # as Ray ships it
    assert zero_fraction(a) == pytest.approx(1.0 - e.values.size / a.size if a.size else 0.0)


@settings(max_examples=40, deadline=None)
@given(arrays_with_zeros(), st.integers(0, 3))
def test_non_contiguous_input_round_trips(a: np.ndarray, axis: int) -> None:
    a = np.moveaxis(np.stack([a, a]), 0, min(axis, a.ndim))[..., ::-1]  # strided view
    assert_bit_exact(decode_rows(encode_rows(a)), a)


def test_negative_zero_nan_payloads_and_denormals_survive() -> None:
    f4 = np.array(
        [0x80000000, 0x7FC00001, 0xFFA5A5A5, 0x7F800001, 0x00000001, 0x807FFFFF, 0, 0x3F800000],
        dtype=np.uint32,
    ).view(np.float32)
    f2 = np.array([0x8000, 0x7E01, 0xFD55, 0x0001, 0], dtype=np.uint16).view(np.float16)
    f8 = np.array([0x8000000000000000, 0x7FF8DEADBEEF0001, 0], dtype=np.uint64).view(np.float64)
    for a in (f4, f2, f8):
        e = encode_rows(a)
        assert e.values.size == a.size - 1  # only the +0.0 is left out; -0.0 is not zero
        assert_bit_exact(decode_rows(e), a)
    assert np.signbit(decode_rows(encode_rows(f4))[0])
    assert zero_fraction(np.array([-0.0, 0.0], dtype=np.float32)) == 0.5


def test_relu_activations_compress() -> None:
    rng = np.random.default_rng(0)
    a = np.maximum(rng.standard_normal((1, 64, 2, 224), dtype=np.float32), 0)
    e = encode_rows(a)
    assert e.raw_nbytes == a.nbytes
    assert e.nbytes == e.bitmap.nbytes + e.values.nbytes + 64
    assert e.ratio < 0.6
    assert 0.45 < zero_fraction(a) < 0.55
    p = pack(a, compress=True)
    assert isinstance(p, EncodedRows) and wire_nbytes(p) == p.nbytes < a.nbytes
    assert_bit_exact(unpack(p), a)


def test_dense_map_is_sent_raw_and_empty_ratio_is_one() -> None:
    a = np.arange(1, 101, dtype=np.float32)  # no zeros: the encoding would be larger
    assert pack(a, compress=True) is a
    assert encode_rows(np.zeros((1, 8, 0, 4), np.float32)).ratio == 1.0


def test_pack_without_compress_returns_the_same_object() -> None:
    a = np.zeros((1, 2, 3, 4), dtype=np.float32)
    assert pack(a, compress=False) is a
    assert unpack(a) is a
    assert wire_nbytes(a) == a.nbytes


def test_encoded_rows_are_read_only() -> None:
    e = encode_rows(np.array([0.0, 1.0, 2.0], dtype=np.float32))
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.dtype = "<f8"  # type: ignore[misc]
    with pytest.raises(ValueError):
        e.values[0] = 7


@pytest.mark.parametrize(
    "dtype", [np.complex64, np.complex128, object, np.longdouble, "M8[s]", "U3", "f4,i4"]
)
def test_unsupported_dtype_is_refused(dtype: object) -> None:
    a = np.zeros(3, dtype=dtype)
    if a.dtype.itemsize in (1, 2, 4, 8) and a.dtype.kind in "biuf":
        pytest.skip(f"{a.dtype} is a plain number of a supported size on this platform")
    with pytest.raises(ManipleError, match=r"dtype .*not supported.*1, 2, 4 or 8 bytes"):
        encode_rows(a)
    with pytest.raises(ManipleError, match="dtype"):
        zero_fraction(a)
    with pytest.raises(ManipleError, match="expected a numpy array"):
        encode_rows([1.0, 2.0])  # type: ignore[arg-type]


def valid() -> EncodedRows:
    """11 elements (padding bits in the bitmap's last byte), 5 of them nonzero."""
    a = np.array([0, 1, 0, 2, 0, 0, 3, 0, 4, 0, 5], dtype=np.float32)
    e = encode_rows(a)
    assert e.bitmap.size == 2 and e.values.size == 5
    return e


def _flip_padding(e: EncodedRows) -> np.ndarray:
    b = e.bitmap.copy()
    b[-1] |= 1
    return b


def _drop_a_set_bit(e: EncodedRows) -> np.ndarray:
    b = e.bitmap.copy()
    b[0] &= 0b1011_1111  # element 1 was nonzero
    return b


TAMPERS = {
    "schema": [
        ("schema", "maniple.wire_rows/2", r"'maniple.wire_rows/2'.*'maniple.wire_rows/1'"),
        ("schema", "", "expected 'maniple.wire_rows/1'"),
    ],
    "dtype": [
        ("dtype", "<c8", r"'<c8'.*expected bool, int, uint or float"),
        ("dtype", "|O", r"'\|O'"),
        ("dtype", "<f16", "'<f16'"),
        ("dtype", "nonsense", "'nonsense'.*numpy dtype"),
        ("dtype", lambda e: np.float32, "a type"),  # a type, not a str
        ("dtype", "|V4", r"'\|V4'"),
    ],
    "shape": [
        ("shape", (11, -1), r"\(11, -1\).*non-negative"),
        ("shape", [11], r"\[11\].*tuple"),
        ("shape", (11.0,), r"\(11.0,\)"),
        ("shape", (True,), r"\(True,\)"),
    ],
    "bitmap": [
        ("bitmap", lambda e: e.bitmap[:1], "1 bytes long.*ceil\\(11 / 8\\) = 2"),
        ("bitmap", lambda e: np.concatenate([e.bitmap, [0]]).astype(np.uint8), "3 bytes long"),
        ("bitmap", lambda e: e.bitmap.astype(np.int8), "dtype int8.*uint8"),
        ("bitmap", lambda e: e.bitmap.reshape(1, 2), "2-d"),
        ("bitmap", lambda e: e.bitmap.tobytes(), "a bytes"),
        ("bitmap", _flip_padding, "padding bits set.*last 5 bits zero"),
    ],
    "values": [
        ("values", lambda e: e.values[:-1], "4 long.*5, one per set bit"),
        ("values", lambda e: e.values.view(np.float32), "dtype float32.*uint32"),
        ("values", lambda e: e.values.astype(np.uint64), "dtype uint64.*uint32"),
        ("values", lambda e: e.values.astype(np.int32), "dtype int32.*unsigned"),
        ("values", lambda e: e.values.reshape(5, 1), "2-d"),
        ("values", lambda e: list(e.values), "a list"),
        ("values", lambda e: np.where(np.arange(5) == 2, 0, e.values), "holding 1 zero"),
    ],
}


@pytest.mark.parametrize(
    "field,new,message",
    [case for cases in TAMPERS.values() for case in cases],
    ids=[f"{k}-{i}" for k, cases in TAMPERS.items() for i in range(len(cases))],
)
def test_decode_refuses_each_tampered_field(field: str, new: object, message: str) -> None:
    e = valid()
    bad = dataclasses.replace(e, **{field: new(e) if callable(new) else new})
    with pytest.raises(ManipleError, match=f"field '{field}' is .*{message}"):
        decode_rows(bad)


def test_decode_refuses_inconsistent_fields() -> None:
    e = valid()
    with pytest.raises(ManipleError, match="field 'values' is 5 long; expected 4"):
        decode_rows(dataclasses.replace(e, bitmap=_drop_a_set_bit(e)))
    with pytest.raises(ManipleError, match=r"field 'bitmap' is 2 bytes long.*= 3 .*\(3, 6\)"):
        decode_rows(dataclasses.replace(e, shape=(3, 6)))  # 18 elements need 3 bytes
    with pytest.raises(ManipleError, match="field 'values' is .*dtype uint32.*uint16"):
        decode_rows(dataclasses.replace(e, dtype="<f2"))
    with pytest.raises(ManipleError, match="expected EncodedRows, got ndarray"):
        decode_rows(np.zeros(3))  # type: ignore[arg-type]
    assert_bit_exact(decode_rows(dataclasses.replace(e, shape=(11, 1))), decode_rows(e)[:, None])
