package store

import "github.com/neurstore/neurstore/quant"

// baseCodesBudget is how many codes (8 bytes each) the base code cache holds:
// 64 MiB, the bases of a family of small models (text-medium's base is 1.9M
// codes), while a tensor of a large model, over a quarter of it, is not kept.
const baseCodesBudget = 8 << 20

// codeCache keeps the grid codes of the tensors an import compared against, so
// that the next fine-tune of the same base, imported by the same process, does
// not decode them again (a tenth of such an import). Keys are content ids, so
// an entry never goes stale: a tensor id and tau always give the same codes.
// The cache's codes are never written to nor released. Guarded by Store.mu.
type codeCache struct {
	used  int
	byKey map[codeKey][]*quant.Codes
	order []codeKey // oldest first
}

type codeKey struct {
	id  TensorID
	tau float64
}

// get returns the cached codes of k, or nil.
func (cc *codeCache) get(k codeKey) []*quant.Codes { return cc.byKey[k] }

// put keeps cs under k, dropping the oldest entries to stay within budget, and
// reports whether it did (a tensor over a quarter of the budget is not kept).
func (cc *codeCache) put(k codeKey, cs []*quant.Codes) bool {
	n := 0
	for _, c := range cs {
		n += len(c.Q)
	}
	if n > baseCodesBudget/4 || cc.byKey[k] != nil {
		return false
	}
	if cc.byKey == nil {
		cc.byKey = map[codeKey][]*quant.Codes{}
	}
	for cc.used+n > baseCodesBudget && len(cc.order) > 0 {
		old := cc.order[0]
		cc.order = cc.order[1:]
		for _, c := range cc.byKey[old] {
			cc.used -= len(c.Q)
		}
		delete(cc.byKey, old)
	}
	cc.byKey[k] = cs
	cc.order = append(cc.order, k)
	cc.used += n
	return true
}
