// Package graph reads and writes model files and describes what a model is made of:
// its architecture (an opaque graph blob for now) and its ordered list of tensors.
//
// It understands safetensors (single files and sharded Hugging Face folders) and ONNX
// (initializers inline or in external-data files). Readers stream: they parse headers
// and hand out readers over each tensor's bytes, so a multi-GB file is never loaded into
// memory. Writers stream too: tensor bytes come from a callback, one tensor at a time.
//
// graph must never touch the store: it knows files, not databases.
package graph
