// Package hnsw is NeurStore's approximate nearest-neighbour index over tensors.
//
// NeurStore stores a new tensor as a delta against the most similar stored base tensor
// of the same element count. This package finds that base: one Index per element count
// D holds the bases as nodes of a Hierarchical Navigable Small World graph (Malkov &
// Yashunin, "Efficient and robust approximate nearest neighbor search using
// Hierarchical Navigable Small World graphs", 2016/2018), and Search returns the
// approximate nearest bases of a query tensor by squared L2 distance.
//
// Nodes keep only a compact form of their tensor: 8-bit min-max codes with a
// per-vector scale and zero point and precomputed code sums, so that the distance of
// two dequantized vectors needs one integer dot product of codes (see compact.go).
// Above SketchThreshold elements a node keeps the codes of a fixed, seeded subsample
// of positions instead (a sketch), which bounds memory and distance cost. Callers who
// need exact distances pass the candidates to Rerank together with a function that
// reads the full vectors from wherever they live.
//
// Persistence belongs to the caller: Insert reports which nodes changed, MarshalNode
// encodes one node (the layout is documented in record.go and is part of the on-disk
// format), and Load rebuilds an index from records.
//
// Rules this package must keep:
//   - it never imports store or any other NeurStore package (dependencies point
//     store -> hnsw, never back);
//   - it never holds fp32 copies of indexed vectors: only compact codes.
package hnsw
