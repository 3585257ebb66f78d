"""`ModelSpec`: how a worker (re)builds the model, sent to it once and never per call.

Why not send the nn.Module: a worker may be another process or another machine. The spec
names a zoo network (rebuilt bit-identically from its seed), a `package.module:factory`
importable there, or anything `maniple.zoo.resolve` understands; optional weights travel
once as the bytes of a `torch.save`d state dict, loaded with `weights_only=True` (no
arbitrary unpickling).
"""

from __future__ import annotations

import importlib
import inspect
import io
import re
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from maniple.errors import ManipleError

_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass(frozen=True)
class BuiltModel:
    """A model ready to run: eval mode, fp32, CPU; its input shape and display name."""

    module: nn.Module
    input_shape: tuple[int, int, int]
    name: str


@dataclass(frozen=True)
class ModelSpec:
    """What to build: `network` (zoo name, `pkg.mod:factory`, or a zoo.resolve spec),
    the weight seed, the input (C, H, W) when the network does not define it, and
    optionally the weights as state-dict bytes."""

    network: str
    seed: int = 0
    input_shape: tuple[int, int, int] | None = None
    state_dict: bytes | None = field(default=None, repr=False, compare=False)
    VERSION: ClassVar[int] = 1

    def __post_init__(self) -> None:
        if not isinstance(self.network, str) or not self.network:
            raise ManipleError(
                f"ModelSpec.network must be a non-empty string, got {self.network!r}"
            )
        if self.input_shape is not None:
            shape = tuple(self.input_shape)
            if len(shape) != 3 or not all(isinstance(d, int) and d > 0 for d in shape):
                raise ManipleError(
                    "ModelSpec.input_shape must be (C, H, W) positive ints, "
                    f"got {self.input_shape!r}"
                )
            object.__setattr__(self, "input_shape", shape)

    def with_weights(self, module: nn.Module) -> ModelSpec:
        """A copy that carries `module`'s weights, to be shipped once to each worker."""
        buf = io.BytesIO()
        torch.save(module.state_dict(), buf)
        return ModelSpec(self.network, self.seed, self.input_shape, buf.getvalue())

    def build(self) -> BuiltModel:
        """Build the model here (in the worker). Errors name the network and the fix."""
        module, shape, name = self._architecture()
        if self.state_dict is not None:
            try:
                state = torch.load(io.BytesIO(self.state_dict), weights_only=True)
                module.load_state_dict(state, strict=True)
            except Exception as exc:
                raise ManipleError(
                    f"weights shipped for {self.network!r} do not load: {exc}"
                ) from exc
        return BuiltModel(module.float().eval(), shape, name)

    def _architecture(self) -> tuple[nn.Module, tuple[int, int, int], str]:
        zoo = _zoo()
        if zoo is not None and self.network in zoo.names():
            shape = self.input_shape or tuple(zoo.input_shape(self.network))
            return zoo.build(self.network, seed=self.seed), shape, self.network
        if _FACTORY.match(self.network):
            return self._from_factory()
        if zoo is not None and hasattr(zoo, "resolve"):
            module, shape, name = zoo.resolve(self.network, self.input_shape, seed=self.seed)
            return module, tuple(shape), name
        raise ManipleError(
            f"cannot build network {self.network!r}: not a zoo name (maniple.zoo is not "
            "available) and not a 'package.module:factory' path"
        )

    def _from_factory(self) -> tuple[nn.Module, tuple[int, int, int], str]:
        mod_name, attr = self.network.split(":")
        zoo = _zoo()
        try:
            if zoo is not None and hasattr(zoo, "import_spec_module"):
                module = zoo.import_spec_module(self.network, mod_name)  # cwd too, as zoo does
            else:
                module = importlib.import_module(mod_name)
            factory = getattr(module, attr)
        except (ImportError, AttributeError, ManipleError) as exc:
            raise ManipleError(
                f"cannot import model factory {self.network!r} in this worker: {exc}; "
                "the module must be importable on every node"
            ) from exc
        if "seed" in inspect.signature(factory).parameters:
            module = factory(seed=self.seed)
        else:
            torch.manual_seed(self.seed)
            module = factory()
        shape = self.input_shape or getattr(module, "input_shape", None)
        if shape is None:
            raise ManipleError(
                f"model factory {self.network!r} gives no input shape; "
                "pass ModelSpec(..., input_shape=(C, H, W))"
            )
        return module, tuple(shape), attr


def _zoo():  # noqa: ANN202 - a module or None
    try:
        zoo = importlib.import_module("maniple.zoo")
    except ImportError:
        return None
    return zoo if hasattr(zoo, "names") and hasattr(zoo, "build") else None
