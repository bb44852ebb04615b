// Package store is NeurStore's storage engine: it keeps models tensor by tensor in an
// ordered key-value backend (Pebble, embedded, by default), deduplicates tensors by
// content, and never lets a reader see half a model.
//
// # Data model
//
// A model (name:tag) is a manifest: its ordered tensor list (name, dtype, shape,
// tensor id), import parameters, lineage and metadata, plus its architecture (graph)
// blob. A tensor record describes one stored tensor value: its encoding, dtype, shape
// and the pages holding its payload. Records are keyed by the SHA-256 of the tensor's
// dtype, shape and bytes (the tensor id), so a value already stored is never stored
// again, inside one model or across models. A record counts its references (refs);
// it lives while a manifest or a delta refers to it. A delta record names its base
// record, which is a base or a delta of the same kind: a chain, at most maxChain
// deep (codec.go), such as a run's checkpoints as grid deltas each against the one
// before, or a fine-tune's norm as a bit delta against its base's norm, itself a
// bit delta against another layer's.
//
// # Key layout (part of the format; do not change)
//
//	"F"                             -> store format version (1 byte)
//	"N"                             -> next free blob number (uvarint), reserved ahead
//	"m" <name:tag>                  -> manifest (see manifest.go)
//	"g" <name:tag>                  -> graph blob (raw bytes)
//	"t" <tensor id, 32 bytes>       -> tensor record (see record.go)
//	"p" <blob, 8 bytes BE> <page, 4 bytes BE>
//	                                -> page: crc32c(payload) (4 bytes LE) | payload
//
// Pages of one tensor share a blob number, so they are adjacent in key order and a
// single range deletion removes them.
//
// # Memory
//
// Reading a tensor streams: pages are decoded chunk by chunk (payloads are chunk
// containers, codec.go), and a delta pulls its base's chunks beside its own, down
// a chain too, so a decode holds a few chunks. Import holds a float tensor whole
// while the dedup engine encodes it (dedup.go; about 6-7 times its f32 size at
// the peak); float tensors above maxDedupBytes (1 GiB) stream instead, encoded
// chunk by chunk as they are read (stream.go). A store also keeps, between
// imports, 16-bit copies of the grid codes of bases it has decoded twice, up to
// 256 MiB (codecache.go), so that the fine-tunes of one base imported by one
// process do not each decode it again.
//
// # Writes and crashes
//
// An import first writes the pages of its new tensors, under freshly reserved blob
// numbers, as bulk-loaded tables (Backend.NewLoader: no log copy, one write of each
// byte), and then commits, in one synced batch, the new tensor records, the updated
// refcounts, the graph and the manifest. A crash before that commit leaves only pages
// that no record refers to: readers cannot reach them, Verify reports them as
// orphans, and GC deletes them. A failed import deletes its own pages before it
// returns.
//
// store must never modify a model in place: a manifest is replaced only by a whole new
// one in a single batch, and a page is never rewritten once a record refers to it.
package store
