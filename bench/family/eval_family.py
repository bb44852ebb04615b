#!/usr/bin/python3
"""Evaluate safetensors files of the testdata/family model families.

Run (from the repo root, with Debian's torch):

  /usr/bin/python3 bench/family/eval_family.py FAMILY ROLE=PATH [ROLE=PATH ...]
  /usr/bin/python3 bench/family/eval_family.py --domain DOMAIN FAMILY ROLE=PATH ...
  /usr/bin/python3 bench/family/eval_family.py --selfcheck

FAMILY is digits-mlp, digits-cnn or text-tiny. ROLE is the model's short name
within the family (base, ft1, ..., other, other1, ...; see DOMAINS below), PATH a
safetensors file (or a sharded `model.safetensors.index.json`). Each file is
loaded strictly into the family's architecture (every tensor present with the
right shape, no extra tensors; floating tensors may be F32, F16 or BF16 and are
converted to float32) and evaluated on the held-out data of the role's own
domain. One JSON line per model is printed:

  {"family": ..., "role": ..., "metric": "accuracy" | "bits_per_byte",
   "value": ..., "higher_is_better": true | false}

digits families: accuracy in % on the 360-image held-out split (sklearn
load_digits, the split of make_family.py) after the role's data variant;
text-tiny: cross-entropy in bits per byte of next-byte prediction on 256
windows of 32 bytes from the last 10% of the role's corpus. `--domain` evaluates
every file on one given domain instead (e.g. the base on a fine-tune's data).

This module is also the single definition of the data variants and corpora used
by extend_family.py, so the numbers in family.json come from the same code.

--selfcheck re-evaluates every entry of family.json's "eval" section and fails
(exit 1) if a value differs by more than 1e-6, checks that the legacy metrics
(accuracy fraction / loss in nats, rounded to 6 digits) of every model agree,
that the text corpora on this machine have the recorded sha256, and that each
model reproduces its ref/<model>.output.npy from ref/<model>.input.npy.

Exit status 2 on usage errors, 1 on a missing, malformed or mismatched file.
"""

import gzip
import glob
import hashlib
import json
import math
import os
import struct
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
FAMILY_DIR = os.path.join(REPO, "testdata", "family")
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

# make_family.py only defines things at import time (plus 2 threads and
# deterministic algorithms, which is what we want here as well).
import make_family as mf  # noqa: E402

torch.set_num_threads(2)
torch.use_deterministic_algorithms(True)


class EvalError(Exception):
    pass


# --------------------------------------------------------------------------
# families, roles and their domains
# --------------------------------------------------------------------------
FAMILIES = {
    "digits-mlp": {"kind": "digits", "cls": mf.DigitsMLP, "reshape": None},
    "digits-cnn": {"kind": "digits", "cls": mf.DigitsCNN, "reshape": (-1, 1, 8, 8)},
    "text-tiny": {"kind": "text", "cls": mf.TextTiny},
}

# role -> domain (digits: data variant; text: corpus). The models written by
# make_family.py were all evaluated on the clean digits test split / their
# training corpus, which is kept here so family.json's metrics reproduce.
DOMAINS = {
    "digits-mlp": {"base": "clean", "ft1": "clean", "ft2": "clean", "ft3": "clean",
                   "ft4": "mirror", "ft5": "noise30", "other": "clean", "other2": "clean"},
    "digits-cnn": {"base": "clean", "ft1": "clean", "ft2": "clean", "ft3": "flipud",
                   "ft4": "lowres", "ft5": "occlude", "other1": "clean", "other2": "clean"},
    "text-tiny": {"base": "licenses", "ft1": "go", "ft2": "python", "ft3": "headers",
                  "ft4": "man", "ft5": "perl", "other1": "licenses", "other2": "licenses"},
}

DIGITS_VARIANTS = {
    "clean": "the digits as they are",
    "mirror": "left-right mirrored 8x8 images",
    "flipud": "upside-down (top-bottom flipped) 8x8 images",
    "lowres": "2x2 average pooling then nearest upsampling (4x4 effective resolution)",
    "noise30": "gaussian noise std 0.3 added, clamped to [0,1]; one fixed draw per image "
               "(torch.Generator seed 401 for train, 402 for test)",
    "occlude": "one of the four 4x4 quadrants set to 0, chosen per image "
               "(torch.Generator seed 501 for train, 502 for test)",
}

