#!/usr/bin/python3
"""Check testdata/family/ (written by make_family.py) without torch.

Run:  /usr/bin/python3 bench/family/check_family.py

* family.json: every listed file exists with the recorded size and sha256
* safetensors: independent parser (header alignment, contiguous offsets,
  file size), bf16/f16 copies equal the round-to-nearest-even cast of f32,
  the 3 shards hold exactly the tensors of text-tiny-base.safetensors
* ONNX: onnx.checker.check_model on every .onnx; initializers matched to the
  safetensors tensors of the same model by name, else by shape+values
  (also transposed); raw_data vs typed-field storage; external-data copy
  equals the inline one
* reference outputs: each ONNX model is run on ref/<model>.input.npy by a
  small numpy interpreter (onnx 1.12 has no onnx.reference) and compared to
  ref/<model>.output.npy (torch eval output).
* every model but the bases (with or without an ONNX file of its own): same
  tensor names, order, dtypes and shapes as its family's base; its ref outputs
  are also checked by running the base's ONNX graph with this model's tensors
  swapped in (by the name / transposed / BatchNorm-folded correspondence found
  for the base). The ONNX files of extend_family.py's models come from
  export_onnx.py.
* rel_l2_delta_from_base of every model recomputed from the safetensors.
Torch-side checks (metrics reproduce, eval section): eval_family.py --selfcheck.
Exit status 1 on any failure.
"""

import hashlib
import json
import math
import os
import struct
import sys

import numpy as np
import onnx
from onnx import numpy_helper

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
D = os.path.join(REPO, "testdata", "family")
FAIL = []


def fail(msg):
    FAIL.append(msg)
    print("FAIL:", msg)


# ---------------------------------------------------------------- safetensors
NP = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4",
      "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?"}


def read_st(path):
    with open(path, "rb") as f:
        data = f.read()
    (hlen,) = struct.unpack("<Q", data[:8])
    if hlen % 8:
        fail("%s: header length %d not a multiple of 8" % (path, hlen))
    hdr = json.loads(data[8:8 + hlen].decode("utf-8"))
    if hdr.pop("__metadata__", None) != {"format": "pt"}:
        fail("%s: bad __metadata__" % path)
    body = data[8 + hlen:]
    out, off = {}, 0
    for name, e in hdr.items():
        a, b = e["data_offsets"]
        if a != off:
            fail("%s: %s offsets not contiguous" % (path, name))
        arr = np.frombuffer(body[a:b], dtype=NP[e["dtype"]])
        if arr.size != int(np.prod(e["shape"], dtype=np.int64)):
            fail("%s: %s size mismatch" % (path, name))
        out[name] = (e["dtype"], arr.reshape(e["shape"]))
        off = b
    if off != len(body):
        fail("%s: %d trailing bytes" % (path, len(body) - off))
    return out


def bf16_of(f32):
    u = f32.astype("<f4").view("<u4").astype(np.uint64)
    r = (u + 0x7FFF + ((u >> 16) & 1)) >> 16          # round to nearest even (no NaNs here)
    return r.astype("<u2")


# ------------------------------------------------------------- numpy runtime
def erf(x):
    return np.vectorize(math.erf, otypes=[np.float64])(x).astype(x.dtype)


def conv2d(x, w, b, a):
    g = a.get("group", 1)
    sh, sw = a.get("strides", [1, 1])
    pt, pl, pb, pr = a.get("pads", [0, 0, 0, 0])
    x = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    n, c, H, W = x.shape
    oc, icg, kh, kw = w.shape
    oh, ow = (H - kh) // sh + 1, (W - kw) // sw + 1
    y = np.zeros((n, oc, oh, ow), dtype=np.float64)
    ocg = oc // g
    for gi in range(g):
        xs = x[:, gi * icg:(gi + 1) * icg].astype(np.float64)
        ws = w[gi * ocg:(gi + 1) * ocg].astype(np.float64)
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw]   # n, icg, oh, ow
                y[:, gi * ocg:(gi + 1) * ocg] += np.einsum("nchw,oc->nohw", patch, ws[:, :, i, j])
    if b is not None:
        y += b.reshape(1, -1, 1, 1)
    return y.astype(np.float32)


