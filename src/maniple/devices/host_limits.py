"""What this host has (cores, available memory, the process limit) and the checks that
refuse work it cannot hold, before any process starts or any tensor is allocated.

Why: `--emulate 100xfirefly-rk3399` on 2 cores used to start 84 worker processes and take
11 GB before anything was printed, and `--batch 1000000000` profiled for 10 s and then
died allocating tens of TB. Every figure a check needs is known up front: the host's
from /proc and the kernel, the network's from its shapes (`maniple.graph.memory`), so a
check costs milliseconds and its error names the number, the limit and the fix.

The rules (the figures are measured on this project's 2-core VM with torch 2.13 CPU and
Ray 2.60; see `tests/test_limits.py`):

- every emulated board is one Ray worker process on this host holding its own model copy:
  WORKER_OVERHEAD (a worker with torch and the Worker imported: 344 MiB resident with
  SqueezeNet's 5 MiB of weights, 894 MiB with VGG-16's 528 MiB) + the weights + one
  forward pass of the images it runs; a private local Ray adds RAY_BASE (its GCS, raylet
  and agents: about 430 MiB resident);
- at most MAX_BOARDS_PER_CORE boards per core: boards take turns on the host's compute
  slots, so past that every extra board only stretches the time dilation and the run's
  wall time (the Legion study's largest set is 6 boards; the bench runs 6 on 2 cores);
- every worker is about WORKER_TASKS processes/threads (26 counted in a board worker),
  Ray itself about RAY_BASE_TASKS, all under the user's RLIMIT_NPROC;
- work is refused when its memory floor exceeds USABLE_FRACTION of the available memory
  (MemAvailable, or the cgroup's headroom when smaller): the rest is left to the
  coordinator, the page cache and whatever else the host runs.
"""

from __future__ import annotations

import functools
import math
import os
import resource
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from maniple.devices.model_spec import ModelSpec
from maniple.devices.names import DeviceSpec
from maniple.errors import ManipleError
from maniple.graph.memory import MIB, MemoryEstimate, estimate_builder, estimate_module, fmt_bytes

WORKER_OVERHEAD = 350 * MIB
RAY_BASE = 512 * MIB
WORKER_TASKS = 32
RAY_BASE_TASKS = 160
MAX_BOARDS_PER_CORE = 8
USABLE_FRACTION = 0.9
FLOAT32_BYTES = 4


@dataclass(frozen=True)
class HostResources:
    """This host's figures. max_tasks: the user's process/thread limit (None: unlimited);
    tasks_in_use: the user's processes and threads now; address_room: what this process
    may still map under its address-space limit (RLIMIT_AS, `ulimit -v`; None: none)."""

    cores: int
    available_bytes: int
    max_tasks: int | None
    tasks_in_use: int = 0
    address_room: int | None = None

    @property
    def usable_bytes(self) -> int:
        """What new processes (boards) may take: a share of the available memory."""
        return int(self.available_bytes * USABLE_FRACTION)

    @property
    def here_bytes(self) -> int:
        """What this process may still allocate: the usable memory, or less under RLIMIT_AS."""
        if self.address_room is None:
            return self.usable_bytes
        return min(self.usable_bytes, self.address_room)

    def memory_text(self, here: bool = False) -> str:
        text = (
            f"this host has {fmt_bytes(self.available_bytes)} available "
            f"({fmt_bytes(self.usable_bytes)} usable, {USABLE_FRACTION:.0%})"
        )
        if here and self.here_bytes < self.usable_bytes:
            text += (
                f" and this process may map only {fmt_bytes(self.here_bytes)} more "
                "(RLIMIT_AS, `ulimit -v`)"
            )
        return text


def host_resources() -> HostResources:
    """The host as it is now (tests replace this function to check against fixed figures)."""
    max_tasks, tasks = process_limit()
    return HostResources(
        usable_cores(), available_memory(), max_tasks, tasks, address_room=address_room()
    )


def address_room() -> int | None:
    """Bytes this process may still map under its soft RLIMIT_AS (None: unlimited)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        status = Path("/proc/self/status").read_text()
        size = next(
            int(line.split()[1]) * 1024
            for line in status.splitlines()
            if line.startswith("VmSize:")
        )
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    return max(0, int(soft) - size)


def usable_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def available_memory() -> int:
    """Bytes that can be allocated without swapping: /proc/meminfo's MemAvailable, or the
    memory cgroup's limit less its usage where that is smaller."""
    available = _meminfo_available()
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and usage is not None and limit < 2**60:
            available = min(available, max(0, limit - usage))
    return available


