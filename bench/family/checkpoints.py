#!/usr/bin/python3
"""checkpoints: one training run of text-small's shape saved every 200 steps, for
measuring how the store keeps a chain of checkpoints (each a small step from the
last, but a growing distance from the first). Not committed; made on demand:

  /usr/bin/python3 bench/family/checkpoints.py make DIR      # ~3 min on 2 cores
  /usr/bin/python3 bench/family/checkpoints.py entropy DIR TAU

entropy prints, per checkpoint, the order-0 entropy (bits per element, matrices
only) of its grid codes at TAU against the first checkpoint and against the one
before it: what a delta costs when deltas may or may not chain.
"""

import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import text_small as T  # noqa: E402

STEPS, EVERY = 1000, 200


def make(out):
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    model = T.TextSmall(T.SIZES["text-small"])
    data = T.corpus("licenses")[0]
    for k in range(STEPS // EVERY):
        # the same schedule as a run of STEPS steps, cut into pieces of EVERY
        T.train(model, data, EVERY, 2e-3 * (1 - 0.8 * k / (STEPS // EVERY)), seed=300 + k)
        path = os.path.join(out, "ckpt-%d.safetensors" % ((k + 1) * EVERY))
        T.write_safetensors(path, model.state_dict())
        print("wrote %s: %.4f bits/byte" % (path, T.bits_per_byte(model, T.corpus("licenses")[1])), flush=True)


def entropy(out, tau):
    def h(x):
        _, c = np.unique(x, return_counts=True)
        p = c / c.sum()
        return -(p * np.log2(p)).sum()

    names = sorted((f for f in os.listdir(out) if f.startswith("ckpt-")), key=lambda f: int(f[5:-12]))
    sds = [T.read_safetensors(os.path.join(out, f)) for f in names]
    codes = [{k: np.round(v.numpy().astype(np.float64) / (2 * tau)).astype(np.int64)
              for k, v in sd.items() if v.dim() == 2} for sd in sds]
    for i in range(1, len(codes)):
        n = a = b = 0
        for k, q in codes[i].items():
            a += h((q - codes[0][k]).ravel()) * q.size
            b += h((q - codes[i - 1][k]).ravel()) * q.size
            n += q.size
        print("%s: against %s %.2f bits, against %s %.2f bits" % (names[i], names[0], a / n, names[i - 1], b / n))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "make":
        make(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "entropy":
        entropy(sys.argv[2], float(sys.argv[3]))
    else:
        sys.exit(__doc__)
