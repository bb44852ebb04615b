#!/usr/bin/python3
"""Add ONNX exports for the family models that have none (testdata/family/).

Run:  /usr/bin/python3 bench/family/export_onnx.py [--check]
      (from the repo root, after make_family.py and extend_family.py; seconds)

make_family.py exports each of its models to ONNX; extend_family.py's models
(digits-mlp-ft4, ...) have safetensors and ref/ files only. For every model of
family.json without an "onnx" file (and, on a rerun, every model whose ONNX this
script wrote: "onnx_added_by"), this script

  * loads <model>.safetensors strictly into the family's torch module
    (eval_family.load_model, i.e. make_family.py's DigitsMLP / DigitsCNN /
    TextTiny classes),
  * exports it with make_family.py's own onnx_bytes(): torch.onnx.export,
    opset 13, input `input` (digits) / `tokens` (text), output `logits`,
    dynamic axis `batch` on both, do_constant_folding=True, eval mode,
  * checks the export: onnx.checker; same graph as the family base's ONNX
    (nodes, inputs, outputs, initializer names/types/shapes; only initializer
    values differ); and check_family.py's numpy interpreter on
    ref/<model>.input.npy reproduces ref/<model>.output.npy within 1e-5
    relative L2,
  * writes testdata/family/<model>.onnx and records it in family.json (the
    model's files.onnx plus "onnx_added_by", and the file list with size and
    sha256) and README.md (a paragraph and the file table).

Before that, every ONNX file make_family.py wrote is exported again the same
way from its model's safetensors and must come out byte-identical: the recipe
here is make_family.py's. The export's dummy input is ref/<model>.input.npy[:2]
(make_family.py used other held-out samples of the same shape; the traced graph
does not depend on the values, which that byte-identity check confirms).

--check writes nothing and exits 1 unless every export is byte-identical to the
committed file and family.json / README.md are up to date.

Rerunning extend_family.py rewrites family.json and README.md without these
entries: run this script again afterwards.
"""

import argparse
import hashlib
import json
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
T0 = time.time()

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import torch  # noqa: E402

import make_family as mf  # noqa: E402  (definitions only; main() is not run)
import eval_family as ev  # noqa: E402
import check_family as cf  # noqa: E402  (numpy ONNX interpreter; main() is not run)

torch.set_num_threads(2)
torch.use_deterministic_algorithms(True)

OUT = ev.FAMILY_DIR
ME = "bench/family/export_onnx.py"
IN_NAME = {"digits-mlp": "input", "digits-cnn": "input", "text-tiny": "tokens"}
OUT_NAME = "logits"
TOL = 1e-5          # relative L2 of the interpreter's output vs ref/<model>.output.npy


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def export(m):
    """the ONNX bytes of model entry m, exported from its safetensors."""
    family = m["family"]
    model = ev.load_model(family, os.path.join(OUT, m["files"]["safetensors"]))
    x = torch.from_numpy(np.load(os.path.join(OUT, m["ref"]["input"])))
    return mf.onnx_bytes(model, x[:2], IN_NAME[family], OUT_NAME)


def graph_signature(model):
    """the graph without initializer values."""
    g = onnx.GraphProto()
    g.CopyFrom(model.graph)
    for t in g.initializer:
        t.ClearField("raw_data")
        for f in ("float_data", "int32_data", "int64_data", "double_data", "uint64_data"):
            t.ClearField(f)
    return (model.ir_version, list(model.opset_import), model.producer_name,
            model.producer_version, g.SerializeToString())


def check_export(m, data, base_sig):
    """onnx.checker, graph equal to the base's, numpy interpreter vs ref.
    Returns (relative L2 error, max abs error)."""
    name = m["name"]
    model = onnx.load_model_from_string(data)
    onnx.checker.check_model(model)
    if base_sig is not None and graph_signature(model) != base_sig:
        sys.exit("%s: exported graph differs from %s-base.onnx beyond initializer values"
                 % (name, m["family"]))
    x = np.load(os.path.join(OUT, m["ref"]["input"]))
    y = np.load(os.path.join(OUT, m["ref"]["output"])).astype(np.float64)
    got = cf.run_onnx(model, {model.graph.input[0].name: x})[0]
    if got.shape != y.shape:
        sys.exit("%s: ONNX output shape %s, ref %s" % (name, got.shape, y.shape))
    d = got.astype(np.float64) - y
    rel = float(np.linalg.norm(d) / np.linalg.norm(y))
    if not rel <= TOL:
        sys.exit("%s: ONNX output differs from ref/%s.output.npy: relative L2 %.3g > %g"
                 % (name, name, rel, TOL))
    return rel, float(np.abs(d).max())


def human(n):
    return mf.human(n)


