#!/usr/bin/python3
"""Generate the ONNX backend node conformance cases NeurStore's runtime runs.

Run:  /usr/bin/python3 bench/conformance/generate.py OUTDIR [--quiet]

Collects onnx's backend node test cases (onnx.backend.test.case.node, the code
behind `python3 -m onnx.backend.test.cmd_tools generate-data`) from Debian's
python3-onnx, keeps the cases whose graph uses only operators from SUPPORTED
(default domain) and only plain tensors of non-string types, and whose test
data has the shapes the graph declares, and writes each kept case the way
generate-data does, but flat (and with bfloat16 data labeled BFLOAT16, see
tensor_pb):

  OUTDIR/<case>/model.onnx
  OUTDIR/<case>/test_data_set_0/input_<j>.pb, output_<j>.pb   (TensorProto)

OUTDIR is wiped first (the script refuses if it holds anything but case
folders) and then holds nothing but the cases; a summary (kept, dropped
by reason, dropped by operator) is printed to stdout.

The onnx test generators seed numpy before every export function, so the
output is the same on every run (same onnx and numpy versions).
"""

import argparse
import collections
import os
import shutil
import sys
import warnings

import numpy as np

# onnx 1.12's case generators still use the aliases numpy 1.24 removed
# (np.float, np.int, np.bool, np.object): set them back to the builtins.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")     # hasattr(np, "bool") warns on numpy 1.24
    for _name, _typ in (("float", float), ("int", int), ("bool", bool), ("object", object)):
        if not hasattr(np, _name):
            setattr(np, _name, _typ)

import onnx  # noqa: E402
from onnx import numpy_helper  # noqa: E402
import onnx.backend.test.case.node as node_test  # noqa: E402

# Operators of the default ONNX domain the runtime implements.
SUPPORTED = frozenset("""
Abs Add And ArgMax ArgMin AveragePool BatchNormalization Cast CastLike Ceil Clip
Concat Constant ConstantOfShape Conv Cos Div Dropout Elu Equal Erf Exp Expand
Flatten Floor Gather Gelu Gemm GlobalAveragePool GlobalMaxPool Greater
GreaterOrEqual HardSigmoid HardSwish Identity LayerNormalization LeakyRelu Less
LessOrEqual Log LogSoftmax MatMul Max MaxPool Mean Min Mod Mul Neg Not Or Pow
Range Reciprocal ReduceL2 ReduceLogSumExp ReduceMax ReduceMean ReduceMin
ReduceProd ReduceSum ReduceSumSquare Relu Reshape Round Shape Sigmoid Sign Sin
Size Slice Softmax Softplus Split Sqrt Squeeze Sub Sum Tanh Tile Transpose Trilu
Unsqueeze Where Xor
""".split())

DEFAULT_DOMAINS = ("", "ai.onnx")


def graph_nodes(graph):
    """every node of graph, including nodes of subgraphs in attributes."""
    for n in graph.node:
        yield n
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                yield from graph_nodes(a.g)
            elif a.type == onnx.AttributeProto.GRAPHS:
                for g in a.graphs:
                    yield from graph_nodes(g)


def type_problem(tp):
    """why a TypeProto is not a plain non-string tensor, or None."""
    kind = tp.WhichOneof("value")
    if kind == "tensor_type":
        if tp.tensor_type.elem_type == onnx.TensorProto.STRING:
            return "string tensors"
        return None
    if kind is None:
        return None            # omitted optional input (empty TypeProto)
    return {"sequence_type": "sequence types", "optional_type": "optional types",
            "map_type": "map types", "sparse_tensor_type": "sparse tensors"}.get(kind, kind)


def classify(case):
    """(reason, detail) why case is dropped, or None to keep it."""
    g = case.model.graph
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        why = type_problem(vi.type)
        if why:
            return why, vi.name
    for t in g.initializer:
        if t.data_type == onnx.TensorProto.STRING:
            return "string tensors", t.name
    if len(g.sparse_initializer):
        return "sparse tensors", g.name
    nodes = list(graph_nodes(g))
    for n in nodes:
        if n.domain not in DEFAULT_DOMAINS:
            return "non-default domain", n.domain
    for n in nodes:
        for a in n.attribute:
            if a.type in (onnx.AttributeProto.SPARSE_TENSOR, onnx.AttributeProto.SPARSE_TENSORS):
                return "sparse tensors", n.op_type
            if a.type == onnx.AttributeProto.TENSOR and a.t.data_type == onnx.TensorProto.STRING:
                return "string tensors", n.op_type
            if a.type == onnx.AttributeProto.STRINGS and n.op_type == "Constant":
                return "string tensors", n.op_type
    outside = sorted({n.op_type for n in nodes if n.op_type not in SUPPORTED})
    if outside:
        if case.name.endswith("_expanded"):
            return "expanded function uses unsupported ops", " ".join(outside)
        return "op not supported", " ".join(outside)
    for inputs, outputs in case.data_sets:
        for vals, vis in ((inputs, g.input), (outputs, g.output)):
            for v, vi in zip(vals, vis):
                dims = vi.type.tensor_type.shape.dim
                want = [d.dim_value if d.HasField("dim_value") else None for d in dims]
                shape = list(np.shape(v))
                if vi.type.tensor_type.HasField("shape") and (
                        len(want) != len(shape) or
                        any(w is not None and w != s for w, s in zip(want, shape))):
                    return "test data shape contradicts the graph", "%s %s, graph %s" % (
                        vi.name, shape, want)
    return None


