// Package quant turns float32 tensors into compact integer codes and bytes and back.
//
// It is the numeric core under the store: the store picks a base tensor, asks quant
// for the codes of the new tensor and of the delta against the base, and keeps the
// encoded bytes quant returns. quant knows nothing about catalogs, pages or models.
//
// What it offers:
//
//   - Error-bounded grid quantization (grid.go): for tau > 0 every value is mapped to
//     the integer code q = round(w / (2 tau)) and reconstructed as
//     float32(float64(q) * 2 tau). Elements whose float32 reconstruction would leave
//     the bound, and NaN / Inf / huge values, are kept exactly as exceptions. Bases
//     and deltas live on the same grid, so a delta is an integer difference of codes
//     and base + delta is integer addition: chains never accumulate error.
//   - Encodings of codes (encode.go, entropy.go, pack.go): zig-zag, fixed-width bit
//     packing with an escape list, byte planes entropy coded with huff0 / FSE / zstd
//     (github.com/klauspost/compress), whichever is smallest, in a self-describing
//     blob; for matrices, optionally with codes of similar spread coded in classes
//     of row and column octiles (cells.go: EncodeRows; rows.go's row groups are
//     only read); and a fixed-width Packed form for compute kernels.
//   - Low-rank prediction of a matrix of delta codes (lowrank.go: Fit,
//     LowRankFit.Round, LowRank): integer factors whose exact integer product the
//     store subtracts before coding and adds back after decoding, for deltas close
//     to low rank (merged LoRA adapters, fine-tunes' output heads).
//   - The paper's rule (paper.go): per-tensor min-max 8-bit base plus a min-max
//     b-bit delta, kept only as a baseline to compare against. Its error reaches
//     about 2 tau; never use it to store data.
//   - Lossless codecs for tau = 0 (lossless.go): byte planes of the raw values, or of
//     the XOR against a base, entropy coded; bit-exact for any bytes.
//   - Half precision (half.go): exact f16 / bf16 <-> float32 conversions (round to
//     nearest even) and little-endian slice helpers.
//   - Target-aware quantization (target.go): QuantizeFor keeps the bound after the
//     reconstruction is rounded to the tensor's own f16 / bf16 type, and
//     DequantizeFor applies that rounding.
//   - A per-group packed form for compute kernels (group.go): a zero point per group
//     of elements, codes at 1..8 or 16 bits, rare outliers as exceptions, built from
//     Codes or straight from an Encode blob.
//
// What it must never do:
//
//   - import the store, graph or any other NeurStore package above it (the
//     dependency points store -> quant);
//   - return a reconstruction that leaves the bound: for tau > 0 every element of
//     Dequantize satisfies |float64(w') - float64(w)| <= tau, after the final
//     rounding to float32, for every input (NaN and Inf come back bit for bit);
//     for QuantizeFor's codes the same holds after the rounding to the target, for
//     every input the target represents exactly;
//   - panic or allocate without bound on corrupt input: every decoder checks each
//     length against the input size and a caller-given maximum element count.
package quant
