"""One device's part of one group in a peer schedule, as the worker receives and answers it.

Why apart from the worker: under the peer runtime a device keeps its output band between
groups and swaps only the halo rows it lacks with the devices that hold them, so a step
needs more than a span call: which of its input rows it already holds, which rows each
arriving piece carries, which rows of its output to hand on and to whom. `StepOrder` says
that (the runtime builds it from the schedule and decides nothing itself), `Piece` is what
travels between devices (rows of a map, raw or losslessly encoded, with the sender's link
time), and the functions here put a step's input together and cut its pieces apart.

Both cross process boundaries inside Ray calls, so both carry a schema and are checked on
arrival: a piece with other rows than the order expects fails naming the step, not with a
shape error deep in a convolution.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from maniple.devices.emulated import BoardClock
from maniple.devices.wire_codec import EncodedRows, pack, unpack, wire_nbytes
from maniple.errors import ManipleError

STEP_SCHEMA = "maniple.peer_step/1"
PIECE_SCHEMA = "maniple.peer_piece/1"
COORDINATOR = "coordinator"
Band = tuple[int, int]


@dataclass(frozen=True)
class StepOrder:
    """What one device does in one group of a peer schedule.

    first, last, out_rows, in_rows: the span it runs (units first..last, rows `in_rows` of
        the group's input in, rows `out_rows` of unit last's output out).
    own_rows: rows of the group's input it takes from the output it kept from its previous
        step (None: it holds none of them).
    sources, piece_rows: who sends each piece passed with the order, and its rows, in order.
    dests, send_rows: who gets each piece of its output it returns, and their rows.
    concurrent: transfers that share the coordinator's link at once (scatter and gather).
    compress: encode the pieces it sends losslessly (maniple.devices.wire_codec).
    syncs: sync points the span meets; the step then runs in syncs + 1 phases, each after
        the first taking every peer's partial of the one before.
    peers: the devices of the group in device order (whose partials are combined), itself
        included.
    swap: the devices swap their partials themselves, mid-call (`sync_exchange`): one
        call per step, as without sync points.
    """

    first: int
    last: int
    out_rows: Band
    in_rows: Band
    own_rows: Band | None
    sources: tuple[str, ...]
    piece_rows: tuple[Band, ...]
    dests: tuple[str, ...]
    send_rows: tuple[Band, ...]
    concurrent: int = 1
    compress: bool = False
    syncs: int = 0
    peers: tuple[str, ...] = ()
    swap: bool = False
    schema: str = STEP_SCHEMA

    def outputs(self, phase: int) -> int:
        """Pieces the call of `phase` returns: one partial before the last phase, then
        one piece per destination."""
        return 1 if phase < self.syncs and not self.swap else len(self.dests)

    def check(self, device: str) -> None:
        """Refuse an order that does not hang together, naming the device and the field."""
        where = f"device {device!r}: step of units {self.first}..{self.last}"
        if self.schema != STEP_SCHEMA:
            raise ManipleError(f"{where}: order schema {self.schema!r}, expected {STEP_SCHEMA!r}")
        if len(self.sources) != len(self.piece_rows) or len(self.dests) != len(self.send_rows):
            raise ManipleError(
                f"{where}: {len(self.sources)} sources for {len(self.piece_rows)} pieces and "
                f"{len(self.dests)} destinations for {len(self.send_rows)} sends; give one each"
            )
        if self.concurrent < 1:
            raise ManipleError(f"{where}: concurrent is {self.concurrent}; must be >= 1")


@dataclass(frozen=True)
class Piece:
    """Rows [lo, hi) of one map on their way from `source` (a device or the coordinator).

    data: the rows as a (1, C, hi - lo, W) array, or that array encoded (EncodedRows).
    up_ms: the sender's link time for everything it sent at this step (emulated ms; 0 for
        a real device or the coordinator): the receiver waits for the slower of its own
        downlink and its senders' uplinks.
    """

    source: str
    rows: Band
    data: np.ndarray | EncodedRows | Any
    up_ms: float = 0.0
    schema: str = PIECE_SCHEMA
    size: int = -1
    """Wire bytes, kept when `data` is a reference to the rows in the sender's object
    store (`share`); -1: measured from `data`."""

    @property
    def wire_bytes(self) -> int:
        return self.size if self.size >= 0 else wire_nbytes(self.data)


def host_array(t: torch.Tensor) -> np.ndarray:
    """`t` as a contiguous host array. numpy has no bfloat16, so bf16 rows travel as
    float32 (exact both ways); the receiving span casts them back to its own dtype."""
    t = t.detach().to("cpu")
    if t.dtype == torch.bfloat16:
        t = t.float()
    return t.contiguous().numpy()


def make_piece(
    source: str, rows: Band, t: torch.Tensor, compress: bool, up_ms: float = 0.0
) -> Piece:
    """Rows `rows` of a map as a piece from `source` (`t` holds exactly those rows)."""
    a = host_array(t)
    return Piece(source, (int(rows[0]), int(rows[1])), pack(a, compress), up_ms)


def open_piece(p: object, expected: Band, device: str, source: str) -> torch.Tensor:
    """The rows a piece carries as a tensor, after checking it is the piece expected."""
    if not isinstance(p, Piece) or p.schema != PIECE_SCHEMA:
        raise ManipleError(
            f"device {device!r}: expected a {PIECE_SCHEMA} piece from {source!r}, got "
            f"{type(p).__name__}"
        )
    a = unpack(p.data)
    rows = tuple(p.rows)
    if (
        rows != tuple(expected)
        or p.source != source
        or a.ndim != 4
        or (a.shape[2] != rows[1] - rows[0])
    ):
        raise ManipleError(
            f"device {device!r}: piece from {p.source!r} carries rows {rows} "
            f"({a.shape[2] if a.ndim == 4 else '?'} rows of data), but the step expects rows "
            f"{tuple(expected)} from {source!r}; the schedule and its runtime disagree"
        )
    return torch.from_numpy(a if a.flags.writeable else a.copy())


def assemble(
    in_rows: Band,
    own: tuple[Band, torch.Tensor] | None,
    parts: Sequence[tuple[Band, torch.Tensor]],
    device: str,
) -> torch.Tensor:
    """The step's input rows `in_rows`, stitched in row order from the rows it holds (`own`)
    and the pieces it received; every row must be covered exactly once."""
    pieces = sorted([*parts, *([own] if own is not None else [])], key=lambda p: p[0][0])
    row = in_rows[0]
    for (lo, hi), _ in pieces:
        if lo != row:
            raise ManipleError(
                f"device {device!r}: the step needs rows {in_rows[0]}:{in_rows[1]} of its "
                f"input, but its pieces give rows {[r for r, _ in pieces]}: a gap or overlap "
                f"at row {row}"
            )
        row = hi
    if row != in_rows[1]:
        raise ManipleError(
            f"device {device!r}: pieces end at row {row}, the step needs rows up to {in_rows[1]}"
        )
    tensors = [t for _, t in pieces]
    return (
        tensors[0]
        if len(tensors) == 1
        else torch.cat([t.to(tensors[0].device) for t in tensors], 2)
    )


def held_rows(held: tuple[Band, torch.Tensor] | None, rows: Band, device: str) -> torch.Tensor:
    """Rows `rows` of the output a device kept, cut from it without copying."""
    if held is None or not (held[0][0] <= rows[0] and rows[1] <= held[0][1]):
        have = "nothing" if held is None else f"rows {held[0][0]}:{held[0][1]}"
        raise ManipleError(
            f"device {device!r}: the step takes rows {rows[0]}:{rows[1]} from what it kept, "
            f"but it holds {have}; run the schedule's steps in order"
        )
    lo = held[0][0]
    return held[1][:, :, rows[0] - lo : rows[1] - lo]


def step_input(
    order: StepOrder,
    pieces: Sequence[Piece],
    own: torch.Tensor | None,
    device: torch.device,
    name: str,
) -> torch.Tensor:
    """Open the pieces and stitch them with the rows kept (`own`): the span's input."""
    parts = [
        (rows, open_piece(p, rows, name, src))
        for p, rows, src in zip(pieces, order.piece_rows, order.sources, strict=True)
    ]
    kept = None if own is None or order.own_rows is None else (order.own_rows, own)
    return assemble(order.in_rows, kept, parts, name).to(device)


