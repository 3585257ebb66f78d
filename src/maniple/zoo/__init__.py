"""The seed networks, defined here with seeded random weights.

torchvision does not import with this environment's CPU build of torch, and the seeds'
results are about speed, not accuracy, so maniple defines the networks it benchmarks
itself: same layers and MACs as the reference definitions, weights from a local
generator so any two processes agree bit for bit. Every model traces with
torch.fx.symbolic_trace and uses only ops the layer graph understands.
"""

from __future__ import annotations

from maniple.zoo.registry import ZooEntry, build, entry, input_shape, names
from maniple.zoo.resolve import import_spec_module, parse_input_shape, resolve

__all__ = [
    "ZooEntry",
    "build",
    "entry",
    "input_shape",
    "names",
    "parse_input_shape",
    "import_spec_module",
    "resolve",
]
