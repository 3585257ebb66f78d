"""Turn what a user typed (a zoo name or `package.module:callable`) into a model.

This is the one place where the CLI's `--model` / `--input-shape` strings become an
`nn.Module`, so that "any nn.Module works the same way as a zoo network" holds from the
command line too. Every failure is a ManipleError naming the spec, what went wrong and
the fix, because the user typed it and can change it.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import torch
from torch import nn

from maniple.errors import ManipleError, UnknownNameError
from maniple.zoo.registry import build, entry

_SPEC_FORM = "a zoo name (see `maniple models`) or 'package.module:callable'"
MAX_INPUT_SIDE = 65_536
MAX_INPUT_VALUES = 2**28
"""Absurd input sizes are refused as soon as they are read, before anything is built or
allocated: no side over 65,536 and no image over 2^28 values (1 GiB in float32, e.g.
3x9459x9459). Whether a smaller input fits this host is the memory check's to say
(maniple.devices.host_limits)."""


def check_input_size(values: tuple[int, int, int]) -> tuple[int, int, int]:
    """`values` if within MAX_INPUT_SIDE and MAX_INPUT_VALUES, else a ManipleError."""
    count = values[0] * values[1] * values[2]
    if max(values) > MAX_INPUT_SIDE or count > MAX_INPUT_VALUES:
        raise ManipleError(
            f"input shape {','.join(map(str, values))} is {count:,} values per image "
            f"({count * 4 / 2**30:,.1f} GiB in float32); maniple takes at most "
            f"{MAX_INPUT_SIDE:,} per side and {MAX_INPUT_VALUES:,} values (1 GiB) per image; "
            "use a smaller --input-shape, e.g. 3,224,224"
        )
    return values


def parse_input_shape(text: str) -> tuple[int, int, int]:
    """`"3,224,224"` -> `(3, 224, 224)`; spaces are allowed around the numbers."""
    parts = [p.strip() for p in text.split(",")]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or any(v <= 0 for v in values):
        raise ManipleError(
            f"bad input shape {text!r}: expected C,H,W as three positive integers "
            "separated by commas, e.g. 3,224,224"
        )
    return check_input_size(values)  # type: ignore[arg-type]


def _check_shape(shape: Any) -> tuple[int, int, int]:
    """Validate an input shape given from Python (the CLI goes through parse_input_shape)."""
    try:
        given = tuple(shape)
        values = tuple(int(v) for v in given)
        ok = len(values) == 3 and all(v > 0 and v == g for v, g in zip(values, given, strict=True))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ManipleError(
            f"bad input shape {shape!r}: expected (C, H, W), three positive integers, "
            "e.g. (3, 224, 224)"
        )
    return check_input_size(values)  # type: ignore[arg-type]


def resolve(
    spec: str, input_shape: tuple[int, int, int] | None = None, seed: int = 0
) -> tuple[nn.Module, tuple[int, int, int], str]:
    """(module in eval mode, its (C, H, W) input shape, a display name) for `spec`.

    A zoo name builds the zoo network with `seed`; `input_shape`, if given, overrides the
    zoo's (e.g. VGG-16 at 448x448) but must keep its channel count. A
    `package.module:callable` spec imports the module (the current directory is tried
    too, as `python -m` would) and calls the callable with no arguments, with torch's RNG
    seeded from `seed` and restored afterwards, so its default init is reproducible and
    the caller's RNG state is untouched; `input_shape` is required, since an arbitrary
    module does not say what it expects.
    """
    if ":" not in spec:
        try:
            zoo_entry = entry(spec)
        except UnknownNameError as exc:
            exc.args = (f"{exc.args[0]}. Or give a module spec 'package.module:callable'.",)
            raise
        shape = zoo_entry.input_shape
        if input_shape is not None:
            shape = _check_shape(input_shape)
            if shape[0] != zoo_entry.input_shape[0]:
                raise ManipleError(
                    f"input shape {shape} has {shape[0]} channels but {spec!r} takes "
                    f"{zoo_entry.input_shape[0]}; use "
                    f"{','.join(map(str, (zoo_entry.input_shape[0], *shape[1:])))}"
                )
        return build(spec, seed=seed), shape, spec

    if input_shape is None:
        raise ManipleError(
            f"--input-shape C,H,W is required for module specs like {spec!r}: maniple "
            "cannot tell what input an arbitrary module takes (e.g. --input-shape 3,224,224)"
        )
    shape = _check_shape(input_shape)
    factory = _load_callable(spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = factory() if not isinstance(factory, nn.Module) else factory
        except Exception as exc:
            raise ManipleError(
                f"model spec {spec!r}: calling it failed with {type(exc).__name__}: {exc}. "
                "It must be callable with no arguments and return a torch.nn.Module."
            ) from exc
    if not isinstance(model, nn.Module):
        raise ManipleError(
            f"model spec {spec!r} returned {type(model).__name__}, not a torch.nn.Module; "
            "point the spec at a function or class that returns the model."
        )
    return model.eval(), shape, spec


def _load_callable(spec: str) -> Any:
    """Import `module` and walk the dotted attribute path of `module:attr.path`."""
    module_name, _, attr_path = spec.partition(":")
    if not module_name or not attr_path or ":" in attr_path:
        raise ManipleError(
            f"bad model spec {spec!r}: expected {_SPEC_FORM}, e.g. 'mypkg.nets:build_net'"
        )
    module = import_spec_module(spec, module_name)
    obj: Any = module
    walked = module_name
    for attr in attr_path.split("."):
        if not hasattr(obj, attr):
            public = sorted(
                n for n in dir(obj) if not n.startswith("_") and callable(getattr(obj, n))
            )
            shown = ", ".join(public[:20]) + (", ..." if len(public) > 20 else "")
            raise ManipleError(
                f"model spec {spec!r}: {walked!r} has no attribute {attr!r}. "
                f"Callables there: {shown or '(none)'}. Fix the name after the colon."
            )
        obj = getattr(obj, attr)
        walked = f"{walked}.{attr}" if walked != module_name else f"{module_name}:{attr}"
    if not callable(obj):
        raise ManipleError(
            f"model spec {spec!r} names a {type(obj).__name__}, which is not callable; "
            "point it at a function or class that returns a torch.nn.Module."
        )
    return obj


def import_spec_module(spec: str, module_name: str) -> Any:
    """Import `module_name`, retrying with the current directory on sys.path.

    Console-script entry points do not put the working directory on sys.path, but a
    user who writes `mynet:build` next to `mynet.py` expects it to be found. Every path
    that imports a module spec (here, and `ModelSpec` in a worker) goes through this, so
    that every command finds the same modules.
    """
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        top = module_name.split(".")[0]
        cwd = os.getcwd()
        if exc.name != top or cwd in sys.path or "" in sys.path:
            raise _import_error(spec, module_name, exc) from exc
        sys.path.insert(0, cwd)
        try:
            return importlib.import_module(module_name)
        except Exception as exc2:
            raise _import_error(spec, module_name, exc2) from exc2
        finally:
            sys.path.remove(cwd)
    except Exception as exc:
        raise _import_error(spec, module_name, exc) from exc


def _import_error(spec: str, module_name: str, exc: BaseException) -> ManipleError:
    if isinstance(exc, ModuleNotFoundError):
        fix = (
            "check the spelling before the colon, and that the package is installed or "
            "its directory is on PYTHONPATH"
        )
    else:
        fix = "the module itself raised while importing; fix the error in it"
    return ManipleError(
        f"model spec {spec!r}: cannot import {module_name!r} ({type(exc).__name__}: {exc}); {fix}."
    )
