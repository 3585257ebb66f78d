"""NaN or Inf in an output or its reference is its own error, never a passed check, and
JSON output is strict (no NaN or Infinity tokens)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from maniple.cli.app import print_json
from maniple.devices import DeviceSpec, LocalHandle
from maniple.errors import ManipleError
from maniple.graph import capture
from maniple.spatial.session import LegionSession
from maniple.tiling.verify import NonFiniteOutputError, relative_error, verify_split

SHAPE = (3, 16, 16)


class NaNNet(nn.Module):
    """Two convs whose second one has a NaN weight: every output value is NaN."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3, padding=1)
        with torch.no_grad():
            self.b.weight[0, 0, 0, 0] = float("nan")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x))).mean(dim=(2, 3))


def test_relative_error_refuses_non_finite_values() -> None:
    good = torch.ones(1, 2, 3, 3)
    bad_reference = good.clone()
    bad_reference[0, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteOutputError, match="reference output .* 1 NaN or Inf"):
        relative_error(good, bad_reference)
    bad_split = good.clone()
    bad_split[0, 1, 2, 2] = float("inf")
    with pytest.raises(NonFiniteOutputError, match="split output .* this is a bug"):
        relative_error(bad_split, good)
    assert relative_error(good, good) == 0.0


def test_verify_split_of_a_nan_model_is_an_error_not_a_pass() -> None:
    graph = capture(NaNNet(), SHAPE, "nan-net")
    with pytest.raises(NonFiniteOutputError, match="the model itself produces them"):
        verify_split(graph, trials=1, devices=2)


def test_spatial_session_of_a_nan_model_is_an_error_not_a_pass() -> None:
    model = NaNNet()
    graph = capture(model, SHAPE, "nan-net")
    handles = [
        LocalHandle(DeviceSpec("cpu", threads=1, label=f"cpu{i}"), model, input_shape=SHAPE)
        for i in range(2)
    ]
    try:
        with pytest.raises(NonFiniteOutputError):
            LegionSession(handles, graph, repeats=1).measure("layerwise")
    finally:
        for h in handles:
            h.close()


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_json_output_is_strict(value: float, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ManipleError, match="non-finite number"):
        print_json({"max_rel_error": value})
    assert capsys.readouterr().out == ""
    print_json({"max_rel_error": 0.5})
    assert capsys.readouterr().out.strip().endswith("}")