def run_onnx(model, feeds):
    env = dict(feeds)
    for t in model.graph.initializer:
        env[t.name] = numpy_helper.to_array(t)
    for n in model.graph.node:
        a = {at.name: onnx.helper.get_attribute_value(at) for at in n.attribute}
        x = [env[i] if i else None for i in n.input]
        op = n.op_type
        if op == "Constant":
            r = numpy_helper.to_array(a["value"])
        elif op == "Gemm":
            A, B = x[0], x[1]
            if a.get("transA"):
                A = A.T
            if a.get("transB"):
                B = B.T
            r = a.get("alpha", 1.0) * (A @ B)
            if len(x) > 2 and x[2] is not None:
                r = r + a.get("beta", 1.0) * x[2]
        elif op == "MatMul":
            r = np.matmul(x[0], x[1])
        elif op in ("Add", "Sub", "Mul", "Div", "Pow"):
            r = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply,
                 "Div": np.divide, "Pow": np.power}[op](x[0], x[1])
            r = r.astype(x[0].dtype)
        elif op == "Relu":
            r = np.maximum(x[0], 0)
        elif op == "Sqrt":
            r = np.sqrt(x[0])
        elif op == "Erf":
            r = erf(x[0])
        elif op == "ReduceMean":
            r = np.mean(x[0], axis=tuple(a["axes"]), keepdims=bool(a.get("keepdims", 1)))
        elif op == "Conv":
            r = conv2d(x[0], x[1], x[2] if len(x) > 2 else None, a)
        elif op == "GlobalAveragePool":
            r = x[0].mean(axis=(2, 3), keepdims=True)
        elif op == "Flatten":
            ax = a.get("axis", 1)
            r = x[0].reshape(int(np.prod(x[0].shape[:ax])), -1)
        elif op == "Reshape":
            shp = [d if d != 0 else x[0].shape[i] for i, d in enumerate(x[1].tolist())]
            r = x[0].reshape(shp)
        elif op == "Transpose":
            r = np.transpose(x[0], a.get("perm"))
        elif op == "Split":
            ax = a.get("axis", 0)
            sizes = x[1].tolist() if len(x) > 1 and x[1] is not None else \
                [x[0].shape[ax] // len(n.output)] * len(n.output)
            r = np.split(x[0], np.cumsum(sizes)[:-1], axis=ax)
        elif op == "Where":
            r = np.where(x[0], x[1], x[2]).astype(x[1].dtype)
        elif op == "Softmax":
            ax = a.get("axis", -1)
            e = np.exp(x[0] - x[0].max(axis=ax, keepdims=True))
            r = e / e.sum(axis=ax, keepdims=True)
        elif op == "Gather":
            r = np.take(x[0], x[1], axis=a.get("axis", 0))
        elif op == "Shape":
            r = np.array(x[0].shape, dtype=np.int64)
        elif op == "Unsqueeze":
            r = np.expand_dims(x[0], tuple(x[1].tolist()))
        elif op == "Concat":
            r = np.concatenate(x, axis=a["axis"])
        else:
            raise NotImplementedError(op)
        outs = r if isinstance(r, list) else [r]
        for name, v in zip(n.output, outs):
            env[name] = np.asarray(v)
    return [env[o.name] for o in model.graph.output]


def bn_folded(stv):
    """conv weights/biases with the following BatchNorm folded in, in order."""
    keys = list(stv)
    want = []
    for i, k in enumerate(keys):
        if k.endswith(".weight") and stv[k].ndim == 4:
            bn = next(kk[:-len(".running_var")] for kk in keys[i:] if kk.endswith(".running_var"))
            s = stv[bn + ".weight"] / np.sqrt(stv[bn + ".running_var"] + 1e-5)
            want.append(stv[k] * s.reshape(-1, 1, 1, 1))
            want.append(stv[bn + ".bias"] - stv[bn + ".running_mean"] * s)
    return want


def check_bn_fold(name, stv, fused):
    """eval-mode export folds BatchNorm into the preceding conv: recompute
    w*g/sqrt(var+eps), beta-mean*g/sqrt(var+eps) from the safetensors and match
    them, in order, to the renamed ONNX (weight, bias) initializer pairs."""
    want = bn_folded(stv)
    got = [numpy_helper.to_array(t) for t in fused]
    worst = 0.0
    if len(got) != len(want):
        fail("%s: %d fused initializers, expected %d" % (name, len(got), len(want)))
        return
    for g, w in zip(got, want):
        if g.shape != w.shape:
            fail("%s: fused shape %s vs %s" % (name, g.shape, w.shape))
            return
        worst = max(worst, float(np.abs(g - w).max() / (np.abs(w).max() + 1e-12)))
    if worst > 1e-5:
        fail("%s: fused conv/BN initializers differ (rel %g)" % (name, worst))
    print("  %s: %d unmatched initializers = conv weights/biases with BatchNorm folded in "
          "(recomputed from safetensors, max rel err %.1e)" % (name, len(got), worst))


def rel_l2(st, base):
    num = den = 0.0
    for k, (dt, v) in st.items():
        if dt in ("F32", "F16", "BF16", "F64"):
            b = base[k][1].astype(np.float64)
            num += float(((v.astype(np.float64) - b) ** 2).sum())
            den += float((b ** 2).sum())
    return math.sqrt(num / den)


def check_without_onnx(m, st, tmpl):
    """tmpl = (base name, base safetensors, base onnx model, initializer sources)."""
    name = m["name"]
    bname, bst, bmodel, sources = tmpl
    layout = [(k, dt, v.shape) for k, (dt, v) in st.items()]
    blayout = [(k, dt, v.shape) for k, (dt, v) in bst.items()]
    if layout != blayout:
        fail("%s: tensor names/order/dtypes/shapes differ from %s" % (name, bname))
        return None
    stv = {k: v for k, (dt, v) in st.items()}
    folded = bn_folded(stv) if any(s[0] == "fused" for s in sources) else []
    model = onnx.ModelProto()
    model.CopyFrom(bmodel)
    for t, (how, key) in zip(model.graph.initializer, sources):
        if how == "name":
            a = stv[key]
        elif how == "T":
            a = stv[key].T
        elif how == "fused":
            a = folded[key]
        else:
            fail("%s: no source for base initializer %s" % (name, t.name))
            return None
        t.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(a.astype(np.float32)), t.name))
    x = np.load(os.path.join(D, m["ref"]["input"]))
    y = np.load(os.path.join(D, m["ref"]["output"]))
    got = run_onnx(model, {model.graph.input[0].name: x})[0]
    err = float(np.abs(got.astype(np.float64) - y).max()) if got.shape == y.shape else float("inf")
    if err > 1e-4:
        fail("%s: %s graph with its weights differs from torch ref (max err %g)"
             % (name, bname, err))
    return err


