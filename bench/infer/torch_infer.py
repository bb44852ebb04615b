"""Time torch 1.13 inference for `neurrun bench infer`, on the same weights and
thread count as the Go runtime, and print one JSON line per batch size:
{"family", "batch", "samples_per_s", "p50_ms"}.

  /usr/bin/python3 bench/infer/torch_infer.py FAMILY WEIGHTS.safetensors \
      --batches 1,8,64 --threads 2 --seconds 2
"""

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models  # noqa: E402


def load_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    out = {}
    dt = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        buf = bytearray(data[8 + n + a:8 + n + b])
        t = torch.frombuffer(buf, dtype=dt[info["dtype"]]) if b > a else torch.empty(0, dtype=dt[info["dtype"]])
        out[name] = t.reshape(info["shape"]).float() if info["dtype"] != "I64" else t.reshape(info["shape"])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("family")
    ap.add_argument("weights")
    ap.add_argument("--batches", default="1,8,64")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seconds", type=float, default=2.0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model, make = models.build(a.family)
    model.load_state_dict(load_safetensors(a.weights), strict=True)
    model.eval()
    with torch.inference_mode():
        for b in [int(x) for x in a.batches.split(",")]:
            x = make(b)
            for _ in range(3):
                model(x)
            lat = []
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < a.seconds or len(lat) < 5:
                s = time.perf_counter()
                model(x)
                lat.append(time.perf_counter() - s)
            lat.sort()
            total = sum(lat)
            print(json.dumps({"family": a.family, "batch": b,
                              "samples_per_s": b * len(lat) / total,
                              "p50_ms": 1e3 * lat[len(lat) // 2]}), flush=True)


if __name__ == "__main__":
    main()
