"""Partials of a sync point swapped device to device inside one call: the fast path.

Why: a sync point paused and resumed by the caller costs one more round of calls per sync
point (EfficientNet-B0 has 16), and on a busy host each round of Ray calls costs ~20 ms,
more than the split saves. Here the devices of a group swap their partials themselves,
mid-call, and each combines them in device order, so all carry on with identical values
and the caller makes one call per group as without sync points.

Two transports, one per kind of worker:
- `GlooExchange`: workers in processes of their own (Ray actors) join one torch.distributed
  gloo group when the cluster is set up for it (`join`) and send each partial point to
  point to every other device of the group (any subset of the cluster, no sub-groups to
  agree on);
- `LocalExchange`: workers on threads of this process leave their partials in one shared
  table and wait for the others'.
A peer that dies mid-exchange ends the wait after the group's timeout with an error naming
the devices that did not answer.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import torch

from maniple.errors import ManipleError


class LocalExchange:
    """One table of partials shared by the workers of this process."""

    def __init__(self, timeout_s: float = 30.0) -> None:
        self.timeout_s = timeout_s
        self._cond = threading.Condition()
        self._table: dict[tuple[int, str], torch.Tensor] = {}

    def swap(
        self, me: str, peers: Sequence[str], tag: int, partial: torch.Tensor
    ) -> list[torch.Tensor]:
        """Every peer's partial for `tag`, in the order of `peers` (this one's included)."""
        with self._cond:
            self._table[(tag, me)] = partial.detach().to("cpu")
            self._cond.notify_all()
            ok = self._cond.wait_for(
                lambda: all((tag, p) in self._table for p in peers), self.timeout_s
            )
            if not ok:
                missing = [p for p in peers if (tag, p) not in self._table]
                raise ManipleError(
                    f"device {me!r}: no partial of sync point {tag} from {missing} within "
                    f"{self.timeout_s:g} s; they stopped answering"
                )
            out = [self._table[(tag, p)] for p in peers]
            done = self._table.setdefault((tag, "#taken"), torch.zeros(1))
            done += 1
            if int(done.item()) == len(peers):  # the last reader clears the tag
                for p in (*peers, "#taken"):
                    del self._table[(tag, p)]
            return out


class GlooExchange:
    """This process's membership of the cluster's gloo group, by device name."""

    def __init__(self, ranks: dict[str, int], timeout_s: float) -> None:
        self.ranks = dict(ranks)
        self.timeout_s = timeout_s

    @classmethod
    def join(
        cls, address: str, port: int, rank: int, ranks: dict[str, int], timeout_s: float
    ) -> GlooExchange:
        """Join (or re-join) the group at tcp://address:port as `rank`; blocks until every
        device of `ranks` has joined."""
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
        dist.init_process_group(
            "gloo",
            init_method=f"tcp://{address}:{port}",
            rank=rank,
            world_size=len(ranks),
            timeout=timedelta(seconds=timeout_s),
        )
        return cls(ranks, timeout_s)

    def swap(
        self, me: str, peers: Sequence[str], tag: int, partial: torch.Tensor
    ) -> list[torch.Tensor]:
        """Send this partial to every other peer and receive theirs, point to point."""
        import torch.distributed as dist

        mine = partial.detach().to("cpu").contiguous()
        got: dict[str, torch.Tensor] = {me: mine}
        work: list[Any] = []
        try:
            for p in peers:
                if p != me:
                    work.append(dist.isend(mine, self.ranks[p], tag=tag))
                    got[p] = torch.empty_like(mine)
                    work.append(dist.irecv(got[p], self.ranks[p], tag=tag))
            for w in work:
                w.wait()
        except RuntimeError as exc:
            raise ManipleError(
                f"device {me!r}: swapping the partials of sync point {tag} with "
                f"{[p for p in peers if p != me]} failed ({exc}); a peer stopped answering"
            ) from None
        return [got[p] for p in peers]


def exchange_tag(first_unit: int, phase: int) -> int:
    """The message tag of one sync point of one group: matched send to receive."""
    return first_unit * 1024 + phase


def prepare_swap(handles: Sequence[Any]) -> bool:
    """Set `handles` up to swap partials mid-call; False where they cannot (devices of two
    transports, or one device), and the caller then combines the partials itself.

    Local workers share one `LocalExchange`; Ray workers join one gloo group, once per set
    of devices (the group is remembered on the handles, and a new set re-joins)."""
    kinds = {getattr(h, "transport", "none") for h in handles}
    if len(handles) < 2 or len(kinds) != 1 or kinds & {"none"}:
        return False
    names = tuple(h.name for h in handles)
    if all(getattr(h, "_swap_group", None) == names for h in handles):
        return True
    timeout = max(float(getattr(h, "timeout_s", 30.0)) for h in handles)
    if kinds == {"local"}:
        shared = LocalExchange(timeout)
        for h in handles:
            h.worker.set_exchange(shared)
    else:
        address, port = handles[0]._submit("exchange_address").result(timeout=timeout)
        ranks = {name: r for r, name in enumerate(names)}
        calls = [
            h._submit("join_exchange", address, port, ranks[h.name], ranks, timeout)
            for h in handles
        ]
        for c in calls:
            c.result(timeout=timeout + 5.0)
    for h in handles:
        h._swap_group = names
    return True
