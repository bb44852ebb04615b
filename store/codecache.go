package store

import (
	"sync"

	"github.com/neurstore/neurstore/quant"
)

// baseCodeBudget bounds the bytes of decoded bases a store keeps between
// imports (grid codes at 2 bytes an element, lossless bases at their own size:
// 256 MiB holds a 134M-element grid base or a 67M-element f32 one).
const baseCodeBudget = 256 << 20

// maxSeenCodes bounds how many once-decoded tensors codeCache remembers.
const maxSeenCodes = 1 << 16

// codeKey names the decoded form of one stored tensor: its grid codes at tau, or
// its bytes (tau 0). Blob numbers are never handed out twice, so a key always
// means the same reconstruction, and thus the same codes on the grid of tau.
type codeKey struct {
	id   TensorID
	blob uint64
	tau  float64
}

// codeCache keeps the decoded bases that imports keep using: the fine-tunes of
// one base, imported one after another by one process (`neurrun import --base B
// ft1 ft2 ...`, or a long-lived caller of Store.Import), each decode the base's
// tensors to subtract them, and decoding is 10-20% of such an import. Grid codes
// are kept as quant.Narrow copies (2 bytes a code; a tensor whose codes do not
// fit is not kept), a lossless base as its bytes. Both from their second decode
// on: a one-model import, which decodes each base once, pays nothing, and fresh
// memory, whose page faults cost about 10 us each on our machines, is filled only
// once a base has shown it is reused. When the budget is spent nothing more is
// kept (the tensors of a model come in the same order every time, and evicting
// the oldest would leave nothing for the next pass to hit).
type codeCache struct {
	mu    sync.Mutex
	seen  map[codeKey]bool
	kept  map[codeKey]keptBase
	bytes int64
	// budget replaces baseCodeBudget where set (tests), hits counts gets that
	// found something
	budget int64
	hits   int
}

// keptBase is one decoded base: grid codes or, lossless, its bytes; n is what
// they take.
type keptBase struct {
	codes []*quant.Narrow
	raw   []byte
	n     int64
}

// get returns what is kept of k (zero if nothing). The caller must not change it.
func (cc *codeCache) get(k codeKey) keptBase {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	kb, ok := cc.kept[k]
	if ok {
		cc.hits++
	}
	return kb
}

// offer is told that grid codes k were decoded to cs, which stay the caller's;
// from the second call for k on it keeps narrow copies of them.
func (cc *codeCache) offer(k codeKey, cs []*quant.Codes) {
	cc.keep(k, func() keptBase {
		ns := make([]*quant.Narrow, len(cs))
		for i, c := range cs {
			if ns[i] = quant.NarrowOf(c); ns[i] == nil {
				return keptBase{}
			}
		}
		return keptBase{codes: ns}
	}, codesBytes(cs))
}

// offerRaw is told that the lossless base k decoded to b; from the second call
// for k on it keeps b itself, which the caller must then no longer change.
func (cc *codeCache) offerRaw(k codeKey, b []byte) {
	cc.keep(k, func() keptBase { return keptBase{raw: b} }, int64(len(b)))
}

// keep notes a decode of k and, from the second one on and within the budget,
// keeps what build returns for it (n bytes; nothing when build gives nothing).
func (cc *codeCache) keep(k codeKey, build func() keptBase, n int64) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if _, ok := cc.kept[k]; ok || !cc.secondLocked(k, n) {
		return
	}
	kb := build()
	if kb.codes == nil && kb.raw == nil {
		return
	}
	if cc.kept == nil {
		cc.kept = map[codeKey]keptBase{}
	}
	kb.n = n
	cc.kept[k] = kb
	cc.bytes += n
}

// codesBytes is what narrow copies of cs take.
func codesBytes(cs []*quant.Codes) int64 {
	var n int64
	for _, c := range cs {
		n += int64(len(c.Q)) * 2
	}
	return n
}

// secondLocked notes a decode of k and reports whether it is the second (or a
// later one) and n more bytes fit the budget.
func (cc *codeCache) secondLocked(k codeKey, n int64) bool {
	if !cc.seen[k] {
		if len(cc.seen) >= maxSeenCodes {
			clear(cc.seen)
		}
		if cc.seen == nil {
			cc.seen = map[codeKey]bool{}
		}
		cc.seen[k] = true
		return false
	}
	budget := cc.budget
	if budget == 0 {
		budget = baseCodeBudget
	}
	return cc.bytes+n <= budget
}

// drop forgets the codes of the tensor kept in blob, whose record is being
// deleted (a miss costs only a decode, so a failed deletion does no harm). Its
// mark in seen stays: blob numbers are not reused.
func (cc *codeCache) drop(blob uint64) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	for k, kb := range cc.kept {
		if k.blob == blob {
			delete(cc.kept, k)
			cc.bytes -= kb.n
		}
	}
}
