#!/usr/bin/python3
"""Add more fine-tunes and unrelated models to testdata/family/.

Run:  /usr/bin/python3 bench/family/extend_family.py   (from the repo root,
      after make_family.py; takes a few minutes on 2 cores)

make_family.py's outputs are left untouched (checked by sha256 before and
after); this script loads the committed base safetensors of each family and adds

  digits-mlp   ft4 (mirrored digits), ft5 (noise std 0.3), other2 (seed 2)
  digits-cnn   ft3 (upside-down digits), ft4 (4x4 resolution), ft5 (one
               quadrant occluded), other1, other2 (seeds 1, 2)
  text-tiny    ft3 (C headers), ft4 (man page roff source), ft5 (Perl
               modules), other1, other2 (seeds 1, 2, trained like base)

Fine-tunes are full fine-tunes (every tensor trained) continued from base with
a small learning rate; "other" models are the base recipe from another seed.
Each new model is written as <family>-<role>.safetensors (make_family.py's
writer, state_dict order) plus ref/<model>.input.npy / .output.npy. Then
family.json (new model entries, recipes, corpora, the "eval" section with the
eval_family.py value of every safetensors file, file list) and README.md are
rewritten; existing model entries stay as they are.

The data variants, corpora and held-out splits are defined in eval_family.py,
so `eval_family.py --selfcheck` reproduces the numbers written here.
"""

import hashlib
import json
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
T0 = time.time()

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import torch  # noqa: E402

import make_family as mf  # noqa: E402  (definitions only; main() is not run)
import eval_family as ev  # noqa: E402

torch.set_num_threads(2)
torch.use_deterministic_algorithms(True)

OUT = ev.FAMILY_DIR
REF = os.path.join(OUT, "ref")
assert os.path.samefile(OUT, mf.OUT)

# (family, role, kind, domain, recipe); kind: "ft" = fine-tune of base,
# "other" = trained from scratch. Hyperparameters are in the builders below.
NEW = [
    ("digits-mlp", "ft4", "ft", "mirror",
     "base + 5 epochs Adam lr 1e-4 on left-right mirrored train images (variant mirror)"),
    ("digits-mlp", "ft5", "ft", "noise30",
     "base + 8 epochs Adam lr 1e-4 on train images with gaussian noise std 0.3 (variant noise30)"),
    ("digits-mlp", "other2", "other", "clean",
     "seed 2, 20 epochs Adam lr 1e-3 (independent of base)"),
    ("digits-cnn", "ft3", "ft", "flipud",
     "base + 5 epochs Adam lr 1e-4 on upside-down train images (variant flipud; BN stats keep updating)"),
    ("digits-cnn", "ft4", "ft", "lowres",
     "base + 5 epochs Adam lr 1e-4 on 4x4-resolution train images (variant lowres)"),
    ("digits-cnn", "ft5", "ft", "occlude",
     "base + 5 epochs Adam lr 1e-4 on train images with one 4x4 quadrant zeroed (variant occlude)"),
    ("digits-cnn", "other1", "other", "clean",
     "seed 1, 15 epochs Adam lr 2e-3 (independent of base)"),
    ("digits-cnn", "other2", "other", "clean",
     "seed 2, 15 epochs Adam lr 2e-3 (independent of base)"),
    ("text-tiny", "ft3", "ft", "headers",
     "base + 400 steps Adam lr 3e-5 on C headers (corpus headers)"),
    ("text-tiny", "ft4", "ft", "man",
     "base + 400 steps Adam lr 3e-5 on man page roff source (corpus man)"),
    ("text-tiny", "ft5", "ft", "perl",
     "base + 400 steps Adam lr 3e-5 on Perl modules (corpus perl)"),
    ("text-tiny", "other1", "other", "licenses",
     "seed 1, 2000 steps Adam lr 3e-3 (100 warmup, cosine to 3e-4), batch 64x32, corpus licenses"),
    ("text-tiny", "other2", "other", "licenses",
     "seed 2, 2000 steps Adam lr 3e-3 (100 warmup, cosine to 3e-4), batch 64x32, corpus licenses"),
]
# per new model: (seed for init / seed_all, data-order seed, hyperparameters)
HP = {
    ("digits-mlp", "ft4"): dict(seed=14, data_seed=14, epochs=5, lr=1e-4),
    ("digits-mlp", "ft5"): dict(seed=15, data_seed=15, epochs=8, lr=1e-4),
    ("digits-mlp", "other2"): dict(seed=2, data_seed=102, epochs=20, lr=1e-3),
    ("digits-cnn", "ft3"): dict(seed=23, data_seed=23, epochs=5, lr=1e-4),
    ("digits-cnn", "ft4"): dict(seed=24, data_seed=24, epochs=5, lr=1e-4),
    ("digits-cnn", "ft5"): dict(seed=25, data_seed=25, epochs=5, lr=1e-4),
    ("digits-cnn", "other1"): dict(seed=1, data_seed=201, epochs=15, lr=2e-3),
    ("digits-cnn", "other2"): dict(seed=2, data_seed=202, epochs=15, lr=2e-3),
    ("text-tiny", "ft3"): dict(seed=33, data_seed=33, steps=400, lr=3e-5),
    ("text-tiny", "ft4"): dict(seed=34, data_seed=34, steps=400, lr=3e-5),
    ("text-tiny", "ft5"): dict(seed=35, data_seed=35, steps=400, lr=3e-5),
    ("text-tiny", "other1"): dict(seed=1, data_seed=301, steps=2000, lr=3e-3, warmup=100,
                                  cosine=True),
    ("text-tiny", "other2"): dict(seed=2, data_seed=302, steps=2000, lr=3e-3, warmup=100,
                                  cosine=True),
}