def cut_pieces(order: StepOrder, y: torch.Tensor, name: str) -> list[Piece]:
    """The pieces of the step's output `y` to send, one per destination."""
    lo = order.out_rows[0]
    return [
        make_piece(name, r, y[:, :, r[0] - lo : r[1] - lo], order.compress) for r in order.send_rows
    ]


def compute_step(
    order: StepOrder,
    pieces: Sequence[Piece],
    own: torch.Tensor | None,
    program: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
    name: str,
) -> tuple[torch.Tensor, list[Piece]]:
    """Open the pieces, stitch them with the rows kept (`own`), run the span and cut the
    pieces to send: (the step's output on `device`, its pieces), all on the board's clock."""
    y = program(step_input(order, pieces, own, device, name))
    return y, cut_pieces(order, y, name)


def make_partial(source: str, t: torch.Tensor) -> Piece:
    """A sync point's partial reduction as a piece (rows (0, 0): it holds no rows)."""
    return Piece(source, (0, 0), pack(host_array(t), False))


def open_partial(p: object, device: str, source: str) -> torch.Tensor:
    """The partial a piece carries, after checking it is one."""
    if not isinstance(p, Piece) or p.schema != PIECE_SCHEMA or tuple(p.rows) != (0, 0):
        raise ManipleError(
            f"device {device!r}: expected the partial reduction of a sync point from "
            f"{source!r}, got {type(p).__name__}; the schedule and its runtime disagree"
        )
    a = unpack(p.data)
    return torch.from_numpy(a if a.flags.writeable else a.copy())