# corpora added by extend_family.py (make_family.py has licenses, go, python)
EXTRA_CORPORA = {
    "headers": ("C headers: sorted /usr/include/*.h (regular files, no symlinks)",
                lambda: sorted(p for p in glob.glob("/usr/include/*.h")
                               if os.path.isfile(p) and not os.path.islink(p))),
    "man": ("man pages (roff source): sorted /usr/share/man/man1/*.gz (regular files, "
            "no symlinks), each gunzipped",
            lambda: sorted(p for p in glob.glob("/usr/share/man/man1/*.gz")
                           if os.path.isfile(p) and not os.path.islink(p))),
    "perl": ("Perl modules: sorted /usr/share/perl/5.*/*.pm (real directory, not the "
             "5.xx symlink; regular files)",
             lambda: sorted(p for d in sorted(glob.glob("/usr/share/perl/5.*"))
                            if os.path.isdir(d) and not os.path.islink(d)
                            for p in glob.glob(os.path.join(d, "*.pm"))
                            if os.path.isfile(p) and not os.path.islink(p))),
}
EXTRA_CAP = 160_000


def roles(family):
    return DOMAINS[family]


def domains_of(family):
    if FAMILIES[family]["kind"] == "digits":
        return list(DIGITS_VARIANTS)
    return ["licenses", "go", "python"] + list(EXTRA_CORPORA)


# --------------------------------------------------------------------------
# digits data
# --------------------------------------------------------------------------
_DIGITS = None


def digits_split():
    global _DIGITS
    if _DIGITS is None:
        _DIGITS = mf.load_digits_split()
    return _DIGITS


def digits_variant(X, name, split):
    """X: [N, 64] float32 in [0,1]; split: "train" or "test". Deterministic."""
    x8 = X.reshape(-1, 8, 8)
    if name == "clean":
        out = x8.clone()
    elif name == "mirror":
        out = x8.flip(-1)
    elif name == "flipud":
        out = x8.flip(-2)
    elif name == "lowres":
        out = F.interpolate(F.avg_pool2d(x8.unsqueeze(1), 2), scale_factor=2,
                            mode="nearest").squeeze(1)
    elif name == "noise30":
        g = torch.Generator().manual_seed(401 if split == "train" else 402)
        out = (x8 + 0.3 * torch.randn(x8.shape, generator=g)).clamp(0, 1)
    elif name == "occlude":
        g = torch.Generator().manual_seed(501 if split == "train" else 502)
        q = torch.randint(0, 4, (len(X),), generator=g)
        out = x8.clone()
        for i in range(len(X)):
            r, c = divmod(int(q[i]), 2)
            out[i, r * 4:r * 4 + 4, c * 4:c * 4 + 4] = 0
    else:
        raise EvalError("unknown digits variant %r" % name)
    return out.reshape(-1, 64).contiguous()


def digits_data(variant):
    Xtr, ytr, Xte, yte = digits_split()
    return (digits_variant(Xtr, variant, "train"), ytr,
            digits_variant(Xte, variant, "test"), yte)


# --------------------------------------------------------------------------
# text corpora
# --------------------------------------------------------------------------
_CORPORA = None


def _read(path):
    with open(path, "rb") as f:
        data = f.read()
    return gzip.decompress(data) if path.endswith(".gz") else data


def _extra_corpus(name):
    desc, lister = EXTRA_CORPORA[name]
    paths = lister()
    if not paths:
        raise EvalError("no files found for corpus %s (%s)" % (name, desc))
    out, used = bytearray(), []
    for p in paths:
        if len(out) >= EXTRA_CAP:
            break
        out += _read(p)
        used.append(p)
    data = bytes(out[:EXTRA_CAP])
    t = torch.frombuffer(bytearray(data), dtype=torch.uint8).long()
    nval = len(t) // 10
    return {"train": t[:-nval], "val": t[-nval:], "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "files": "%s .. %s (%d files)" % (used[0], used[-1], len(used)),
            "source": desc}


