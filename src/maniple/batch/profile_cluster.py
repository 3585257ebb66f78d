"""Profile the devices of a run into the store, with one progress bar, then read their table.

Why around `profile_batch_table` and not inside it: a run decides *which* sizes are worth
measuring (no size far above the batch it will split) and how long a slow device may
take (a time budget: a CPU running VGG-16 should not spend minutes on sizes the planner
will extrapolate anyway). The store keeps what is measured, size by size, so an
interrupted or budget-limited run resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from maniple.batch.device_runner import DeviceBatchRunner
from maniple.batch.perf_table import SEED_BATCHES, PerfTable
from maniple.batch.profiler import profile_batch_table
from maniple.batch.store import ProfileStore
from maniple.cluster import Cluster, ClusterSpec, open_cluster
from maniple.devices import DeviceHandle, ModelSpec, open_device
from maniple.errors import ManipleError
from maniple.store import DeviceKey
from maniple.store.keys import device_key


def profile_sizes(batch: int, sizes: Sequence[int] = SEED_BATCHES) -> tuple[int, ...]:
    """The sizes of `sizes` worth measuring for splitting `batch`: every one up to the first
    size >= batch (needed to interpolate up to the whole batch); all when batch exceeds
    them. No unit ever gets more than the whole batch."""
    ordered = sorted(set(sizes))
    above = [s for s in ordered if s >= batch]
    cap = above[0] if above else ordered[-1]
    return tuple(s for s in ordered if s <= cap)


def progress_bar(console: Console, enabled: bool = True) -> Progress:
    """The profiling progress display: a line per device, its sizes done and the size now."""
    return Progress(
        TextColumn("[bold]profiling {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("batch {task.fields[batch]}"),
        TimeElapsedColumn(),
        console=console,
        disable=not enabled,
    )


def sizes_to_measure(
    key: DeviceKey, network: str, store: ProfileStore, sizes: Sequence[int]
) -> list[int]:
    """The sizes of `sizes` that profiling `key` would measure now: those above the largest
    stored (the profiler resumes there) and not above a recorded memory limit."""
    done = store.largest_batch_measured(key, network)
    limit = store.limit(key, network)
    return [b for b in sorted(set(sizes)) if b > done and (limit is None or b <= limit)]


@dataclass(frozen=True)
class DeviceProfile:
    """What profiling did for one device: its key, the sizes stored now, the ones measured
    in this call, the memory limit (if hit), and why it stopped early (if it did)."""

    device: str
    key: DeviceKey
    stored: tuple[int, ...]
    measured_now: tuple[int, ...]
    limit: int | None
    seconds: float
    stopped: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "device": self.device,
            "kind": self.key.kind,
            "host": self.key.host,
            "stored_batches": list(self.stored),
            "measured_now": list(self.measured_now),
            "max_batch": self.limit,
            "seconds": round(self.seconds, 3),
            "stopped": self.stopped,
        }


def profile_device(
    handle: DeviceHandle,
    key: DeviceKey,
    network: str,
    input_shape: tuple[int, int, int],
    store: ProfileStore,
    sizes: Sequence[int],
    *,
    warmup: int = 1,
    repeats: int = 3,
    budget_s: float | None = None,
    progress: bool = True,
    console: Console | None = None,
    bar: Progress | None = None,
) -> DeviceProfile:
    """Measure the sizes of `sizes` that `store` lacks for `key` (resuming after the largest
    stored), stopping at a memory limit or once `budget_s` seconds are spent (the sizes
    done are kept; the table extrapolates past the largest). A device that cannot run
    even the smallest size raises ManipleError naming it (from profile_batch_table).
    `bar`: a live progress display to add this device's line to (default: its own)."""
    if budget_s is not None and not budget_s > 0:
        raise ManipleError(f"profiling budget must be > 0 seconds, got {budget_s!r}")
    out = console or Console(stderr=True)
    done = store.largest_batch_measured(key, network)
    todo = sizes_to_measure(key, network, store, sizes)
    if done and todo and progress:
        out.print(f"{key.name}, {network}: sizes up to {done} already measured; resuming")
    runner = DeviceBatchRunner(handle, input_shape)
    measured: list[int] = []
    stopped = None
    t0 = time.perf_counter()
    own = bar is None
    if bar is None:
        bar = progress_bar(out, enabled=progress and bool(todo))
    with bar if own else contextlib.nullcontext(bar):
        task = bar.add_task(f"{key.name} {network}", total=len(todo), batch="-")
        for b in todo:
            if store.limit(key, network) is not None:
                break  # profile_batch_table hit the memory limit and said so
            if budget_s is not None and measured and time.perf_counter() - t0 > budget_s:
                stopped = (
                    f"time budget of {budget_s:g} s spent; sizes above {measured[-1]} "
                    "are extrapolated"
                )
                out.print(f"{key.name}, {network}: {stopped}")
                break
            bar.update(task, batch=b)
            profile_batch_table(
                runner, key, network, store, batches=[b], warmup=warmup, repeats=repeats,
                progress=False, console=out,
            )  # fmt: skip
            if store.largest_batch_measured(key, network) >= b:
                measured.append(b)
            bar.advance(task)
    limit = store.limit(key, network)
    if stopped is None and limit is not None:
        stopped = f"memory limit: largest batch {limit}"
    return DeviceProfile(
        device=handle.name,
        key=key,
        stored=tuple(e.batch for e in store.entries(key, network)),
        measured_now=tuple(measured),
        limit=limit,
        seconds=time.perf_counter() - t0,
        stopped=stopped,
    )


