// Package runtime runs the models of a store on the CPU, computing on their
// compressed weights.
//
// Load reads a model's ONNX architecture and its tensors from the store and
// plans it: graph.Check (unsupported ops fail here, by name), Fold, Infer, Fuse
// (decomposed LayerNorm and Gelu chains become one op), then one step per node
// with the slots of its inputs and outputs and the point after which each value
// is released. The load mode (Mode) decides what the weights are in memory:
// f32 or f16 values, int8 base codes alone, or, in compressed mode (the default
// for tau > 0 imports), a base's grid codes shared through a BaseCache plus the
// model's own packed delta, which MatMul and Gemm multiply in that form
// (kernels.MatMulPacked). Compressed weights of at most denseWeightElements also
// keep a copy decoded at load, for single-model runs: a weight that small sits
// in cache, where decoding per product costs more than it saves.
//
// A Session runs a Model: Run binds the inputs, runs the steps in order with
// activations from the session's arena, and returns the graph outputs. A
// session is not safe for concurrent use; sessions of one Model are. RunParts
// runs one batch whose rows belong to several fine-tunes of one base (Joinable,
// JoinKey): each weight that differs between them is multiplied per part, with
// the base product shared where that pays (see splitMinBaseBytes).
//
// Ops (op.go and ops_*.go) are plain Go over Tensors, calling kernels for the
// heavy ones; large elementwise work is split over the kernels' threads.
//
// runtime must never write to the store, never change a model's stored
// weights, and never keep a request's tensors after its run returns.
package runtime
