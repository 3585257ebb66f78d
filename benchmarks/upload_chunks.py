"""How many upload chunks a GPU worker should cut a host batch into: one worker's
`run_batch` with the batch cut into 1, 2 or 4 chunks (uploads overlapping compute),
beside plain PyTorch (one pinned non-blocking copy, one forward), in one process.

    python benchmarks/upload_chunks.py --out $OUT [--repeats 7]

Writes upload-chunks.json to --out. Why: chunking hides the upload behind compute, but
each chunk is a smaller batch, which some networks run less efficiently; this measures
which wins, per network and precision, to set `model_exec.MAX_CHUNKS`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import maniple.devices.model_exec as model_exec
from maniple.batch.baseline import torch_baseline
from maniple.devices import ModelSpec
from maniple.devices.names import parse_device
from maniple.devices.worker import Worker
from maniple.precision import ExecMode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("docs/results"))
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--batch", type=int, default=256)
    args = ap.parse_args()
    x = torch.randn(args.batch, 3, 224, 224).pin_memory()
    rows = []
    for net in ("resnet-50", "vgg-16"):
        for mode in (ExecMode("fp32"), ExecMode("bf16", "channels-last")):
            model = ModelSpec(net)
            base = torch_baseline(model, "cuda:0", mode, x, repeats=args.repeats)
            worker = Worker(parse_device("cuda:0").with_mode(mode), model)
            row = {"network": net, "mode": mode.describe(), "torch_ms": base.median_ms}
            for chunks in (1, 2, 4):
                model_exec.MAX_CHUNKS = chunks
                worker.run_batch(x)
                times = []
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    worker.run_batch(x)
                    times.append((time.perf_counter() - t0) * 1e3)
                row[f"chunks_{chunks}_ms"] = sorted(times)[len(times) // 2]
            del worker
            torch.cuda.empty_cache()
            rows.append(row)
            print(json.dumps(row), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "upload-chunks.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
