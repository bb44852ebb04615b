#!/usr/bin/python3
"""Build small, real model families for NeurStore tests.

Run:  /usr/bin/python3 bench/family/make_family.py   (from the repo root)

Writes testdata/family/ (wiped and rebuilt each run):
  * digits-mlp   base, ft1..ft3 (fine-tunes of base), other (unrelated seed)
  * digits-cnn   base, ft1, ft2            (Conv/BN/depthwise/residual CNN)
  * text-tiny    base, ft1, ft2            (byte-level decoder-only transformer)
  each as safetensors (own writer, below) and ONNX (opset 13), plus
  bf16/f16 copies, a 3-shard HF-style copy, an external-data ONNX copy,
  reference inputs/outputs (ref/*.npy), family.json and README.md.

Needs Debian python3-torch (1.13, CPU), python3-onnx, python3-sklearn,
python3-numpy. No network access; data comes from files on the machine:
sklearn's bundled digits, /usr/share/common-licenses, Go and Python sources.
"""

import glob
import hashlib
import io
import json
import os
import shutil
import struct
import sys
import time
import warnings

# Passive OpenMP waiting: with only 2 cores (and other processes running),
# spinning worker threads roughly double the training time.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

T0 = time.time()
torch.set_num_threads(2)
torch.use_deterministic_algorithms(True)
warnings.filterwarnings("ignore")

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(REPO, "testdata", "family")
REF = os.path.join(OUT, "ref")
OPSET = 13


def seed_all(s):
    torch.manual_seed(s)
    np.random.seed(s)


# --------------------------------------------------------------------------
# safetensors writer (the python safetensors package is not used)
# --------------------------------------------------------------------------
ST_DTYPE = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16",
    torch.bfloat16: "BF16", torch.int64: "I64", torch.int32: "I32",
    torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL",
}


def tensor_bytes(t):
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().astype("<i2").tobytes()
    a = t.numpy()
    return a.astype(a.dtype.newbyteorder("<")).tobytes()