NEW_NAMES = ["%s-%s" % (f, r) for f, r, _, _, _ in NEW]
NEW_FILES = set()
for _n in NEW_NAMES:
    NEW_FILES |= {_n + ".safetensors", "ref/%s.input.npy" % _n, "ref/%s.output.npy" % _n}


def sha256_file(p):
    with open(p, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def check_original(orig, when):
    """every file make_family.py wrote is still byte-identical.
    orig: family.json's file entries as read before this run."""
    bad = []
    for e in orig:
        if e["path"] in NEW_FILES:
            continue
        p = os.path.join(OUT, e["path"])
        if not os.path.isfile(p) or os.path.getsize(p) != e["size"] or \
                sha256_file(p) != e["sha256"]:
            bad.append(e["path"])
    if bad:
        sys.exit("extend_family.py (%s): files differ from family.json: %s"
                 % (when, " ".join(bad)))
    return sum(1 for e in orig if e["path"] not in NEW_FILES)


def assert_full_finetune(name, sd, base_sd):
    same = [k for k, v in sd.items() if torch.equal(v, base_sd[k])]
    if same:
        sys.exit("%s: tensors not updated by the fine-tune: %s" % (name, same))


def build_family(family, fam, results):
    spec = ev.FAMILIES[family]
    base_path = os.path.join(OUT, "%s-base.safetensors" % family)
    base = ev.load_model(family, base_path)
    base_sd = mf.clone_sd(base)
    base_entry = next(m for m in fam["models"] if m["name"] == family + "-base")
    chk = ev.evaluate(family, base, ev.DOMAINS[family]["base"])
    if abs(round(chk["loss"], 6) - base_entry["metrics"]["loss"]) > 1e-6:
        sys.exit("%s: base loss %.6f, family.json says %.6f"
                 % (family, chk["loss"], base_entry["metrics"]["loss"]))

    if spec["kind"] == "digits":
        shp = spec["reshape"]
        Xte = ev.digits_split()[2]
        refx = Xte[:4].view(shp) if shp else Xte[:4]
    else:
        C = ev.corpora()
        refx = mf.val_windows(C["licenses"]["val"])[0][:4].clone()

    for fam_name, role, kind, domain, recipe in NEW:
        if fam_name != family:
            continue
        name = "%s-%s" % (family, role)
        hp = HP[(family, role)]
        t = time.time()
        mf.seed_all(hp["seed"])
        model = spec["cls"]()
        if kind == "ft":
            model.load_state_dict(base_sd)
        if spec["kind"] == "digits":
            Xtr, ytr, _, _ = ev.digits_data(domain)
            mf.train_classifier(model, Xtr, ytr, epochs=hp["epochs"], lr=hp["lr"],
                                seed=hp["data_seed"], reshape=spec["reshape"])
        else:
            mf.train_text(model, C[domain]["train"], steps=hp["steps"], lr=hp["lr"],
                          seed=hp["data_seed"], warmup=hp.get("warmup", 0),
                          cosine=hp.get("cosine", False))
        model.eval()
        sd = mf.clone_sd(model)
        if kind == "ft":
            assert_full_finetune(name, sd, base_sd)
        fn = name + ".safetensors"
        mf.write_safetensors(os.path.join(OUT, fn), sd)
        ref = mf.write_ref(name, model, refx)

        # metrics, from the file just written (the same path eval_family.py takes)
        saved = ev.load_model(family, os.path.join(OUT, fn))
        r = ev.evaluate(family, saved, domain)
        rb = ev.evaluate(family, base, domain)
        metrics = {}
        if spec["kind"] == "digits":
            metrics["accuracy"] = round(r["accuracy_frac"], 6)
            metrics["loss"] = round(r["loss"], 6)
            metrics["eval_set"] = "digits-test-360" if domain == "clean" else \
                "digits-test-360, variant %s" % domain
            if kind == "ft":
                metrics["base_accuracy"] = round(rb["accuracy_frac"], 6)
                metrics["base_loss"] = round(rb["loss"], 6)
                rc = ev.evaluate(family, saved, "clean")
                metrics["accuracy_clean"] = round(rc["accuracy_frac"], 6)
        else:
            metrics["eval_set"] = "%s-val (last 10%%, %d windows of %d)" % (
                domain, len(mf.val_windows(C[domain]["val"])[0]), mf.CTX)
            metrics["loss"] = round(r["loss"], 6)
            metrics["accuracy"] = round(r["accuracy_frac"], 6)
            if kind == "ft":
                metrics["base_loss"] = round(rb["loss"], 6)
                metrics["base_accuracy"] = round(rb["accuracy_frac"], 6)
            for k in C:
                rk = ev.evaluate(family, saved, k)
                metrics["loss_" + k] = round(rk["loss"], 6)
                metrics["accuracy_" + k] = round(rk["accuracy_frac"], 6)
        metrics["rel_l2_delta_from_base"] = round(mf.rel_delta(sd, base_sd), 6)
        entry = {"name": name, "family": family,
                 "role": "finetune" if kind == "ft" else "unrelated",
                 "files": {"safetensors": fn}, "ref": ref, "metrics": metrics,
                 "params": mf.nparams(model)}
        if kind == "ft":
            entry["parent"] = family + "-base"
        entry["added_by"] = "bench/family/extend_family.py"
        fam["models"].append(entry)
        fam["recipes"][family][role] = recipe
        results[name] = (r, rb if kind == "ft" else None)
        print("  %-18s %-9s %-14s %.4f (base %s)  rel L2 %.4f  %.1fs" % (
            name, domain, r["metric"], r["value"],
            "%.4f" % rb["value"] if kind == "ft" else "-",
            metrics["rel_l2_delta_from_base"], time.time() - t), flush=True)


def eval_section(fam):
    res = []
    for m in fam["models"]:
        family = m["family"]
        role = m["name"][len(family) + 1:]
        for key in ("safetensors", "safetensors_bf16", "safetensors_f16",
                    "safetensors_sharded_index"):
            if key not in m["files"]:
                continue
            f = m["files"][key]
            model = ev.load_model(family, os.path.join(OUT, f))
            r = ev.evaluate(family, model, ev.DOMAINS[family][role])
            res.append({"family": family, "role": role, "file": f, "metric": r["metric"],
                        "value": round(r["value"], 6),
                        "higher_is_better": r["higher_is_better"]})
    return {
        "script": "bench/family/eval_family.py",
        "usage": "/usr/bin/python3 bench/family/eval_family.py FAMILY ROLE=PATH.safetensors "
                 "[ROLE=PATH ...]; --selfcheck compares against this section",
        "metrics": {"digits-mlp": "accuracy (%) on the 360 held-out images after the role's "
                                  "data variant",
                    "digits-cnn": "accuracy (%) on the 360 held-out images after the role's "
                                  "data variant",
                    "text-tiny": "cross-entropy in bits per byte on 256 windows of 32 bytes "
                                 "from the last 10% of the role's corpus"},
        "domains": ev.DOMAINS,
        "results": res,
    }


def file_list():
    files = []
    for root, _, fns in os.walk(OUT):
        for fn in fns:
            p = os.path.join(root, fn)
            rel = os.path.relpath(p, OUT)
            if rel in ("family.json", "README.md"):
                continue
            with open(p, "rb") as f:
                data = f.read()
            files.append({"path": rel, "size": len(data),
                          "sha256": hashlib.sha256(data).hexdigest()})
    files.sort(key=lambda e: e["path"])
    return files


EXT_README = """
## Added by `bench/family/extend_family.py`

`/usr/bin/python3 bench/family/extend_family.py` (run after make_family.py; it
leaves every file make_family.py wrote byte-identical) loads each family's
committed base safetensors and adds full fine-tunes (every tensor trained,
continued from `base` with a small learning rate) on other data, and unrelated
models (base recipe, other seed, trained from scratch). These have safetensors
and `ref/` files only, no ONNX. family.json marks them with
`"added_by": "bench/family/extend_family.py"`; their metrics hold the base's
numbers on the same held-out data (`base_accuracy` / `base_loss`).

Digits data variants (applied to the same train/test split; fixed seeds):
%s

Text corpora (first 160000 bytes of the files in sorted order, last 10%% held out):
%s

| model | data | held-out metric (base on same data) | rel. L2 from base |
|---|---|---|---|
%s

Evaluation: `/usr/bin/python3 bench/family/eval_family.py FAMILY ROLE=PATH [...]`
loads safetensors (F32/F16/BF16, or a sharded index) strictly into the family's
architecture and prints one JSON line per model: accuracy in %% on the held-out
split of the role's data variant (digits; `base`, the make_family.py fine-tunes
and `other*` use the clean digits) or bits per byte on the role's held-out corpus
(text; `base`/`other*`: licenses, `ft1` go, `ft2` python). family.json's `eval`
section holds the value for every committed safetensors file (including the
bf16/f16 copies and the sharded base); `eval_family.py --selfcheck` recomputes
them (tolerance 1e-6), the `accuracy`/`loss` metrics of every model and the
`ref/` outputs. Rerunning extend_family.py reproduces the same files.
"""


def write_readme(fam, files):
    mf.write_readme(files)        # make_family.py's text, file table updated
    p = os.path.join(OUT, "README.md")
    text = open(p).read()
    text = text.replace(
        "Rerunning wipes and rebuilds this folder.",
        "Rerunning wipes and rebuilds this\nfolder (then rerun extend_family.py, see below).")
    variants = "\n".join("* `%s`: %s" % (k, v) for k, v in ev.DIGITS_VARIANTS.items()
                         if k != "clean")
    corp = fam["recipes"]["text-tiny"]["corpora"]
    cl = "\n".join("* `%s`: %s; %s, %d bytes" % (k, ev.EXTRA_CORPORA[k][0], corp[k]["files"],
                                                  corp[k]["bytes"]) for k in ev.EXTRA_CORPORA)
    rows = []
    for m in fam["models"]:
        if m.get("added_by") != "bench/family/extend_family.py":
            continue
        role = m["name"][len(m["family"]) + 1:]
        dom = ev.DOMAINS[m["family"]][role]
        mt = m["metrics"]
        if m["family"] == "text-tiny":
            v = "%.3f bits/byte" % (mt["loss"] / 0.6931471805599453)
            b = " (%.3f)" % (mt["base_loss"] / 0.6931471805599453) if "base_loss" in mt else ""
        else:
            v = "%.1f%% accuracy" % (100 * mt["accuracy"])
            b = " (%.1f%%)" % (100 * mt["base_accuracy"]) if "base_accuracy" in mt else ""
        rows.append("| `%s` (%s) | %s | %s%s | %.4f |" % (
            m["name"], m["role"], dom, v, b, mt["rel_l2_delta_from_base"]))
    ext = EXT_README % (variants, cl, "\n".join(rows))
    marker = "Check with `"
    i = text.index(marker)
    text = text[:i] + ext.lstrip("\n") + "\n" + text[i:]
    text = text.replace(
        "ONNX outputs vs `ref/` through a small numpy interpreter).",
        "ONNX outputs vs `ref/` through a small numpy interpreter; models without ONNX\n"
        "are run through their family base's ONNX graph with their own weights swapped in).")
    with open(p, "w") as f:
        f.write(text)


def main():
    fj = os.path.join(OUT, "family.json")
    fam = ev.load_family_json(fj)
    if fam is None:
        sys.exit("no %s: run make_family.py first" % fj)
    orig = [dict(e) for e in fam["files"]]
    norig = check_original(orig, "before")
    # rerun: drop what an earlier run of this script added
    fam["models"] = [m for m in fam["models"] if m["name"] not in NEW_NAMES]
    for f, r, _, _, _ in NEW:
        fam["recipes"][f].pop(r, None)

    corp = ev.corpora({k: v for k, v in fam["recipes"]["text-tiny"]["corpora"].items()
                       if k in ("licenses", "go", "python")})
    for k in ev.EXTRA_CORPORA:
        fam["recipes"]["text-tiny"]["corpora"][k] = {
            kk: corp[k][kk] for kk in ("bytes", "sha256", "files", "source")}

    results = {}
    for family in ev.FAMILIES:
        t = time.time()
        build_family(family, fam, results)
        print("%s done in %.1fs" % (family, time.time() - t), flush=True)

    files = file_list()
    out = {}
    for k in ("generator",):
        out[k] = fam[k]
    out["extended_by"] = "bench/family/extend_family.py"
    for k in ("torch", "onnx_opset", "digits_split"):
        out[k] = fam[k]
    out["digits_variants"] = ev.DIGITS_VARIANTS
    out["recipes"] = fam["recipes"]
    out["models"] = fam["models"]
    out["eval"] = eval_section(fam)
    out["files"] = files
    with open(fj, "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    write_readme(out, files)
    check_original(orig, "after")
    now = {e["path"]: e for e in files}
    for e in orig:
        if e["path"] not in NEW_FILES and now.get(e["path"]) != e:
            sys.exit("file list entry changed: %s" % e["path"])

    added = [e for e in files if e["path"] in NEW_FILES]
    print()
    print("%d files of make_family.py unchanged; %d files added, %d bytes (%.2f MiB)"
          % (norig, len(added), sum(e["size"] for e in added),
             sum(e["size"] for e in added) / (1 << 20)))
    print("runtime: %.1fs" % (time.time() - T0))


if __name__ == "__main__":
    main()
