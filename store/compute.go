package store

import (
	"fmt"

	"github.com/neurstore/neurstore/quant"
)

// Access for compressed computation: the runtime keeps a grid delta as it is (its
// codes, packed for the kernels) next to its base's codes on the same grid, and
// never rebuilds the float weights. Reconstruction is then integer addition:
// w = (base code + delta code) * 2 tau, exceptions aside.

// GridDelta is a grid-delta tensor's codes relative to its base, and where the
// base is. For a delta in a chain, Base is the chain's root base and Delta the
// tensor's codes minus the root's.
type GridDelta struct {
	Base  TensorID     // the base record; GridCodes(Base, Tau) gives its codes
	Tau   float64      // the grid is of step 2*Tau
	Delta *quant.Codes // whole tensor: base codes + Delta.Q reconstructs, Delta's exceptions override
}

// GridDelta returns tensor id's delta codes when its record is a grid delta; ok is
// false (and nothing is decoded) for every other encoding.
func (s *Store) GridDelta(id TensorID) (gd *GridDelta, ok bool, err error) {
	rec, err := getRecord(s.be, id)
	if err != nil {
		return nil, false, err
	}
	if rec.Encoding != EncGridDelta {
		return nil, false, nil
	}
	gp, err := decodeGridParams(rec.Params)
	if err != nil {
		return nil, false, fmt.Errorf("tensor %s: %w", id.Short(), err)
	}
	bid, brec, err := loadBase(s.be, id, rec)
	if err != nil {
		return nil, false, err
	}
	n := numel(rec)
	if !brec.Encoding.isDelta() {
		d, err := wholeCodes(n, gp.Tau, func(fn func(*quant.Codes) error) error {
			return gridChunks(s.be, id, rec, false, fn)
		})
		if err != nil {
			return nil, false, err
		}
		return &GridDelta{Base: bid, Tau: gp.Tau, Delta: d}, true, nil
	}
	// A chain: the delta against the chain's root base, which the runtime can
	// share with the root's other deltas: the full codes minus the root's, chunk
	// by chunk.
	root, rrec, _, err := chainRoot(recordGetter(s.be), bid, brec)
	if err != nil {
		return nil, false, err
	}
	next, stop := codeChunkPull(s.be, root, rrec, gp.Tau)
	defer stop()
	d, err := wholeCodes(n, gp.Tau, func(fn func(*quant.Codes) error) error {
		return gridCodeChunks(s.be, id, rec, func(c *quant.Codes) error {
			rc, err := next()
			if err != nil {
				return err
			}
			if c, err = quant.DeltaOver(c, rc); err != nil {
				return corruptf("tensor %s: %v", id.Short(), err)
			}
			return fn(c)
		})
	})
	if err != nil {
		return nil, false, err
	}
	return &GridDelta{Base: root, Tau: gp.Tau, Delta: d}, true, nil
}

// GridBase reports whether tensor id is a base stored on a grid (an EncGrid
// record) and the grid's tau: GridCodes(id, tau) then gives its own codes, which
// reconstruct it exactly (exceptions aside).
func (s *Store) GridBase(id TensorID) (tau float64, ok bool, err error) {
	rec, err := getRecord(s.be, id)
	if err != nil || rec.Encoding != EncGrid {
		return 0, false, err
	}
	gp, err := decodeGridParams(rec.Params)
	if err != nil {
		return 0, false, fmt.Errorf("tensor %s: %w", id.Short(), err)
	}
	return gp.Tau, true, nil
}

// GridCodes returns the codes of float tensor id on the grid of step 2*tau, whole
// tensor: its own codes when it is a grid record of that tau, else its
// reconstruction put on the grid (exactly what a grid delta against it adds to).
func (s *Store) GridCodes(id TensorID, tau float64) (*quant.Codes, error) {
	rec, err := getRecord(s.be, id)
	if err != nil {
		return nil, err
	}
	if rec.Encoding.isDelta() {
		return nil, fmt.Errorf("store: tensor %s is a delta, not a base", id.Short())
	}
	if _, ok := floatTarget(rec.DType); !ok {
		return nil, fmt.Errorf("store: tensor %s of dtype %s has no grid codes", id.Short(), rec.DType)
	}
	return wholeCodes(numel(rec), tau, func(fn func(*quant.Codes) error) error {
		return recordCodes(s.be, id, rec, tau, fn)
	})
}

// wholeCodes gathers the codes of a tensor of n elements, which each gives chunk
// by chunk, into one Codes, without holding the chunks.
func wholeCodes(n int64, tau float64, each func(fn func(*quant.Codes) error) error) (*quant.Codes, error) {
	out := &quant.Codes{Tau: tau, Q: make([]int64, 0, n)}
	err := each(func(c *quant.Codes) error {
		if int64(len(out.Q)+len(c.Q)) > n {
			return corruptf("codes of more than %d elements", n)
		}
		off := uint32(len(out.Q))
		out.Q = append(out.Q, c.Q...)
		for _, e := range c.Exceptions {
			out.Exceptions = append(out.Exceptions, quant.Exception{Index: e.Index + off, Bits: e.Bits})
		}
		return nil
	})
	if err == nil && int64(len(out.Q)) != n {
		err = corruptf("codes of %d elements, want %d", len(out.Q), n)
	}
	return out, err
}