def safetensors_bytes(tensors):
    """tensors: list of (name, torch.Tensor) in the order to store them."""
    header = {"__metadata__": {"format": "pt"}}
    blobs, off = [], 0
    for name, t in tensors:
        b = tensor_bytes(t)
        header[name] = {"dtype": ST_DTYPE[t.dtype], "shape": list(t.shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((-len(h)) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def write_safetensors(path, state_dict, dtype=None):
    items = []
    for k, v in state_dict.items():
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        items.append((k, v))
    data = safetensors_bytes(items)
    with open(path, "wb") as f:
        f.write(data)
    return data


def write_sharded(folder, state_dict, nshards=3):
    """Hugging Face layout: model-0000i-of-0000n.safetensors + index json."""
    os.makedirs(folder, exist_ok=True)
    items = list(state_dict.items())
    sizes = [v.numel() * v.element_size() for _, v in items]
    total = sum(sizes)
    groups, cur, acc = [[] for _ in range(nshards)], 0, 0
    for i, (kv, sz) in enumerate(zip(items, sizes)):
        remaining_items = len(items) - i
        remaining_groups = nshards - cur - 1
        if (cur < nshards - 1 and groups[cur] and
                (acc + sz / 2 > total * (cur + 1) / nshards or remaining_items <= remaining_groups)):
            cur += 1
        groups[cur].append(kv)
        acc += sz
    weight_map = {}
    for i, g in enumerate(groups):
        assert g, "empty shard"
        fn = "model-%05d-of-%05d.safetensors" % (i + 1, nshards)
        with open(os.path.join(folder, fn), "wb") as f:
            f.write(safetensors_bytes(g))
        for k, _ in g:
            weight_map[k] = fn
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2, sort_keys=True)
        f.write("\n")


# --------------------------------------------------------------------------
# ONNX export
# --------------------------------------------------------------------------
def onnx_bytes(model, dummy, in_name, out_name):
    model.eval()
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(
            model, (dummy,), buf, opset_version=OPSET,
            input_names=[in_name], output_names=[out_name],
            dynamic_axes={in_name: {0: "batch"}, out_name: {0: "batch"}},
            do_constant_folding=True)
    return buf.getvalue()


def write_ref(name, model, x):
    model.eval()
    with torch.no_grad():
        y = model(x).float()
    xin = x.numpy()
    np.save(os.path.join(REF, name + ".input.npy"), xin)
    np.save(os.path.join(REF, name + ".output.npy"), y.numpy().astype(np.float32))
    return {"input": "ref/%s.input.npy" % name, "output": "ref/%s.output.npy" % name}


def nparams(model):
    return sum(p.numel() for p in model.parameters())


def rel_delta(sd, base_sd):
    num = den = 0.0
    for k, v in sd.items():
        if v.is_floating_point():
            num += float(((v - base_sd[k]) ** 2).sum())
            den += float((base_sd[k] ** 2).sum())
    return (num / den) ** 0.5


def clone_sd(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


MODELS = []      # family.json entries
SUMMARY = []     # rows for the printed table


def save_model(name, family, role, model, dummy, ref_x, in_name, out_name,
               metrics, parent=None, base_sd=None, onnx_hook=None):
    sd = clone_sd(model)
    files = {"safetensors": name + ".safetensors", "onnx": name + ".onnx"}
    write_safetensors(os.path.join(OUT, files["safetensors"]), sd)
    ob = onnx_bytes(model, dummy, in_name, out_name)
    with open(os.path.join(OUT, files["onnx"]), "wb") as f:
        f.write(ob)
    ref = write_ref(name, model, ref_x)
    if base_sd is not None:
        metrics = dict(metrics, rel_l2_delta_from_base=round(rel_delta(sd, base_sd), 6))
    entry = {"name": name, "family": family, "role": role, "files": files,
             "ref": ref, "metrics": metrics, "params": nparams(model)}
    if parent:
        entry["parent"] = parent
    if onnx_hook:
        onnx_hook(entry, ob, sd)
    MODELS.append(entry)
    SUMMARY.append(entry)
    return entry


# --------------------------------------------------------------------------
# digits data
# --------------------------------------------------------------------------
def load_digits_split():
    from sklearn.datasets import load_digits
    d = load_digits()
    X = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    perm = np.random.RandomState(0).permutation(len(X))
    ntest = 360
    te, tr = perm[:ntest], perm[ntest:]
    return (torch.from_numpy(X[tr]), torch.from_numpy(y[tr]),
            torch.from_numpy(X[te]), torch.from_numpy(y[te]))


def shift_aug(x8, g):
    """random +-1 pixel shift of [N,1,8,8] images (zero fill)."""
    n = x8.shape[0]
    out = torch.zeros_like(x8)
    pad = F.pad(x8, (1, 1, 1, 1))
    dy = torch.randint(0, 3, (n,), generator=g)
    dx = torch.randint(0, 3, (n,), generator=g)
    for i in range(n):
        out[i] = pad[i, :, dy[i]:dy[i] + 8, dx[i]:dx[i] + 8]
    return out


def train_classifier(model, X, y, epochs, lr, seed, bs=32, noise=0.0, shift=False,
                     reshape=None):
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(X), generator=g)
        for i in range(0, len(X), bs):
            idx = perm[i:i + bs]
            xb, yb = X[idx], y[idx]
            if shift:
                xb = shift_aug(xb.view(-1, 1, 8, 8), g).view(xb.shape)
            if noise > 0:
                xb = (xb + noise * torch.randn(xb.shape, generator=g)).clamp(0, 1)
            if reshape:
                xb = xb.view(reshape)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()


def eval_classifier(model, X, y, reshape=None):
    model.eval()
    with torch.no_grad():
        xb = X.view(reshape) if reshape else X
        logits = model(xb)
        loss = F.cross_entropy(logits, y).item()
        acc = (logits.argmax(1) == y).float().mean().item()
    return {"accuracy": round(acc, 6), "loss": round(loss, 6), "eval_set": "digits-test-360"}


# --------------------------------------------------------------------------
# 1. digits-mlp
# --------------------------------------------------------------------------
class DigitsMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 128)
        self.fc2 = nn.Linear(128, 128)
        self.norm = nn.LayerNorm(128)
        self.fc3 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.fc1(x))
        x = F.relu(self.norm(self.fc2(x)))
        return self.fc3(x)