def readme_text(text, fam, files):
    """README.md with this script's paragraph and an updated file table."""
    text = text.replace(
        "These have safetensors\nand `ref/` files only, no ONNX. family.json marks them with\n",
        "These have safetensors\nand `ref/` files; their ONNX files come from export_onnx.py "
        "(below).\nfamily.json marks them with\n")
    section_head = "## ONNX exports added by `bench/family/export_onnx.py`\n"
    rows = "\n".join("| `%s` | %s |" % (m["name"], m["role"]) for m in fam["models"]
                     if m.get("onnx_added_by") == ME)
    section = section_head + """
`/usr/bin/python3 bench/family/export_onnx.py` (run after extend_family.py, whose
rewrite of family.json and this file drops these entries) exports every model
that make_family.py did not export to `<model>.onnx`, from its safetensors,
exactly as make_family.py exports its models (its `onnx_bytes`: opset 13,
dynamic axis `batch`, `do_constant_folding=True`, eval mode), after checking
that this recipe reproduces make_family.py's own ONNX files byte for byte.
Each export passes onnx.checker, has the family base's graph (only initializer
values differ), and reproduces `ref/<model>.output.npy` through
check_family.py's numpy interpreter within 1e-5 relative L2. family.json marks
these models with `"onnx_added_by": "bench/family/export_onnx.py"`. Rerunning
the script rewrites the same bytes (`--check` verifies without writing).

| model | role |
|---|---|
%s

""" % rows
    marker = "Check with `"
    if section_head in text:
        i = text.index(section_head)
        j = text.index(marker, i)
        text = text[:i] + section + text[j:]
    else:
        i = text.index(marker)
        text = text[:i] + section + text[i:]
    text = text.replace(
        "ONNX outputs vs `ref/` through a small numpy interpreter; models without ONNX\n"
        "are run through their family base's ONNX graph with their own weights swapped in).",
        "ONNX outputs vs `ref/` through a small numpy interpreter; every model but\n"
        "the bases is also run through its family base's ONNX graph with its own\n"
        "weights swapped in).")
    table_head = "| file | size |\n|---|---|\n"
    i = text.index(table_head) + len(table_head)
    table = "\n".join("| `%s` | %s |" % (e["path"], human(e["size"])) for e in files
                      if not e["path"].startswith("ref/"))
    return text[:i] + table + "\n"


def main():
    ap = argparse.ArgumentParser(description="Add ONNX exports for the family models "
                                             "that have none.")
    ap.add_argument("--check", action="store_true",
                    help="write nothing; exit 1 unless everything is up to date")
    args = ap.parse_args()

    fj = os.path.join(OUT, "family.json")
    with open(fj) as f:
        fam_text = f.read()
    fam = json.loads(fam_text)
    files = {e["path"]: e for e in fam["files"]}

    # 1. the recipe reproduces make_family.py's exports byte for byte
    base_sig = {}
    nsame = 0
    for m in fam["models"]:
        if "onnx" not in m["files"] or m.get("onnx_added_by") == ME:
            continue
        p = os.path.join(OUT, m["files"]["onnx"])
        with open(p, "rb") as f:
            want = f.read()
        got = export(m)
        if got != want:
            sys.exit("%s: exporting %s again gives other bytes (%d vs %d): this torch/onnx "
                     "does not reproduce make_family.py's export"
                     % (m["name"], m["files"]["safetensors"], len(got), len(want)))
        if m["role"] == "base":
            base_sig[m["family"]] = graph_signature(onnx.load_model_from_string(want))
        nsame += 1
    print("%d ONNX files of make_family.py exported again from their safetensors: "
          "byte-identical" % nsame)

    # 2. export the models without ONNX (and the ones this script exported before)
    todo = [m for m in fam["models"]
            if "onnx" not in m["files"] or m.get("onnx_added_by") == ME]
    stale, results = [], []
    print("%-18s %-10s %10s  %-9s %-9s  %s" % ("model", "role", "bytes", "rel L2", "max abs",
                                              "file"))
    for m in todo:            # export and check everything before writing anything
        name = m["name"]
        fn = name + ".onnx"
        data = export(m)
        if export(m) != data:
            sys.exit("%s: two exports in a row differ" % name)
        rel, mx = check_export(m, data, base_sig.get(m["family"]))
        p = os.path.join(OUT, fn)
        old = open(p, "rb").read() if os.path.exists(p) else None
        state = "unchanged" if old == data else ("new" if old is None else "CHANGED")
        if state != "unchanged":
            stale.append(fn)
        results.append((p, data, state))
        print("%-18s %-10s %10d  %.3e %.3e  %s (%s)" % (name, m["role"], len(data), rel, mx,
                                                       fn, state))
        m["files"]["onnx"] = fn
        m["onnx_added_by"] = ME
        files[fn] = {"path": fn, "size": len(data), "sha256": sha256(data)}
    if not args.check:
        for p, data, state in results:
            if state != "unchanged":
                with open(p + ".tmp", "wb") as f:
                    f.write(data)
                os.replace(p + ".tmp", p)

    # 3. family.json and README.md
    fam["files"] = sorted(files.values(), key=lambda e: e["path"])
    out_text = json.dumps(fam, indent=2) + "\n"
    rp = os.path.join(OUT, "README.md")
    with open(rp) as f:
        readme = f.read()
    new_readme = readme_text(readme, fam, fam["files"])
    for path, old, new in ((fj, fam_text, out_text), (rp, readme, new_readme)):
        if old != new:
            stale.append(os.path.basename(path))
            if not args.check:
                with open(path + ".tmp", "w") as f:
                    f.write(new)
                os.replace(path + ".tmp", path)
    if args.check:
        if stale:
            print("not up to date: %s" % " ".join(stale))
            sys.exit(1)
        print("%d exports byte-identical to the committed files; family.json and README.md "
              "up to date" % len(todo))
    else:
        print("%d models exported; written: %s" % (len(todo), " ".join(stale) or "nothing "
                                                   "(all byte-identical)"))
    print("runtime: %.1fs" % (time.time() - T0))


if __name__ == "__main__":
    main()