RELABELED = []   # (case, tensor name): bfloat16 data relabeled, see tensor_pb


def tensor_pb(case, value, vi):
    """the TensorProto generate-data writes for a tensor input or output, except
    that bfloat16 data is labeled BFLOAT16: numpy has no bfloat16, so onnx 1.12's
    cases hold bfloat16 bits in uint16 arrays, which from_array labels UINT16
    although the graph declares BFLOAT16. The bytes stay as they are."""
    t = numpy_helper.from_array(value, vi.name)
    declared = vi.type.tensor_type.elem_type
    if t.data_type != declared:
        if not (declared == onnx.TensorProto.BFLOAT16 and t.data_type == onnx.TensorProto.UINT16
                and t.HasField("raw_data")):
            sys.exit("%s: %s holds %s data, the graph declares %s" % (
                case.name, vi.name, onnx.TensorProto.DataType.Name(t.data_type),
                onnx.TensorProto.DataType.Name(declared)))
        t.data_type = onnx.TensorProto.BFLOAT16
        RELABELED.append((case.name, vi.name))
    return t.SerializeToString()


def write_case(outdir, case):
    d = os.path.join(outdir, case.name)
    os.makedirs(d)
    with open(os.path.join(d, "model.onnx"), "wb") as f:
        f.write(case.model.SerializeToString())
    for i, (inputs, outputs) in enumerate(case.data_sets):
        ds = os.path.join(d, "test_data_set_%d" % i)
        os.makedirs(ds)
        for j, x in enumerate(inputs):
            with open(os.path.join(ds, "input_%d.pb" % j), "wb") as f:
                f.write(tensor_pb(case, x, case.model.graph.input[j]))
        for j, y in enumerate(outputs):
            with open(os.path.join(ds, "output_%d.pb" % j), "wb") as f:
                f.write(tensor_pb(case, y, case.model.graph.output[j]))


def dir_size(path):
    total = nfiles = 0
    for root, _, fns in os.walk(path):
        for fn in fns:
            total += os.path.getsize(os.path.join(root, fn))
            nfiles += 1
    return total, nfiles


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--quiet", action="store_true", help="print the counts only, not the dropped cases and ops")
    args = ap.parse_args()

    collected = node_test.collect_testcases(None)
    # A few names are defined twice (onnx 1.12: test_reduce_sum_negative_axes_
    # keepdims_random, test_resize_tf_crop_and_resize); generate-data writes
    # them to the same folder, so the later one wins. Do the same.
    byname = {}
    for c in collected:
        byname[c.name] = c
    cases = list(byname.values())
    dups = sorted(n for n, k in collections.Counter(c.name for c in collected).items() if k > 1)

    if os.path.exists(args.outdir):
        # wipe only what looks like an earlier output: case folders
        strays = [e for e in os.listdir(args.outdir)
                  if not os.path.isfile(os.path.join(args.outdir, e, "model.onnx"))]
        if strays:
            sys.exit("%s holds other things than test cases (%s): not wiping it"
                     % (args.outdir, " ".join(sorted(strays)[:5])))
        shutil.rmtree(args.outdir)
    os.makedirs(args.outdir)

    kept, dropped = [], collections.defaultdict(list)
    for case in sorted(cases, key=lambda c: c.name):
        why = classify(case)
        if why:
            dropped[why[0]].append((case.name, why[1]))
            continue
        write_case(args.outdir, case)
        kept.append(case)

    ops = collections.Counter()
    for c in kept:
        for n in graph_nodes(c.model.graph):
            ops[n.op_type] += 1
    size, nfiles = dir_size(args.outdir)

    print("onnx %s, numpy %s: %d node test cases (%d defined twice, the later kept: %s)"
          % (onnx.__version__, np.__version__, len(cases), len(dups), " ".join(dups) or "-"))
    print("kept %d cases (%d files, %d bytes = %.2f MB) in %s"
          % (len(kept), nfiles, size, size / 1e6, args.outdir))
    print("  of which %d _expanded function cases"
          % sum(1 for c in kept if c.name.endswith("_expanded")))
    print("  %d bfloat16 inputs/outputs relabeled UINT16 -> BFLOAT16 (same bytes) in %d cases"
          % (len(RELABELED), len({c for c, _ in RELABELED})))
    ndrop = sum(len(v) for v in dropped.values())
    print("dropped %d cases:" % ndrop)
    for why in sorted(dropped, key=lambda k: -len(dropped[k])):
        print("  %-42s %4d" % (why, len(dropped[why])))
    if not args.quiet:
        print("dropped for unsupported ops, by op (number of cases):")
        byop = collections.Counter()
        for why in ("op not supported", "expanded function uses unsupported ops"):
            for _, detail in dropped.get(why, []):
                for op in detail.split():
                    byop[op] += 1
        print("  " + ", ".join("%s %d" % (op, k) for op, k in sorted(byop.items())))
        for why in sorted(dropped):
            if why in ("op not supported", "expanded function uses unsupported ops"):
                continue
            print("dropped for %s: %s" % (why, " ".join(
                "%s (%s)" % (name, detail) if why.startswith("test data") else name
                for name, detail in dropped[why])))
        unused = sorted(SUPPORTED - set(ops))
        print("supported ops with no kept case: %s" % (" ".join(unused) or "none"))


if __name__ == "__main__":
    main()