def build_digits_mlp(Xtr, ytr, Xte, yte):
    fam = "digits-mlp"
    dummy = Xte[:2]
    refx = Xte[:4]

    def mk(name, role, model, parent=None, base_sd=None, hook=None):
        m = eval_classifier(model, Xte, yte)
        return save_model(name, fam, role, model, dummy, refx, "input", "logits", m,
                          parent=parent, base_sd=base_sd, onnx_hook=hook)

    seed_all(0)
    base = DigitsMLP()
    train_classifier(base, Xtr, ytr, epochs=20, lr=1e-3, seed=100)
    base_sd = clone_sd(base)

    def base_hook(entry, ob, sd):
        for tag, dt in (("bf16", torch.bfloat16), ("f16", torch.float16)):
            fn = "digits-mlp-base-%s.safetensors" % tag
            write_safetensors(os.path.join(OUT, fn), sd, dtype=dt)
            entry["files"]["safetensors_" + tag] = fn
            m = DigitsMLP()
            m.load_state_dict({k: v.to(dt).float() for k, v in sd.items()})
            entry["metrics"]["accuracy_" + tag] = eval_classifier(m, Xte, yte)["accuracy"]
            entry["metrics"]["loss_" + tag] = eval_classifier(m, Xte, yte)["loss"]

    mk("digits-mlp-base", "base", base, hook=base_hook)

    # ft1: continued training on a random half of the training set
    seed_all(11)
    ft = DigitsMLP(); ft.load_state_dict(base_sd)
    half = torch.randperm(len(Xtr), generator=torch.Generator().manual_seed(11))[:len(Xtr) // 2]
    train_classifier(ft, Xtr[half], ytr[half], epochs=4, lr=1e-4, seed=11)
    mk("digits-mlp-ft1", "finetune", ft, "digits-mlp-base", base_sd)
    ft1_recipe = "base + 4 epochs Adam lr 1e-4 on a random 50% subset of train"

    # ft2: continued training with gaussian-noise + shift augmentation
    seed_all(12)
    ft = DigitsMLP(); ft.load_state_dict(base_sd)
    train_classifier(ft, Xtr, ytr, epochs=4, lr=1e-4, seed=12, noise=0.1, shift=True)
    mk("digits-mlp-ft2", "finetune", ft, "digits-mlp-base", base_sd)

    # ft3: continued training with a 10x larger learning rate
    seed_all(13)
    ft = DigitsMLP(); ft.load_state_dict(base_sd)
    train_classifier(ft, Xtr, ytr, epochs=3, lr=1e-3, seed=13)
    mk("digits-mlp-ft3", "finetune", ft, "digits-mlp-base", base_sd)

    # other: same architecture, different init seed and data order
    seed_all(1)
    other = DigitsMLP()
    train_classifier(other, Xtr, ytr, epochs=20, lr=1e-3, seed=101)
    mk("digits-mlp-other", "unrelated", other, base_sd=base_sd)
    return {
        "base": "seed 0, 20 epochs Adam lr 1e-3, batch 32",
        "ft1": ft1_recipe,
        "ft2": "base + 4 epochs Adam lr 1e-4, gaussian noise std 0.1 + random 1-pixel shifts",
        "ft3": "base + 3 epochs Adam lr 1e-3 (10x the fine-tune lr) on all of train",
        "other": "seed 1, 20 epochs Adam lr 1e-3 (independent of base)",
    }


# --------------------------------------------------------------------------
# 2. digits-cnn
# --------------------------------------------------------------------------
class DWBlock(nn.Module):
    """MobileNet-style residual block: depthwise 3x3 -> BN -> ReLU -> 1x1 -> BN, + x."""

    def __init__(self, c):
        super().__init__()
        self.dw = nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.pw = nn.Conv2d(c, c, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        h = F.relu(self.bn1(self.dw(x)))
        h = self.bn2(self.pw(h))
        return F.relu(x + h)


class DigitsCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(16)
        self.block1 = DWBlock(16)
        self.down = nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False)
        self.down_bn = nn.BatchNorm2d(32)
        self.block2 = DWBlock(32)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = F.relu(self.stem_bn(self.stem(x)))
        x = self.block1(x)
        x = F.relu(self.down_bn(self.down(x)))
        x = self.block2(x)
        x = self.pool(x).flatten(1)
        return self.fc(x)


def build_digits_cnn(Xtr, ytr, Xte, yte):
    import onnx
    fam = "digits-cnn"
    shp = (-1, 1, 8, 8)
    dummy = Xte[:2].view(shp)
    refx = Xte[:4].view(shp)

    def mk(name, role, model, parent=None, base_sd=None, hook=None):
        m = eval_classifier(model, Xte, yte, reshape=shp)
        return save_model(name, fam, role, model, dummy, refx, "input", "logits", m,
                          parent=parent, base_sd=base_sd, onnx_hook=hook)

    seed_all(0)
    base = DigitsCNN()
    train_classifier(base, Xtr, ytr, epochs=15, lr=2e-3, seed=200, reshape=shp)
    base_sd = clone_sd(base)

    def ext_hook(entry, ob, sd):
        m = onnx.load_model_from_string(ob)
        fn, data = "digits-cnn-base-ext.onnx", "digits-cnn-base-ext.onnx.data"
        dp = os.path.join(OUT, data)
        if os.path.exists(dp):      # onnx appends to an existing data file
            os.remove(dp)
        onnx.save_model(m, os.path.join(OUT, fn), save_as_external_data=True,
                        all_tensors_to_one_file=True, location=data, size_threshold=0)
        entry["files"]["onnx_external"] = fn
        entry["files"]["onnx_external_data"] = data

    mk("digits-cnn-base", "base", base, hook=ext_hook)

    seed_all(21)
    ft = DigitsCNN(); ft.load_state_dict(base_sd)
    half = torch.randperm(len(Xtr), generator=torch.Generator().manual_seed(21))[:len(Xtr) // 2]
    train_classifier(ft, Xtr[half], ytr[half], epochs=3, lr=2e-4, seed=21, reshape=shp)
    mk("digits-cnn-ft1", "finetune", ft, "digits-cnn-base", base_sd)

    seed_all(22)
    ft = DigitsCNN(); ft.load_state_dict(base_sd)
    train_classifier(ft, Xtr, ytr, epochs=3, lr=2e-4, seed=22, noise=0.1, shift=True,
                     reshape=shp)
    mk("digits-cnn-ft2", "finetune", ft, "digits-cnn-base", base_sd)
    return {
        "base": "seed 0, 15 epochs Adam lr 2e-3, batch 32",
        "ft1": "base + 3 epochs Adam lr 2e-4 on a random 50% subset of train (BN stats keep updating)",
        "ft2": "base + 3 epochs Adam lr 2e-4, gaussian noise std 0.1 + random 1-pixel shifts",
    }


# --------------------------------------------------------------------------
# 3. text-tiny
# --------------------------------------------------------------------------
CTX, DM, NH, NL, FF = 32, 64, 4, 2, 128


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(DM, 3 * DM)
        self.proj = nn.Linear(DM, DM)
        # causal mask (True = masked); not a parameter, not in the state_dict
        self.register_buffer("mask", torch.triu(torch.ones(CTX, CTX, dtype=torch.bool), 1),
                             persistent=False)

    def forward(self, x):                      # x: [B, CTX, DM]
        hd = DM // NH
        q, k, v = self.qkv(x).split(DM, dim=-1)
        q = q.reshape(-1, CTX, NH, hd).transpose(1, 2)
        k = k.reshape(-1, CTX, NH, hd).transpose(1, 2)
        v = v.reshape(-1, CTX, NH, hd).transpose(1, 2)
        att = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / hd ** 0.5)
        att = att.masked_fill(self.mask, float("-inf"))
        att = torch.softmax(att, dim=-1)
        y = torch.matmul(att, v).transpose(1, 2).reshape(-1, CTX, DM)
        return self.proj(y)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1 = nn.LayerNorm(DM)
        self.attn = Attention()
        self.ln2 = nn.LayerNorm(DM)
        self.fc1 = nn.Linear(DM, FF)
        self.fc2 = nn.Linear(FF, DM)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class TextTiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok_emb = nn.Embedding(256, DM)
        self.pos_emb = nn.Embedding(CTX, DM)
        self.blocks = nn.ModuleList([Block() for _ in range(NL)])
        self.ln_f = nn.LayerNorm(DM)
        self.head = nn.Linear(DM, 256)          # untied from tok_emb
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
                if isinstance(m, nn.Linear):
                    nn.init.zeros_(m.bias)

    def forward(self, tokens):                 # tokens: int64 [B, CTX]
        x = self.tok_emb(tokens) + self.pos_emb.weight
        for b in self.blocks:
            x = b(x)
        return self.head(self.ln_f(x))


def read_corpus(paths, cap):
    out, used = bytearray(), []
    for p in paths:
        if len(out) >= cap:
            break
        with open(p, "rb") as f:
            out += f.read()
        used.append(p)
    data = bytes(out[:cap])
    return data, used


def corpora():
    lic = sorted(p for p in glob.glob("/usr/share/common-licenses/*")
                 if os.path.isfile(p) and not os.path.islink(p))
    gosrc = sorted(p for d in ("strings", "bytes", "bufio", "unicode/utf8")
                   for p in glob.glob("/usr/local/go/src/%s/*.go" % d)
                   if not p.endswith("_test.go"))
    pysrc = sorted(glob.glob("/usr/lib/python3.11/*.py"))
    out = {}
    for name, paths, cap in (("licenses", lic, 400_000), ("go", gosrc, 160_000),
                             ("python", pysrc, 160_000)):
        if not paths:
            sys.exit("no text found for corpus %s" % name)
        data, used = read_corpus(paths, cap)
        t = torch.frombuffer(bytearray(data), dtype=torch.uint8).long()
        nval = len(t) // 10
        out[name] = {"train": t[:-nval], "val": t[-nval:], "bytes": len(data),
                     "sha256": hashlib.sha256(data).hexdigest(),
                     "files": "%s .. %s (%d files)" % (used[0], used[-1], len(used))}
    return out


def val_windows(val, n=256):
    starts = torch.arange(0, len(val) - CTX - 1, CTX)[:n]
    x = torch.stack([val[s:s + CTX] for s in starts])
    y = torch.stack([val[s + 1:s + CTX + 1] for s in starts])
    return x, y


def eval_text(model, val):
    x, y = val_windows(val)
    model.eval()
    with torch.no_grad():
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, 256), y.reshape(-1)).item()
        acc = (logits.argmax(-1) == y).float().mean().item()
    return round(loss, 6), round(acc, 6)


