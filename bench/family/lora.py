#!/usr/bin/python3
"""lora: LoRA fine-tunes of text-small's base, merged into full weights (how many
per-customer variants are shipped), for measuring what a low-rank prediction of
the delta would save. Not committed; made on demand from a text-small family:

  /usr/bin/python3 bench/family/lora.py make TEXT_SMALL_DIR OUT   # ~3 min on 2 cores
  /usr/bin/python3 bench/family/lora.py entropy TEXT_SMALL_DIR OUT TAU

make trains rank-8 adapters on every matrix of the blocks (qkv, proj, fc1, fc2)
for 300 steps on two other corpora, merges them and writes lora-go and
lora-python. entropy prints, per variant, the order-0 entropy (bits per element,
adapted matrices) of its grid codes at TAU against the base's, and of what is left
after subtracting the rounded rank-8 delta: what a store that kept the factors
(at 16 bits, counted) and the residual codes would pay.
"""

import os
import sys

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import text_small as T  # noqa: E402

RANK = 8
VARIANTS = {"lora-go": "go", "lora-python": "python"}


class LoRA(nn.Module):
    def __init__(self, lin, r):
        super().__init__()
        self.lin = lin
        self.a = nn.Parameter(torch.randn(r, lin.in_features) * 0.01)
        self.b = nn.Parameter(torch.zeros(lin.out_features, r))

    def forward(self, x):
        return self.lin(x) + (x @ self.a.t()) @ self.b.t()


def make(src, out):
    os.makedirs(out, exist_ok=True)
    for i, (name, corpus) in enumerate(VARIANTS.items()):
        torch.manual_seed(50 + i)
        model = T.TextSmall(T.SIZES["text-small"])
        model.load_state_dict(T.read_safetensors(os.path.join(src, "text-small-base.safetensors")))
        for p in model.parameters():
            p.requires_grad_(False)
        for blk in model.blocks:
            for attr in ("qkv", "proj", "fc1", "fc2"):
                setattr(blk, attr, LoRA(getattr(blk, attr), RANK))
        T.train(model, T.corpus(corpus)[0], 300, 2e-3, seed=60 + i)
        for blk in model.blocks:
            for attr in ("qkv", "proj", "fc1", "fc2"):
                m = getattr(blk, attr)
                with torch.no_grad():
                    m.lin.weight += m.b @ m.a
                setattr(blk, attr, m.lin)
        path = os.path.join(out, name + ".safetensors")
        T.write_safetensors(path, model.state_dict())
        print("wrote %s: %.4f bits/byte on %s" % (path, T.bits_per_byte(model, T.corpus(corpus)[1]), corpus),
              flush=True)


def entropy(src, out, tau):
    def h(x):
        _, c = np.unique(x, return_counts=True)
        p = c / c.sum()
        return -(p * np.log2(p)).sum()

    base = T.read_safetensors(os.path.join(src, "text-small-base.safetensors"))
    step = 2 * tau
    for name in VARIANTS:
        sd = T.read_safetensors(os.path.join(out, name + ".safetensors"))
        n = plain = lowrank = 0
        for k, w in sd.items():
            if w.dim() != 2 or not any(s in k for s in ("qkv", "proj", "fc1", "fc2")):
                continue
            wb = base[k].numpy().astype(np.float64)
            wf = w.numpy().astype(np.float64)
            d = np.round(wf / step) - np.round(wb / step)
            u, s, vt = np.linalg.svd(wf - wb, full_matrices=False)
            pred = np.round((u[:, :RANK] * s[:RANK]) @ vt[:RANK] / step)
            plain += h(d.ravel()) * d.size
            lowrank += h((d - pred).ravel()) * d.size + 16 * RANK * sum(d.shape)
            n += d.size
        print("%s: delta codes %.2f bits per element, residual after rank %d (factors counted) %.2f"
              % (name, plain / n, RANK, lowrank / n))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 5 and sys.argv[1] == "entropy":
        entropy(sys.argv[2], sys.argv[3], float(sys.argv[4]))
    else:
        sys.exit(__doc__)
