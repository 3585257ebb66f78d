"""Seeded, deterministic weight initialisation for zoo networks.

Why not torch's default init: it draws from the global RNG, so building a model would
disturb the caller's random stream, and two processes only agree if they happen to be in
the same RNG state. Here every parameter and buffer is drawn from one local
`torch.Generator`, in module registration order, so `build(name, seed)` gives
bit-identical weights in any process and leaves `torch.random` untouched.

The scales keep activations O(1) through depth on a standard-normal input, so split-vs-
whole comparisons in fp32 are meaningful at every layer:
- conv: He normal with fan_in (variance 2/fan_in, the ReLU gain; YOLOv2's LeakyReLU(0.1)
  would want 1% less), bias 0. fan_in rather than fan_out because it preserves the
  *forward* variance; it is also right for depthwise convs, where fan_in is k*k but
  fan_out counts the groups.
- linear: normal(0, 1/sqrt(fan_in)), variance-preserving, so logits have std ~ O(1).
- batch norm: weight 1, bias 0, but running_mean ~ N(0, 0.1^2) and running_var ~
  U(0.5, 1.5), so that eval-mode BN is a non-trivial per-channel affine map (an identity
  BN would hide bugs in BN folding or in the order a split applies it).
- the last BN of a residual branch (marked by `RESIDUAL_BN`) has weight 0.25, not 1.
  Eval-mode BN does not renormalise, so with weight 1 each `relu(identity + branch)`
  roughly doubles the variance and adds a positive mean: ResNet-50's logits reached
  std ~2500. With 0.25 every activation of ResNet-18/34/50 stays within rms 0.6-8.
- a BN marked `LINEAR_BN` (its output goes into the next conv with no activation in
  between, as after ShuffleNet v2's depthwise convs) has weight sqrt(1/2): the next
  conv's He gain of 2 assumes a ReLU halved its input's second moment, and without this
  each ShuffleNet v2 unit's branch doubled it (logits std ~750 after its 16 units, ~17
  with the gain).
- layer norm (nn.LayerNorm and subclasses such as ConvNeXt's LayerNorm2d): weight ~
  U(0.5, 1.5), bias ~ N(0, 0.1^2), for the same reason as BN's random running stats: a
  unit affine would hide a split that applies it on the wrong axis.
- a parameter registered under the name `LAYER_SCALE` ("layer_scale", ConvNeXt's
  per-channel residual gain, (C, 1, 1)): U(0.5, 1.5) x 0.25, the residual gain above
  with a per-channel spread (torchvision's training init, 1e-6, would make every block
  all but the identity and hide bugs in its branch).
"""

from __future__ import annotations

import math

import torch
from torch import nn

# Attribute set on a BatchNorm2d whose output is added to a residual shortcut.
RESIDUAL_BN = "_maniple_residual_bn"
_RESIDUAL_GAIN = 0.25
# Attribute set on a BatchNorm2d whose output feeds a conv directly (no activation).
LINEAR_BN = "_maniple_linear_bn"
_LINEAR_GAIN = math.sqrt(0.5)
# Name of a per-channel residual-branch gain parameter (ConvNeXt's layer scale).
LAYER_SCALE = "layer_scale"


@torch.no_grad()
def init_parameters(model: nn.Module, generator: torch.Generator) -> None:
    """Fill every parameter and buffer of `model` from `generator`, deterministically.

    Raises RuntimeError if a parameter or buffer is left untouched (a module type this
    function does not know): with `to_empty` storage that would be uninitialised memory.
    """
    done: set[int] = set()
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            fan_in = module.weight[0].numel()  # (in_channels / groups) * kh * kw
            module.weight.normal_(0.0, math.sqrt(2.0 / fan_in), generator=generator)
            done.add(id(module.weight))
            if module.bias is not None:
                module.bias.zero_()
                done.add(id(module.bias))
        elif isinstance(module, nn.BatchNorm2d):
            gain = 1.0
            if getattr(module, RESIDUAL_BN, False):
                gain = _RESIDUAL_GAIN
            elif getattr(module, LINEAR_BN, False):
                gain = _LINEAR_GAIN
            assert module.weight is not None and module.bias is not None
            assert module.running_mean is not None and module.running_var is not None
            module.weight.fill_(gain)
            module.bias.zero_()
            module.running_mean.normal_(0.0, 0.1, generator=generator)
            module.running_var.uniform_(0.5, 1.5, generator=generator)
            tensors = [module.weight, module.bias, module.running_mean, module.running_var]
            if module.num_batches_tracked is not None:
                module.num_batches_tracked.zero_()
                tensors.append(module.num_batches_tracked)
            done.update(id(t) for t in tensors)
        elif isinstance(module, nn.Linear):
            module.weight.normal_(0.0, 1.0 / math.sqrt(module.in_features), generator=generator)
            done.add(id(module.weight))
            if module.bias is not None:
                module.bias.zero_()
                done.add(id(module.bias))
        elif isinstance(module, nn.LayerNorm):
            if module.weight is not None:
                module.weight.uniform_(0.5, 1.5, generator=generator)
                done.add(id(module.weight))
            if module.bias is not None:
                module.bias.normal_(0.0, 0.1, generator=generator)
                done.add(id(module.bias))
        layer_scale = module._parameters.get(LAYER_SCALE)
        if layer_scale is not None:
            layer_scale.uniform_(0.5 * _RESIDUAL_GAIN, 1.5 * _RESIDUAL_GAIN, generator=generator)
            done.add(id(layer_scale))
    missed = [
        name
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]
        if id(tensor) not in done
    ]
    if missed:
        raise RuntimeError(f"zoo init left these tensors uninitialised: {', '.join(missed)}")