def table_network(model: ModelSpec, input_shape: tuple[int, int, int]) -> str:
    """The network name measurements are stored under: the zoo name at the zoo's input
    shape, else the name with the shape ("squeezenet_v1.1@3x112x112"), so that tables of
    different input sizes never mix."""
    import maniple.zoo as zoo

    shape = tuple(input_shape)
    if model.network in zoo.names() and shape == tuple(zoo.input_shape(model.network)):
        return model.network
    return f"{model.network}@{'x'.join(map(str, shape))}"


def _for(device: str, value: object, default: object) -> object:
    """`value[device]` for a per-device mapping (default when absent), else `value`."""
    if isinstance(value, Mapping):
        return value.get(device, default)
    return value


def profile_cluster(
    handles: Iterable[DeviceHandle],
    model: ModelSpec,
    input_shape: tuple[int, int, int],
    store: ProfileStore,
    sizes: Sequence[int] | Mapping[str, Sequence[int]],
    *,
    warmup: int = 1,
    repeats: int = 3,
    budget_s: float | None | Mapping[str, float | None] = None,
    progress: bool = True,
    console: Console | None = None,
) -> tuple[PerfTable, tuple[DeviceProfile, ...]]:
    """Profile every device of `handles` that the store lacks sizes for, then return their
    table (devices in `handles` order, named as the handles; network named by
    `table_network`) and what was done.

    `sizes` and `budget_s` may be per device name. An emulated board is profiled on a
    twin opened in fast-forward mode (board time without the sleeps: seconds instead of
    minutes), with the same board, link and model, then closed; the twins are profiled
    together, as the boards will run. Every other device is profiled on its own handle,
    alone, while the others are idle.
    """
    handles = list(handles)
    network = table_network(model, input_shape)
    keys = {h.name: device_key(h) for h in handles}
    todo = {
        h.name: sizes_to_measure(keys[h.name], network, store, _sizes(h, sizes)) for h in handles
    }
    out = console or Console(stderr=True)
    profiles: dict[str, DeviceProfile] = {}
    twins: dict[str, DeviceHandle] = {}

    def profile(h: DeviceHandle, target: DeviceHandle, db: ProfileStore, bar: Progress) -> None:
        profiles[h.name] = profile_device(
            target,
            keys[h.name],
            network,
            input_shape,
            db,
            _sizes(h, sizes),
            warmup=warmup,
            repeats=repeats,
            budget_s=_for(h.name, budget_s, None),  # type: ignore[arg-type]
            progress=progress,
            console=out,
            bar=bar,
        )

    try:
        for h in handles:  # twins start in parallel
            if todo[h.name] and h.spec.is_emulated:
                twins[h.name] = open_device(
                    h.spec,
                    model,
                    dilation=h.dilation,
                    fast_forward=True,
                    timeout_s=h.timeout_s,
                    wait=False,
                )
        for twin in twins.values():  # all started before any is timed: starting is busy
            twin.wait_ready()  # type: ignore[attr-defined]
        with progress_bar(out, enabled=progress and any(todo.values())) as bar:
            _profile_together(handles, twins, store, bar, profile)
            for h in handles:
                if h.name not in twins:
                    profile(h, h, store, bar)
    finally:
        for twin in twins.values():
            twin.close()
    table = store.perf_table(network, [keys[h.name] for h in handles])
    return table, tuple(profiles[h.name] for h in handles)


def _profile_together(
    handles: Sequence[DeviceHandle],
    twins: Mapping[str, DeviceHandle],
    store: ProfileStore,
    bar: Progress,
    profile: Callable[[DeviceHandle, DeviceHandle, ProfileStore, Progress], None],
) -> None:
    """Profile the emulated twins at the same time, each thread with its own connection to
    the store: in a run the boards are busy at once, sharing the host's compute slots, so
    their tables are measured that way too (and in parallel where there are several
    slots)."""
    errors: list[BaseException] = []

    def work(h: DeviceHandle) -> None:
        try:
            with ProfileStore(store.path) as db:
                profile(h, twins[h.name], db, bar)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(exc)

    threads = [
        threading.Thread(target=work, args=(h,), name=f"profile-{h.name}")
        for h in handles
        if h.name in twins
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


@contextlib.contextmanager
def profiled_cluster(
    cluster: ClusterSpec,
    model: ModelSpec,
    input_shape: tuple[int, int, int],
    store: ProfileStore,
    sizes: Sequence[int] | Mapping[str, Sequence[int]],
    *,
    repeats: int = 3,
    budget_s: float | None | Mapping[str, float | None] = None,
    progress: bool = True,
    console: Console | None = None,
) -> Iterator[tuple[Cluster, PerfTable, tuple[DeviceProfile, ...]]]:
    """Open `cluster` holding `model` (emulated boards in real time), profile what the store
    lacks (see profile_cluster), and yield (devices, their table, what profiling did);
    the devices are closed on leaving, also after an error."""
    if cluster.fast_forward:
        raise ManipleError(
            "fast_forward is for profiling only: a run in fast-forward mode would time "
            "emulated boards without their sleeps; drop fast_forward from the cluster"
        )
    with open_cluster(cluster, model) as devices:
        table, profiles = profile_cluster(
            devices,
            model,
            input_shape,
            store,
            sizes,
            repeats=repeats,
            budget_s=budget_s,
            progress=progress,
            console=console,
        )
        yield devices, table, profiles


def _sizes(handle: DeviceHandle, sizes: Sequence[int] | Mapping[str, Sequence[int]]) -> list[int]:
    chosen = _for(handle.name, sizes, None)
    if chosen is None:
        raise ManipleError(f"no batch sizes to profile given for device {handle.name!r}")
    return list(chosen)  # type: ignore[call-overload]