def _meminfo_available() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    pages, size = os.sysconf("SC_AVPHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    return int(pages * size)


def _read_int(path: str) -> int | None:
    try:
        return int(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def process_limit() -> tuple[int | None, int]:
    """(the soft RLIMIT_NPROC, or None when unlimited or not enforced (the kernel does not
    apply it to root); this user's processes and threads now, which count against it)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NPROC)
    if soft == resource.RLIM_INFINITY or os.geteuid() == 0:
        return None, 0
    uid, tasks = os.getuid(), 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid == uid:
                tasks += sum(1 for _ in (entry / "task").iterdir())
        except OSError:
            continue  # gone meanwhile
    return int(soft), tasks


def model_memory(model: ModelSpec, shape: tuple[int, int, int]) -> MemoryEstimate | None:
    """The estimate for a ModelSpec: a zoo network is built on the meta device (free);
    anything else is built here, as the coordinator would. None where the network's
    shapes cannot be propagated without running it: not fx-traceable (a batch split does
    not need it to be) or an op without a meta kernel; the checks then count no model."""
    from maniple import zoo

    if model.network in zoo.names():
        return _zoo_estimate(model.network, tuple(shape))  # type: ignore[arg-type]
    module, _, name = zoo.resolve(model.network, shape, seed=model.seed)
    return _or_none(lambda: estimate_module(module, shape, name))


@functools.lru_cache(maxsize=32)
def _zoo_estimate(network: str, shape: tuple[int, int, int]) -> MemoryEstimate | None:
    """A zoo network's estimate, kept: `infer` and `open_cluster` both ask for it."""
    from maniple import zoo

    return _or_none(lambda: estimate_builder(zoo.entry(network).builder, shape, network))


def _or_none(estimate: Callable[[], MemoryEstimate]) -> MemoryEstimate | None:
    try:
        return estimate()
    except Exception:  # noqa: BLE001 - no estimate is not an error
        return None


def check_input_shape(
    shape: Sequence[int], batch: int = 1, host: HostResources | None = None
) -> None:
    """Refuse a batch whose float32 input alone does not fit: needs nothing but the shape,
    so it runs before any network is built or traced."""
    per_image = FLOAT32_BYTES * math.prod(int(s) for s in shape)
    host = host or host_resources()
    if batch * per_image > host.here_bytes:
        text = "x".join(map(str, shape))
        most = host.here_bytes // per_image
        fix = f"use --batch {most} at most" if most >= 1 else "use a smaller --input-shape"
        raise ManipleError(
            f"{_images(batch)} of {text} need {fmt_bytes(batch * per_image)} for the input "
            f"alone ({fmt_bytes(per_image)} per image in float32); "
            f"{host.memory_text(here=True)}; {fix}"
        )


def check_forward(
    memory: MemoryEstimate | None, images: int = 1, host: HostResources | None = None
) -> None:
    """Refuse a forward pass over `images` images here (capture, a reference run) whose
    memory floor does not fit; the weights are not counted: the module is built already."""
    if memory is None:
        return
    host = host or host_resources()
    need = memory.forward_bytes(images)
    if need <= host.here_bytes:
        return
    room = host.here_bytes
    if images > 1 and room >= memory.peak_bytes:
        fix = f"use --batch {room // memory.peak_bytes} at most"
    else:
        fix = f"use a smaller --input-shape, {_smaller_shape(memory, room)}"
    raise ManipleError(
        f"{memory.describe()} needs at least {fmt_bytes(need)} for one forward pass of "
        f"{_images(images)}; {host.memory_text(here=True)}; {fix}"
    )


def check_batch(
    devices: Sequence[DeviceSpec],
    memory: MemoryEstimate | None,
    shape: Sequence[int],
    batch: int,
    host: HostResources | None = None,
) -> None:
    """Refuse a batch split whose coordinator cannot hold it: the batch, the split's and
    the single unit's outputs, and, when every device computes in this host's memory
    (cpu, emulated boards), the best single unit's forward pass over the whole batch
    (the baseline gives it all the images). Accelerator memory is the profiler's to find."""
    host = host or host_resources()
    check_input_shape(shape, batch, host)
    if memory is None:
        return
    on_host = all(d.kind in ("cpu", "emu") for d in devices)
    per_image = memory.input_bytes + 2 * memory.output_bytes
    if on_host:
        per_image += max(0, memory.peak_bytes - memory.input_bytes)
    fixed = memory.param_bytes * sum(1 for d in devices if d.kind == "cpu")
    need = fixed + batch * per_image
    if need <= host.here_bytes:
        return
    most = max(0, host.here_bytes - fixed) // per_image
    what = "input, outputs and one forward pass" if on_host else "input and outputs"
    raise ManipleError(
        f"--batch {batch} of {memory.describe()} needs at least {fmt_bytes(need)} of this "
        f"host's memory ({fmt_bytes(per_image)} per image for the {what}); "
        f"{host.memory_text(here=True)}; "
        + (f"use --batch {most} at most" if most else "use a smaller --input-shape")
    )


def check_boards(
    devices: Sequence[DeviceSpec],
    memory: MemoryEstimate | None = None,
    *,
    images: int = 1,
    workers_per_board: int = 1,
    ray_address: str | None = None,
    host: HostResources | None = None,
) -> None:
    """Refuse emulated boards this host cannot run (see the module docstring's rules).

    images: the most images one of a board's workers runs at once; workers_per_board: 2
    while a batch split profiles (each board has a fast-forward twin)."""
    boards = sum(1 for d in devices if d.is_emulated)
    if boards == 0:
        return
    host = host or host_resources()
    workers = boards * workers_per_board
    base_bytes, base_tasks = (RAY_BASE, RAY_BASE_TASKS) if _starts_ray(ray_address) else (0, 0)
    per_board = workers_per_board * board_bytes(memory) + _extra_images(memory, images)
    by_cores = MAX_BOARDS_PER_CORE * host.cores
    by_memory = max(0, host.usable_bytes - base_bytes) // per_board
    by_tasks = None
    if host.max_tasks is not None:
        room = host.max_tasks - host.tasks_in_use - base_tasks
        by_tasks = max(0, room) // (WORKER_TASKS * workers_per_board)
    most = min(x for x in (by_cores, by_memory, by_tasks) if x is not None)
    fix = f"use at most {most} boards" if most else "use no emulated boards"
    twins = f" ({workers_per_board} per board while profiling)" if workers_per_board > 1 else ""
    if boards > by_cores:
        raise ManipleError(
            f"{boards} emulated boards on {host.cores} cores is {boards / host.cores:.3g} per "
            f"core; at most {MAX_BOARDS_PER_CORE} per core run usefully (boards take turns on "
            "the host's compute slots: past that each one only stretches the time dilation "
            f"and the wall time); {fix}, or a host with more cores"
        )
    if by_tasks is not None and boards > by_tasks:
        need = workers * WORKER_TASKS + base_tasks
        raise ManipleError(
            f"{boards} emulated boards need about {need:,} processes and threads ({workers} "
            f"workers{twins} x {WORKER_TASKS}, {base_tasks} for Ray); the process limit "
            f"(RLIMIT_NPROC, `ulimit -u`) is {host.max_tasks:,} with {host.tasks_in_use:,} in "
            f"use; {fix}, or raise the limit"
        )
    if boards > by_memory:
        model = f" + the model, {memory.describe()}" if memory is not None else ""
        raise ManipleError(
            f"{boards} emulated boards need about {fmt_bytes(boards * per_board + base_bytes)}: "
            f"{workers} workers{twins} x {fmt_bytes(board_bytes(memory))} "
            f"({fmt_bytes(WORKER_OVERHEAD)} per worker process{model})"
            + (f" + {fmt_bytes(base_bytes)} for Ray itself" if base_bytes else "")
            + f"; {host.memory_text()}; {fix}, or a smaller network or input"
        )


def board_bytes(memory: MemoryEstimate | None) -> int:
    """One board worker running one image: the process, its model copy, one forward pass."""
    if memory is None:
        return WORKER_OVERHEAD
    return WORKER_OVERHEAD + memory.param_bytes + memory.forward_bytes(1)


def check_infer(
    devices: Sequence[DeviceSpec],
    model: ModelSpec,
    shape: tuple[int, int, int],
    batch: int,
    profile_sizes: Sequence[int],
    ray_address: str | None = None,
) -> None:
    """Every limit of a batch split (`maniple infer`), before any profiling: the batch's
    input from its shape alone (instant, whatever the batch), then the model's estimate
    against the coordinator's memory and the emulated boards' workers."""
    host = host_resources()
    check_input_shape(shape, batch, host)
    memory = model_memory(model, shape)
    check_batch(devices, memory, shape, batch, host)
    largest = min(batch, max(profile_sizes, default=1))
    check_boards(
        devices, memory, images=largest, workers_per_board=2, ray_address=ray_address, host=host
    )


def _extra_images(memory: MemoryEstimate | None, images: int) -> int:
    """Bytes beyond one image for the one worker of a board that runs `images` at once."""
    return 0 if memory is None else memory.forward_bytes(max(0, images - 1))


def _starts_ray(address: str | None) -> bool:
    """Whether opening the devices starts a private Ray here (not yet running in this
    process): its own processes then need memory and process slots too."""
    if address not in (None, "local"):
        return False
    ray = sys.modules.get("ray")
    return not (ray is not None and getattr(ray, "is_initialized", lambda: False)())


def _images(n: int) -> str:
    return f"{n:,} image" + ("" if n == 1 else "s")


def _smaller_shape(memory: MemoryEstimate, room: int) -> str:
    """An input that would fit, scaling H and W alike (activations grow with H x W)."""
    c, h, w = memory.input_shape
    if room <= 0 or memory.peak_bytes <= 0:
        return "or a smaller network"
    scale = math.sqrt(room / memory.peak_bytes)
    return f"e.g. {c},{max(1, int(h * scale))},{max(1, int(w * scale))} at most"