def train_text(model, data, steps, lr, seed, warmup=0, cosine=False, bs=64):
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for step in range(steps):
        f = 1.0
        if warmup and step < warmup:
            f = (step + 1) / warmup
        elif cosine:
            p = (step - warmup) / max(1, steps - warmup)
            f = 0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * p))
        for pg in opt.param_groups:
            pg["lr"] = lr * f
        ix = torch.randint(0, len(data) - CTX - 1, (bs,), generator=g)
        x = torch.stack([data[i:i + CTX] for i in ix])
        y = torch.stack([data[i + 1:i + CTX + 1] for i in ix])
        loss = F.cross_entropy(model(x).reshape(-1, 256), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (step + 1) % 500 == 0:
            print("  text step %d/%d loss %.3f (%.0fs)" % (step + 1, steps, loss.item(),
                                                      time.time() - T0), flush=True)
    model.eval()


def build_text_tiny():
    fam = "text-tiny"
    C = corpora()
    refx = val_windows(C["licenses"]["val"])[0][:4].clone()
    dummy = val_windows(C["licenses"]["val"])[0][4:6].clone()

    def metrics(model, own):
        m = {"eval_set": "%s-val (last 10%%, %d windows of %d)" % (own, len(val_windows(C[own]["val"])[0]), CTX)}
        loss, acc = eval_text(model, C[own]["val"])
        m["loss"], m["accuracy"] = loss, acc
        for k in C:
            m["loss_" + k], m["accuracy_" + k] = eval_text(model, C[k]["val"])
        return m

    def mk(name, role, model, own, parent=None, base_sd=None, hook=None):
        return save_model(name, fam, role, model, dummy, refx, "tokens", "logits",
                          metrics(model, own), parent=parent, base_sd=base_sd, onnx_hook=hook)

    seed_all(0)
    base = TextTiny()
    train_text(base, C["licenses"]["train"], steps=2000, lr=3e-3, seed=300, warmup=100, cosine=True)
    base_sd = clone_sd(base)

    def shard_hook(entry, ob, sd):
        write_sharded(os.path.join(OUT, "text-tiny-base-sharded"), sd, 3)
        entry["files"]["safetensors_sharded_index"] = \
            "text-tiny-base-sharded/model.safetensors.index.json"

    mk("text-tiny-base", "base", base, "licenses", hook=shard_hook)

    seed_all(31)
    ft = TextTiny(); ft.load_state_dict(base_sd)
    train_text(ft, C["go"]["train"], steps=400, lr=3e-4, seed=31)
    mk("text-tiny-ft1", "finetune", ft, "go", "text-tiny-base", base_sd)

    seed_all(32)
    ft = TextTiny(); ft.load_state_dict(base_sd)
    train_text(ft, C["python"]["train"], steps=400, lr=3e-4, seed=32)
    mk("text-tiny-ft2", "finetune", ft, "python", "text-tiny-base", base_sd)
    corp = {k: {kk: v[kk] for kk in ("bytes", "sha256", "files")} for k, v in C.items()}
    return {
        "base": "seed 0, 2000 steps Adam lr 3e-3 (100 warmup, cosine to 3e-4), batch 64x32, corpus licenses",
        "ft1": "base + 400 steps Adam lr 3e-4 on Go source (corpus go)",
        "ft2": "base + 400 steps Adam lr 3e-4 on Python stdlib source (corpus python)",
        "corpora": corp,
    }


# --------------------------------------------------------------------------
def human(n):
    return "%.1f KiB" % (n / 1024) if n < 1 << 20 else "%.2f MiB" % (n / (1 << 20))


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(REF)
    recipes = {}
    Xtr, ytr, Xte, yte = load_digits_split()
    t = time.time(); recipes["digits-mlp"] = build_digits_mlp(Xtr, ytr, Xte, yte)
    print("digits-mlp done in %.1fs" % (time.time() - t), flush=True)
    t = time.time(); recipes["digits-cnn"] = build_digits_cnn(Xtr, ytr, Xte, yte)
    print("digits-cnn done in %.1fs" % (time.time() - t), flush=True)
    t = time.time(); recipes["text-tiny"] = build_text_tiny()
    print("text-tiny done in %.1fs" % (time.time() - t), flush=True)

    files = []
    for root, _, fns in os.walk(OUT):
        for fn in fns:
            p = os.path.join(root, fn)
            with open(p, "rb") as f:
                data = f.read()
            files.append({"path": os.path.relpath(p, OUT), "size": len(data),
                          "sha256": hashlib.sha256(data).hexdigest()})
    files.sort(key=lambda e: e["path"])
    fam = {
        "generator": "bench/family/make_family.py",
        "torch": torch.__version__,
        "onnx_opset": OPSET,
        "digits_split": "sklearn load_digits, X/16, np.random.RandomState(0).permutation: first 360 = test, rest = train (1437)",
        "recipes": recipes,
        "models": MODELS,
        "files": files,
    }
    with open(os.path.join(OUT, "family.json"), "w") as f:
        json.dump(fam, f, indent=2)
        f.write("\n")
    write_readme(files)

    total = sum(e["size"] for e in files) + os.path.getsize(os.path.join(OUT, "family.json")) \
        + os.path.getsize(os.path.join(OUT, "README.md"))
    print()
    print("%-18s %8s %9s %9s %9s %12s %12s" % ("model", "params", "accuracy", "loss", "delta",
                                               "safetensors", "onnx"))
    for e in SUMMARY:
        m = e["metrics"]
        st = os.path.getsize(os.path.join(OUT, e["files"]["safetensors"]))
        on = os.path.getsize(os.path.join(OUT, e["files"]["onnx"]))
        d = m.get("rel_l2_delta_from_base")
        print("%-18s %8d %9.4f %9.4f %9s %12s %12s" % (
            e["name"], e["params"], m["accuracy"], m["loss"],
            "-" if d is None else "%.4f" % d, human(st), human(on)))
    b = MODELS[0]["metrics"]
    print("(digits: test accuracy / cross-entropy; text: next-byte accuracy / nats per byte on the "
          "model's own held-out text; delta = ||w - w_base|| / ||w_base||)")
    print("digits-mlp-base bf16 acc %.4f  f16 acc %.4f" % (b["accuracy_bf16"], b["accuracy_f16"]))
    print("total size of testdata/family: %s in %d files (+ family.json, README.md)" % (human(total), len(files)))
    print("runtime: %.1fs" % (time.time() - T0))


def write_readme(files):
    sizes = "\n".join("| `%s` | %s |" % (e["path"], human(e["size"])) for e in files
                      if not e["path"].startswith("ref/"))
    nref = sum(1 for e in files if e["path"].startswith("ref/"))
    refsize = sum(e["size"] for e in files if e["path"].startswith("ref/"))
    text = """# Model families for NeurStore tests

Generated by `/usr/bin/python3 bench/family/make_family.py` (Debian python3-torch
%s CPU, python3-onnx, python3-sklearn; fixed seeds, 2 threads, no downloads).
Rerunning wipes and rebuilds this folder. `family.json` lists every model (family,
role, files, reference files, held-out metrics, relative L2 distance of each
fine-tune from its base) and every file with size and sha256.

Families (all fine-tunes are continued training from `base`, so they are close to it):

* **digits-mlp**: sklearn `load_digits` (8x8 -> 64 floats in [0,1]), MLP
  64-128-128-10 with ReLU and a LayerNorm. `base`; `ft1` (50%% subset), `ft2`
  (noise+shift augmentation), `ft3` (10x lr); `other` = same architecture, other
  seed (unrelated). Plus `digits-mlp-base-bf16/f16.safetensors` (same weights cast).
* **digits-cnn**: digits as 1x8x8; Conv+BatchNorm stem, two MobileNet-style
  residual blocks (depthwise 3x3 with groups=channels, BN, ReLU, 1x1, BN, add),
  strided conv, adaptive avg pool, Linear. `base`, `ft1`, `ft2`. The safetensors
  hold BN running stats and `num_batches_tracked` (I64, shape []). The ONNX files
  are eval-mode exports, where torch folds BN into the conv weights, so their
  conv initializers differ from the safetensors tensors.
  `digits-cnn-base-ext.onnx` + `.onnx.data` = the base ONNX with all initializers
  in one external data file.
* **text-tiny**: byte-level decoder-only transformer (vocab 256, d_model 64,
  2 pre-LN layers, 4 heads, FFN 128 with GELU, learned positions, context
  fixed at 32, causal mask via masked_fill(-inf), untied head). `base` on
  /usr/share/common-licenses, `ft1` continued on Go source, `ft2` on Python
  stdlib source. ONNX input `tokens` int64 [batch, 32], output `logits` [batch, 32, 256].
  `text-tiny-base-sharded/` = the base in the Hugging Face 3-shard layout
  (`model.safetensors.index.json` with `metadata.total_size` and `weight_map`).

Check with `/usr/bin/python3 bench/family/check_family.py` (sizes/sha256,
safetensors layout, casts and shards, onnx.checker, ONNX initializers vs
safetensors, ONNX outputs vs `ref/` through a small numpy interpreter).

Formats: safetensors written by the script's own writer (tensor order = torch
state_dict order, `__metadata__ = {"format": "pt"}`, header padded with spaces to a
multiple of 8). ONNX: `torch.onnx.export`, opset 13, dynamic axis `batch`,
`do_constant_folding=True`, input `input` (digits) / `tokens` (text), output `logits`.
`ref/<model>.input.npy` / `.output.npy` (%d files, %s): 4 held-out samples and
torch's eval-mode float32 output, for checking an inference runtime.

| file | size |
|---|---|
%s
""" % (torch.__version__, nref, human(refsize), sizes)
    with open(os.path.join(OUT, "README.md"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
