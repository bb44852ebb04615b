// Package graph reads and writes model files and describes what a model is made of:
// its architecture and its ordered list of tensors.
//
// It understands safetensors (single files and sharded Hugging Face folders) and ONNX
// (initializers inline or in external-data files). Readers stream: they parse headers
// and hand out readers over each tensor's bytes, so a multi-GB file is never loaded into
// memory. Writers stream too: tensor bytes come from a callback, one tensor at a time.
// The store keeps an ONNX model's architecture as a blob: the ModelProto with its
// initializers' data taken out (see onnx.go).
//
// The model IR (ir.go) is what the runtime executes: a Graph of Nodes in topological
// order, with initializers, constants and the type of every value. ParseModel builds
// it from an .onnx file or an architecture blob (OpenModel from a path, reading
// external data), ParseTensorProto reads the tensors of ONNX test cases, Check lists
// the ops the runtime lacks (Ops lists those it has), Infer works out every value's
// element type and shape (with symbolic dims such as "batch"), Fold evaluates
// the shape arithmetic of exported models once, at load time, and Fuse turns the
// decomposed LayerNormalization and Gelu chains of older exports into one node
// each.
//
// graph must never touch the store: it knows files, not databases.
package graph
