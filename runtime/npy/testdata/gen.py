#!/usr/bin/python3
"""Write the .npy fixtures of runtime/npy's tests with NumPy itself.

Run:  /usr/bin/python3 runtime/npy/testdata/gen.py   (from the repo root)

Every *.npy here is written by numpy (np.save, or np.lib.format.write_array
for an explicit format version); manifest.json says, per file, what Read must
return (dtype, shape, little-endian C-order data in hex) or which error text it
must contain, and whether Write must reproduce the file byte for byte (true for
the files np.save wrote from little-endian C-order arrays). Deterministic: the
same numpy version rewrites the same bytes.
"""

import io
import json
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
MANIFEST = []

# numpy dtype -> the name of the graph.DType Read must return
GO_DTYPE = {"f2": "F16", "f4": "F32", "f8": "F64", "i1": "I8", "i2": "I16", "i4": "I32",
            "i8": "I64", "u1": "U8", "u2": "U16", "u4": "U32", "u8": "U64", "b1": "BOOL"}


def save(name, a, version=None):
    path = os.path.join(HERE, name)
    with open(path, "wb") as f:
        if version is None:
            np.save(f, a, allow_pickle=False)
        else:
            np.lib.format.write_array(f, a, version=version, allow_pickle=False)
    return path


def ok(name, a, version=None, identical=True, note=""):
    """a file Read accepts; identical: Write reproduces it byte for byte."""
    save(name, a, version)
    a = np.asarray(a)
    le = a.astype(a.dtype.newbyteorder("<"), order="C")
    key = a.dtype.kind + str(a.dtype.itemsize)
    MANIFEST.append({"file": name, "dtype": GO_DTYPE[key], "shape": list(a.shape),
                     "data": np.ascontiguousarray(le).tobytes().hex(),
                     "identical": identical, "note": note})


def bad(name, a, want, allow_pickle=False, note=""):
    """a file Read rejects with an error containing want."""
    path = os.path.join(HERE, name)
    with open(path, "wb") as f:
        np.save(f, a, allow_pickle=allow_pickle)
    MANIFEST.append({"file": name, "error": want, "note": note})


def main():
    for f in os.listdir(HERE):
        if f.endswith(".npy"):
            os.remove(os.path.join(HERE, f))

    # every dtype, shape (2, 3), distinct values (negative ones for signed types)
    base = np.arange(6).reshape(2, 3)
    for dt in ("<f2", "<f4", "<f8", "|i1", "<i2", "<i4", "<i8", "|u1", "<u2", "<u4", "<u8"):
        v = base - 2 if dt[1] in "if" else base * 37
        if dt[1] == "f":
            v = v * 0.75
        ok("%s_2x3.npy" % dt[1:], v.astype(dt))
    ok("b1_2x3.npy", np.array([[True, False, True], [False, False, True]]))
    # special float values
    ok("f4_special.npy", np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, 3.4e38],
                                  dtype="<f4"))
    # scalars, 1-D, empty, many dims
    ok("f8_scalar.npy", np.array(3.5))
    ok("i8_scalar.npy", np.array(-7, dtype="<i8"))
    ok("b1_scalar.npy", np.array(True))
    ok("f4_1d.npy", np.arange(5, dtype="<f4"))
    ok("f4_empty_0x3.npy", np.zeros((0, 3), dtype="<f4"))
    ok("i4_empty_0.npy", np.zeros((0,), dtype="<i4"))
    ok("u1_8d.npy", np.arange(2 * 3 * 1 * 2 * 1 * 1 * 2 * 1, dtype="u1").reshape(2, 3, 1, 2, 1, 1, 2, 1))
    ok("f4_big_dim.npy", np.zeros((123456789012, 0), dtype="<f4"),
       note="growth padding depends on the first dimension only")
    # a header whose length is already a multiple of 64: numpy pads 64 spaces
    for shape in [(0,) + (1,) * n + (10 ** k,) for n in range(30) for k in range(19)]:
        a = np.zeros(shape, dtype="<f4")
        buf = io.BytesIO()
        np.save(buf, a)
        data = buf.getvalue()
        hlen = int.from_bytes(data[8:10], "little")
        header = data[10:10 + hlen]
        growth = 21 - len(repr(shape[0]))
        if len(header) - len(header.rstrip(b" \n")) - 1 == growth + 64:
            ok("pad64.npy", a, note="header + growth padding already 64-aligned: 64 spaces")
            break
    else:
        raise SystemExit("no shape gives a 64-aligned header")
    # big-endian input (Read converts to little-endian; Write writes '<')
    for dt in (">f2", ">f4", ">f8", ">i2", ">i4", ">i8", ">u2", ">u4", ">u8"):
        v = base - 2 if dt[1] in "if" else base * 1000 + 1
        ok("be_%s_2x3.npy" % dt[1:], v.astype(dt), identical=False)
    # format versions 2.0 and 3.0 (written explicitly; np.save would pick 1.0)
    ok("v2_f4_2x3.npy", (base * 0.5).astype("<f4"), version=(2, 0), identical=False)
    ok("v3_i2_2x3.npy", base.astype("<i2"), version=(3, 0), identical=False)
    # rejected
    bad("fortran_f4_2x3.npy", np.asfortranarray(base.astype("<f4")), "Fortran-order")
    bad("object.npy", np.array([1, "a", None], dtype=object), "'|O'", allow_pickle=True)
    bad("str_U2.npy", np.array(["ab", "c"]), "'<U2'")
    bad("bytes_S3.npy", np.array([b"abc", b"d"]), "'|S3'")
    bad("structured.npy", np.zeros(2, dtype=[("a", "<i4"), ("b", "<f4")]), "[('a', '<i4')")
    bad("void_V2.npy", np.zeros(2, dtype="V2"), "'|V2'")
    bad("complex_c8.npy", np.zeros(2, dtype="<c8"), "'<c8'")
    bad("datetime_M8.npy", np.zeros(2, dtype="<M8[s]"), "'<M8[s]'")
    bad("longdouble.npy", np.zeros(2, dtype=np.longdouble), "'<f16'")

    with open(os.path.join(HERE, "manifest.json"), "w") as f:
        json.dump({"numpy": np.__version__, "files": MANIFEST}, f, indent=1)
        f.write("\n")
    print("%d fixtures, numpy %s" % (len(MANIFEST), np.__version__))


if __name__ == "__main__":
    main()
