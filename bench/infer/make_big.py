"""Write big-mlp, the synthetic model family of `neurrun bench infer`: a base and
fine-tunes whose per-tensor deltas have the relative size measured on the real
bench families (rel. L2 0.03 to 0.06), as ONNX (opset 13, dynamic batch, input
`input`, output `logits`) and safetensors, into OUTDIR. Deterministic (seeded).

  /usr/bin/python3 bench/infer/make_big.py OUTDIR [--finetunes 6]
"""

import argparse
import os
import sys
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models  # noqa: E402
import make_family  # noqa: E402  (models put its folder on sys.path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--finetunes", type=int, default=6)
    a = ap.parse_args()
    os.makedirs(a.outdir, exist_ok=True)
    torch.manual_seed(0)
    base = models.BigMLP().eval()
    warnings.filterwarnings("ignore")
    variants = [("base", base)]
    for i in range(1, a.finetunes + 1):
        g = torch.Generator().manual_seed(100 + i)
        ft = models.BigMLP().eval()
        sd = {}
        for k, v in base.state_dict().items():
            rel = 0.03 + 0.03 * torch.rand(1, generator=g).item()
            noise = torch.randn(v.shape, generator=g) * v.std() * rel
            sd[k] = v + noise
        ft.load_state_dict(sd)
        variants.append(("ft%d" % i, ft))
    for role, m in variants:
        path = os.path.join(a.outdir, "big-mlp-%s" % role)
        make_family.write_safetensors(path + ".safetensors", m.state_dict())
        x = torch.rand(2, models.BIG_IN)
        torch.onnx.export(m, x, path + ".onnx", opset_version=13, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                          do_constant_folding=True)
        print(path, flush=True)


if __name__ == "__main__":
    main()