def corpora(expected=None):
    """All six corpora; expected = family.json's recipes.text-tiny.corpora
    (if given, each corpus found there must have the recorded sha256)."""
    global _CORPORA
    if _CORPORA is None:
        c = mf.corpora()
        for name in EXTRA_CORPORA:
            c[name] = _extra_corpus(name)
        _CORPORA = c
    if expected:
        for name, e in expected.items():
            got = _CORPORA.get(name)
            if got is None or got["sha256"] != e["sha256"] or got["bytes"] != e["bytes"]:
                raise EvalError(
                    "corpus %s on this machine (%s) differs from the one recorded in "
                    "family.json (sha256 %s, %d bytes): text metrics are not comparable"
                    % (name, got and got["sha256"], e["sha256"], e["bytes"]))
    return _CORPORA


def load_family_json(path=None):
    path = path or os.path.join(FAMILY_DIR, "family.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


# --------------------------------------------------------------------------
# strict safetensors loading
# --------------------------------------------------------------------------
ELEM = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8}


def read_safetensors(path):
    """-> dict name -> (dtype string, torch tensor as stored converted: floats to float32)."""
    if not os.path.isfile(path):
        raise EvalError("%s: no such file" % path)
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise EvalError("%s: too short for a safetensors file (%d bytes)" % (path, len(data)))
    (hlen,) = struct.unpack("<Q", data[:8])
    if 8 + hlen > len(data):
        raise EvalError("%s: header length %d beyond end of file" % (path, hlen))
    try:
        hdr = json.loads(data[8:8 + hlen].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise EvalError("%s: header is not valid JSON (%s)" % (path, e))
    if not isinstance(hdr, dict):
        raise EvalError("%s: header is not a JSON object" % path)
    hdr.pop("__metadata__", None)
    body = memoryview(data)[8 + hlen:]
    out = {}
    for name, e in hdr.items():
        try:
            dt, shape, (a, b) = e["dtype"], [int(s) for s in e["shape"]], e["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise EvalError("%s: bad header entry for %s" % (path, name))
        if dt not in ELEM:
            raise EvalError("%s: tensor %s has dtype %s (supported: F32, F16, BF16; I64 "
                            "for integer buffers)" % (path, name, dt))
        n = int(np.prod(shape, dtype=np.int64))
        if not (0 <= a <= b <= len(body)) or b - a != n * ELEM[dt]:
            raise EvalError("%s: tensor %s: offsets [%d, %d] do not fit dtype %s shape %s "
                            "(data section %d bytes)" % (path, name, a, b, dt, shape, len(body)))
        raw = body[a:b]
        if dt == "F32":
            arr = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        elif dt == "F16":
            arr = np.frombuffer(raw, dtype="<f2").astype(np.float32)
        elif dt == "BF16":
            arr = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype="<i8").astype(np.int64)
        out[name] = (dt, torch.from_numpy(arr.reshape(shape).copy()))
    return out


def read_weights(path):
    """A safetensors file, or a sharded model.safetensors.index.json."""
    if path.endswith(".json"):
        if not os.path.isfile(path):
            raise EvalError("%s: no such file" % path)
        try:
            idx = json.load(open(path))
            wm = idx["weight_map"]
        except (ValueError, KeyError, TypeError):
            raise EvalError("%s: not a safetensors index (no weight_map)" % path)
        merged = {}
        for fn in sorted(set(wm.values())):
            part = read_safetensors(os.path.join(os.path.dirname(path), fn))
            for k, v in part.items():
                if wm.get(k) != fn:
                    raise EvalError("%s: tensor %s found in %s, weight_map says %s"
                                    % (path, k, fn, wm.get(k)))
                merged[k] = v
        return merged
    return read_safetensors(path)


def _names(ks, n=6):
    if not ks:
        return "none"
    s = ", ".join(ks[:n])
    return "%d (%s%s)" % (len(ks), s, ", ..." if len(ks) > n else "")


def load_model(family, path):
    spec = FAMILIES[family]
    model = spec["cls"]()
    want = model.state_dict()
    got = read_weights(path)
    missing = [k for k in want if k not in got]
    extra = [k for k in got if k not in want]
    if missing or extra:
        raise EvalError("%s does not match the %s architecture: missing %s; unexpected %s"
                        % (path, family, _names(missing), _names(extra)))
    sd = {}
    for k, ref in want.items():
        dt, t = got[k]
        if tuple(t.shape) != tuple(ref.shape):
            raise EvalError("%s: tensor %s has shape %s, %s needs %s"
                            % (path, k, list(t.shape), family, list(ref.shape)))
        if ref.is_floating_point() != (dt != "I64"):
            raise EvalError("%s: tensor %s has dtype %s, %s needs %s"
                            % (path, k, dt, family, ref.dtype))
        sd[k] = t
    model.load_state_dict(sd, strict=True)
    model.eval()
    return model


# --------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------
def evaluate(family, model, domain):
    """-> dict(metric, value (unrounded), higher_is_better, loss, accuracy_frac)."""
    spec = FAMILIES[family]
    with torch.no_grad():
        if spec["kind"] == "digits":
            _, _, Xte, yte = digits_data(domain)
            xb = Xte.view(spec["reshape"]) if spec["reshape"] else Xte
            logits = model(xb)
            loss = F.cross_entropy(logits, yte).item()
            correct = int((logits.argmax(1) == yte).sum())
            acc = (logits.argmax(1) == yte).float().mean().item()
            return {"metric": "accuracy", "value": 100.0 * correct / len(yte),
                    "higher_is_better": True, "loss": loss, "accuracy_frac": acc}
        C = corpora()
        if domain not in C:
            raise EvalError("unknown corpus %r" % domain)
        x, y = mf.val_windows(C[domain]["val"])
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, 256), y.reshape(-1)).item()
        acc = (logits.argmax(-1) == y).float().mean().item()
        return {"metric": "bits_per_byte", "value": loss / math.log(2),
                "higher_is_better": False, "loss": loss, "accuracy_frac": acc}


