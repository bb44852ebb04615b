"""Torch modules of the inference benchmark: the three bench families (classes from
bench/family/make_family.py) and big-mlp, a synthetic MLP large enough that its
weights, not per-op overheads, set the speed. Imported by make_big.py and
torch_infer.py; it has no side effects."""

import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "family"))
import make_family  # noqa: E402  (guarded by __main__: importing trains nothing)

BIG_IN, BIG_HID, BIG_OUT, BIG_LAYERS = 512, 2048, 512, 4


class BigMLP(nn.Module):
    """512 -> 2048 -> 2048 -> 2048 -> 512, ReLU between: 10.5M parameters (42 MB f32)."""

    def __init__(self):
        super().__init__()
        dims = [BIG_IN] + [BIG_HID] * (BIG_LAYERS - 1) + [BIG_OUT]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:]))

    def forward(self, x):
        for i, l in enumerate(self.layers):
            x = l(x)
            if i + 1 < len(self.layers):
                x = F.relu(x)
        return x


def build(family):
    """A fresh module of the family and a function making a batch of inputs."""
    if family == "digits-mlp":
        return make_family.DigitsMLP(), lambda b: torch.rand(b, 64)
    if family == "digits-cnn":
        return make_family.DigitsCNN(), lambda b: torch.rand(b, 1, 8, 8)
    if family == "text-tiny":
        return make_family.TextTiny(), lambda b: torch.randint(0, 256, (b, make_family.CTX))
    if family == "big-mlp":
        return BigMLP(), lambda b: torch.rand(b, BIG_IN)
    raise SystemExit("unknown family %r" % family)