@dataclass
class LinkBytes:
    """Wire bytes one device's link carried under the peer runtime, by peer and direction:
    the links' own count, which a report checks the schedule's byte totals against."""

    sent: dict[str, int] = field(default_factory=dict)
    received: dict[str, int] = field(default_factory=dict)

    def add(self, way: str, peer: str, nbytes: int) -> None:
        table = self.sent if way == "sent" else self.received
        table[peer] = table.get(peer, 0) + int(nbytes)

    def to_dict(self) -> dict[str, dict[str, int]]:
        return {"sent": dict(self.sent), "received": dict(self.received)}


def charge_in(
    clock: BoardClock | None, order: StepOrder, pieces: Sequence[Piece], counts: LinkBytes
) -> float:
    """Count the pieces' bytes on the receiver's link and, on a board, wait for them: the
    coordinator's scatter shares the coordinator's link (`order.concurrent` at once); peers'
    pieces cost one latency and the slower of this downlink and the senders' uplinks."""
    down, scatter, up_ms = 0, 0, 0.0
    for p, src in zip(pieces, order.sources, strict=True):
        counts.add("received", src, p.wire_bytes)
        if src == COORDINATOR:
            scatter += p.wire_bytes
        else:
            down += p.wire_bytes
            up_ms = max(up_ms, float(p.up_ms))
    if clock is None:
        return 0.0
    ms = clock.link(scatter, order.concurrent) if scatter else 0.0
    return ms + clock.wait(clock.board.link.exchange_ms(down, up_ms))


def charge_out(
    clock: BoardClock | None, order: StepOrder, out: list[Piece], counts: LinkBytes
) -> tuple[list[Piece], float]:
    """Count the sent bytes; bands for the coordinator cost this link now (sharing the
    coordinator's), pieces for peers leave at once and carry this board's uplink time."""
    gather = peers = 0
    for p, d in zip(out, order.dests, strict=True):
        counts.add("sent", d, p.wire_bytes)
        if d == COORDINATOR:
            gather += p.wire_bytes
        else:
            peers += p.wire_bytes
    if clock is None:
        return out, 0.0
    up_ms = clock.board.link.wire_ms(peers)
    out = [
        p if d == COORDINATOR else dataclasses.replace(p, up_ms=up_ms)
        for p, d in zip(out, order.dests, strict=True)
    ]
    return out, clock.link(gather, order.concurrent) if gather else 0.0


def kept_rows(
    held: tuple[int, Band, torch.Tensor] | None, order: StepOrder, device: str
) -> torch.Tensor | None:
    """Rows `order.own_rows` of the output a device kept from its previous step (`held`:
    unit, rows, tensor), or None when the step takes none; refuses rows of another unit."""
    if order.own_rows is None:
        return None
    if held is None or held[0] != order.first - 1:
        raise ManipleError(
            f"device {device!r}: the step of units {order.first}..{order.last} takes rows "
            f"of unit {order.first - 1}'s output from what it kept, but it keeps "
            f"{'nothing' if held is None else f'unit {held[0]}'}'s; run steps in order"
        )
    return held_rows((held[1], held[2]), order.own_rows, device)


def _ray() -> Any:
    """Ray, when this process is a connected Ray worker (never imported here)."""
    ray = sys.modules.get("ray")
    return ray if ray is not None and ray.is_initialized() else None


def share(out: list[Piece], dests: Sequence[str]) -> list[Piece]:
    """Pieces for other devices with their rows put in this worker's object store, owned
    here: only a reference travels through the caller, and the receiver fetches the bytes
    from this worker's node (Ray inlines small return values into the caller's reply, so
    returning the rows themselves would route them through the coordinator)."""
    ray = _ray()
    if ray is None:
        return out
    return [
        p if d == COORDINATOR else dataclasses.replace(p, data=ray.put(p.data), size=p.wire_bytes)
        for p, d in zip(out, dests, strict=True)
    ]


def fetch(pieces: Sequence[Piece]) -> list[Piece]:
    """Pieces with any shared rows (`share`) fetched from their sender's object store."""
    ray = _ray()
    if ray is None:
        return list(pieces)
    return [
        dataclasses.replace(p, data=ray.get(p.data))
        if isinstance(p, Piece) and isinstance(p.data, ray.ObjectRef)
        else p
        for p in pieces
    ]