def result_line(family, role, r, domain=None):
    d = {"family": family, "role": role, "metric": r["metric"],
         "value": round(r["value"], 6), "higher_is_better": r["higher_is_better"]}
    if domain is not None:
        d["domain"] = domain
    return d


def parse_pairs(family, pairs):
    out = []
    for p in pairs:
        if "=" not in p:
            raise EvalError("argument %r is not ROLE=PATH" % p)
        role, path = p.split("=", 1)
        if role not in DOMAINS[family]:
            raise EvalError("unknown role %r for %s (known: %s)"
                            % (role, family, " ".join(DOMAINS[family])))
        out.append((role, path))
    return out


# --------------------------------------------------------------------------
# selfcheck
# --------------------------------------------------------------------------
def selfcheck(fj_path=None):
    fam = load_family_json(fj_path)
    if fam is None:
        raise EvalError("family.json not found")
    fails = []

    def bad(msg):
        fails.append(msg)
        print("FAIL:", msg, flush=True)

    corpora(fam["recipes"]["text-tiny"]["corpora"])
    ev = fam.get("eval")
    if not ev:
        raise EvalError("family.json has no eval section (run extend_family.py)")
    models = {m["name"]: m for m in fam["models"]}
    for family in FAMILIES:
        for role in DOMAINS[family]:
            if "%s-%s" % (family, role) not in models:
                bad("role %s/%s has no model in family.json" % (family, role))
        if ev["domains"].get(family) != DOMAINS[family]:
            bad("family.json eval.domains[%s] differs from eval_family.DOMAINS" % family)
    # 1. eval results (all files, incl. bf16/f16 copies and the sharded base)
    cache = {}
    nres = 0
    for r in ev["results"]:
        path = os.path.join(FAMILY_DIR, r["file"])
        model = load_model(r["family"], path)
        dom = DOMAINS[r["family"]][r["role"]]
        got = evaluate(r["family"], model, dom)
        cache[r["file"]] = (model, got)
        line = result_line(r["family"], r["role"], got)
        diff = abs(got["value"] - r["value"])
        if line["metric"] != r["metric"] or diff > 1e-6:
            bad("%s: %s %.6f, family.json says %s %.6f" % (r["file"], line["metric"],
                                                           got["value"], r["metric"], r["value"]))
        nres += 1
    print("eval results: %d files re-evaluated" % nres)
    # 2. legacy metrics of every model entry, 3. ref outputs
    for name, m in models.items():
        family, role = m["family"], name[len(m["family"]) + 1:]
        dom = DOMAINS[family][role]
        for key, field in (("safetensors", ""), ("safetensors_bf16", "_bf16"),
                           ("safetensors_f16", "_f16")):
            if key not in m["files"]:
                continue
            f = m["files"][key]
            if f in cache:
                model, got = cache[f]
            else:
                model = load_model(family, os.path.join(FAMILY_DIR, f))
                got = evaluate(family, model, dom)
                cache[f] = (model, got)
            for mk, gk in (("accuracy", "accuracy_frac"), ("loss", "loss")):
                want = m["metrics"].get(mk + field)
                if want is None:
                    bad("%s: no metrics.%s%s" % (name, mk, field))
                elif abs(round(got[gk], 6) - want) > 1e-6:
                    bad("%s (%s): %s %.6f, family.json metrics.%s%s %.6f"
                        % (name, f, mk, got[gk], mk, field, want))
        model = cache[m["files"]["safetensors"]][0]
        x = torch.from_numpy(np.load(os.path.join(FAMILY_DIR, m["ref"]["input"])))
        y = np.load(os.path.join(FAMILY_DIR, m["ref"]["output"]))
        with torch.no_grad():
            out = model(x).numpy()
        err = float(np.abs(out - y).max()) if out.shape == y.shape else float("inf")
        if err > 1e-5:
            bad("%s: output on ref input differs from %s (max err %g)"
                % (name, m["ref"]["output"], err))
    print("legacy metrics and ref outputs: %d models checked" % len(models))
    if fails:
        print("%d FAILURES" % len(fails))
        return 1
    print("selfcheck passed")
    return 0