# ---------------------------------------------------------------------- main
def main():
    fam = json.load(open(os.path.join(D, "family.json")))
    for e in fam["files"]:
        p = os.path.join(D, e["path"])
        if not os.path.isfile(p):
            fail("missing " + e["path"])
            continue
        data = open(p, "rb").read()
        if len(data) != e["size"] or hashlib.sha256(data).hexdigest() != e["sha256"]:
            fail("size/sha mismatch " + e["path"])
    listed = {e["path"] for e in fam["files"]}
    for root, _, fns in os.walk(D):
        for fn in fns:
            rel = os.path.relpath(os.path.join(root, fn), D)
            if rel not in listed and rel not in ("family.json", "README.md"):
                fail("unlisted file " + rel)

    raw_counts = {"raw_data": 0, "typed": 0}
    print("%-18s %6s %8s %10s %10s %9s  %s" % ("model", "inits", "by name", "by value",
                                             "transposed", "unmatched", "max |onnx-torch|"))
    templates, bases, swapped = {}, {}, []
    for m in fam["models"]:
        name, files = m["name"], m["files"]
        st = read_st(os.path.join(D, files["safetensors"]))
        if m["role"] == "base":
            bases[m["family"]] = st
        else:
            swapped.append((m, st))
        if "onnx" not in files:
            m["_unmatched"] = []
            continue
        onnx_path = os.path.join(D, files["onnx"])
        onnx.checker.check_model(onnx_path)
        model = onnx.load(onnx_path)
        inits = list(model.graph.initializer)
        for t in inits:
            raw_counts["raw_data" if t.HasField("raw_data") else "typed"] += 1
        byname = byval = bytr = 0
        unmatched = []
        sources = []          # per initializer: (how, safetensors key / fused index)
        stv = {k: v for k, (dt, v) in st.items()}
        for t in inits:
            a = numpy_helper.to_array(t)
            if t.name in stv:
                if stv[t.name].shape == a.shape and np.array_equal(stv[t.name], a):
                    byname += 1
                    sources.append(("name", t.name))
                else:
                    fail("%s: initializer %s differs from safetensors" % (name, t.name))
                    sources.append((None, None))
                continue
            hit = [k for k, v in stv.items() if v.shape == a.shape and np.array_equal(v, a)]
            hitT = [k for k, v in stv.items() if v.ndim == 2 and v.T.shape == a.shape
                    and np.array_equal(v.T, a)]
            if hit:
                byval += 1
                sources.append(("name", hit[0]) if len(hit) == 1 else (None, None))
            elif hitT:
                bytr += 1
                sources.append(("T", hitT[0]) if len(hitT) == 1 else (None, None))
            else:
                unmatched.append("%s%s" % (t.name, list(a.shape)))
                sources.append(("fused", len(unmatched) - 1))
        if m["role"] == "base":
            templates[m["family"]] = (name, st, model, sources)
        m["_unmatched"] = unmatched
        if unmatched and any(k.endswith("running_var") for k in stv):
            check_bn_fold(name, stv, [t for t in inits if t.name not in stv])
        # reference outputs through the numpy interpreter
        x = np.load(os.path.join(D, m["ref"]["input"]))
        y = np.load(os.path.join(D, m["ref"]["output"]))
        feed = model.graph.input[0].name
        got = run_onnx(model, {feed: x})[0]
        err = float(np.abs(got.astype(np.float64) - y).max())
        if got.shape != y.shape or err > 1e-4:
            fail("%s: onnx output differs from torch ref (max err %g, shapes %s %s)"
                 % (name, err, got.shape, y.shape))
        print("%-18s %6d %8d %10d %10d %9d  %.2e" % (name, len(inits), byname, byval, bytr,
                                                    len(unmatched), err))

        if "onnx_external" in files:
            ext_path = os.path.join(D, files["onnx_external"])
            onnx.checker.check_model(ext_path)
            raw = onnx.load(ext_path, load_external_data=False)
            nloc = sum(1 for t in raw.graph.initializer
                       if t.data_location == onnx.TensorProto.EXTERNAL)
            if nloc != len(raw.graph.initializer):
                fail("external copy: only %d/%d initializers external" %
                     (nloc, len(raw.graph.initializer)))
            ext = onnx.load(ext_path)
            for t1, t2 in zip(model.graph.initializer, ext.graph.initializer):
                if t1.name != t2.name or not np.array_equal(numpy_helper.to_array(t1),
                                                            numpy_helper.to_array(t2)):
                    fail("external copy differs at " + t1.name)
            got2 = run_onnx(ext, {feed: x})[0]
            if not np.array_equal(got, got2):
                fail("external copy gives other outputs")
            print("  %s: %d/%d initializers external, equal to inline copy"
                  % (files["onnx_external"], nloc, len(raw.graph.initializer)))
        for tag, npdt in (("bf16", None), ("f16", "<f2")):
            key = "safetensors_" + tag
            if key not in files:
                continue
            low = read_st(os.path.join(D, files[key]))
            for k, (dt, v) in st.items():
                ldt, lv = low[k]
                want = bf16_of(v) if tag == "bf16" else v.astype(npdt)
                if ldt != tag.upper() or not np.array_equal(lv, want):
                    fail("%s %s: %s not the cast of f32" % (files[key], k, tag))
            print("  %s: %d tensors, equal to the f32 tensors cast to %s"
                  % (files[key], len(low), tag))
        if "safetensors_sharded_index" in files:
            ip = os.path.join(D, files["safetensors_sharded_index"])
            idx = json.load(open(ip))
            merged, order = {}, []
            for fn in sorted(set(idx["weight_map"].values())):
                part = read_st(os.path.join(os.path.dirname(ip), fn))
                for k, v in part.items():
                    if idx["weight_map"].get(k) != fn:
                        fail("weight_map wrong for " + k)
                    merged[k] = v
                    order.append(k)
            total = sum(v.nbytes for _, v in merged.values())
            if order != list(st) or idx["metadata"]["total_size"] != total:
                fail("sharded copy: order/total_size mismatch")
            for k, (dt, v) in st.items():
                if merged[k][0] != dt or not np.array_equal(merged[k][1], v):
                    fail("sharded copy differs at " + k)
            print("  %s: %d shards, %d tensors, total_size %d, equal to the single file"
                  % (files["safetensors_sharded_index"], len(set(idx["weight_map"].values())),
                     len(merged), total))
    if swapped:
        print("non-base models, ref checked through the family base's ONNX graph "
              "with their weights:")
    for m, st in swapped:
        if m["family"] not in templates:
            fail("%s: no ONNX base for family %s" % (m["name"], m["family"]))
            continue
        err = check_without_onnx(m, st, templates[m["family"]])
        if err is not None:
            print("%-18s %-16s max |onnx-torch| %.2e%s" % (
                m["name"], m["role"], err, "" if "onnx" in m["files"] else "  (no ONNX file)"))
    nrel = 0
    for m in fam["models"]:
        want = m["metrics"].get("rel_l2_delta_from_base")
        if want is None:
            continue
        st = read_st(os.path.join(D, m["files"]["safetensors"]))
        got = rel_l2(st, bases[m["family"]])
        nrel += 1
        if abs(got - want) > 1e-5 * max(1.0, want):
            fail("%s: rel L2 from base %.6f, family.json says %.6f" % (m["name"], got, want))
        if m.get("parent") and m["parent"] != m["family"] + "-base":
            fail("%s: parent %s is not its family base" % (m["name"], m["parent"]))
    print("rel_l2_delta_from_base recomputed for %d models" % nrel)
    for m in fam["models"]:
        if m["_unmatched"]:
            print("%s: ONNX initializers not in safetensors: %s" % (m["name"], " ".join(m["_unmatched"])))
    print("initializer storage: %s" % raw_counts)
    if FAIL:
        print("%d FAILURES" % len(FAIL))
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