# --------------------------------------------------------------------------
def usage(msg=None):
    if msg:
        print("eval_family.py: " + msg, file=sys.stderr)
    print("usage: eval_family.py [--domain DOMAIN] FAMILY ROLE=PATH.safetensors [ROLE=PATH ...]\n"
          "       eval_family.py --selfcheck\n"
          "families and roles:\n" +
          "\n".join("  %s: %s" % (f, " ".join(DOMAINS[f])) for f in FAMILIES),
          file=sys.stderr)
    sys.exit(2)


def main(argv):
    if argv[:1] in (["-h"], ["--help"]):
        usage()
    try:
        if argv[:1] == ["--selfcheck"]:
            if len(argv) > 1:
                usage("--selfcheck takes no arguments")
            return selfcheck()
        domain = None
        if argv[:1] == ["--domain"]:
            if len(argv) < 2:
                usage("--domain needs a value")
            domain, argv = argv[1], argv[2:]
        if len(argv) < 2:
            usage("need FAMILY and at least one ROLE=PATH")
        family = argv[0]
        if family not in FAMILIES:
            usage("unknown family %r" % family)
        if domain is not None and domain not in domains_of(family):
            usage("unknown domain %r for %s (known: %s)"
                  % (domain, family, " ".join(domains_of(family))))
        pairs = parse_pairs(family, argv[1:])
        if FAMILIES[family]["kind"] == "text":
            fam = load_family_json()
            corpora(fam and fam["recipes"]["text-tiny"].get("corpora"))
        models = [(role, load_model(family, path)) for role, path in pairs]   # fail early
        for role, model in models:
            dom = domain or DOMAINS[family][role]
            r = evaluate(family, model, dom)
            print(json.dumps(result_line(family, role, r, domain)), flush=True)
    except EvalError as e:
        print("eval_family.py: error: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
