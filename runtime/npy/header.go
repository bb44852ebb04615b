package npy

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/neurstore/neurstore/graph"
)

// The header is the repr of a Python dict. It is parsed here as data, never
// evaluated: a literal parser for dicts, tuples, lists, strings, integers and
// the names True, False and None, enough to read every header NumPy writes
// (structured descrs are lists of tuples) and to say what is in the ones this
// package cannot use.

type kind uint8

const (
	kStr kind = iota
	kInt
	kName // True, False, None
	kTuple
	kList
	kDict
)

type value struct {
	kind  kind
	s     string  // kStr: the string; kName: the name
	i     int64   // kInt
	items []value // kTuple, kList; kDict: the values
	keys  []string
	raw   string // the source text of the value
}

type parser struct {
	src   string
	pos   int
	depth int
}

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("npy: header: %s at byte %d of %s", fmt.Sprintf(format, args...), p.pos, clip(p.src))
}

// clip quotes s, shortened to 120 bytes.
func clip(s string) string {
	s = strings.TrimRight(s, " \n")
	if len(s) > 120 {
		return strconv.Quote(s[:120]) + "..."
	}
	return strconv.Quote(s)
}

func (p *parser) space() {
	for p.pos < len(p.src) {
		switch p.src[p.pos] {
		case ' ', '\t', '\n', '\r', '\f', '\v':
			p.pos++
		default:
			return
		}
	}
}

// eat skips space and then c if it is next.
func (p *parser) eat(c byte) bool {
	p.space()
	if p.pos < len(p.src) && p.src[p.pos] == c {
		p.pos++
		return true
	}
	return false
}

func (p *parser) value() (value, error) {
	p.space()
	if p.pos >= len(p.src) {
		return value{}, p.errorf("unexpected end")
	}
	start := p.pos
	var v value
	var err error
	switch c := p.src[p.pos]; {
	case c == '\'' || c == '"':
		v, err = p.str()
	case c == '-' || c == '+' || (c >= '0' && c <= '9'):
		v, err = p.int()
	case c == '(' || c == '[' || c == '{':
		if p.depth++; p.depth > maxNesting {
			return value{}, p.errorf("nested more than %d deep", maxNesting)
		}
		v, err = p.seq(c)
		p.depth--
	case isNameByte(c):
		for p.pos < len(p.src) && isNameByte(p.src[p.pos]) {
			p.pos++
		}
		v = value{kind: kName, s: p.src[start:p.pos]}
		switch v.s {
		case "True", "False", "None":
		default:
			return value{}, p.errorf("unexpected name %q", v.s)
		}
	default:
		return value{}, p.errorf("unexpected %q", c)
	}
	if err != nil {
		return value{}, err
	}
	if v.raw == "" {
		v.raw = p.src[start:p.pos]
	}
	return v, nil
}

func isNameByte(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

// str parses a quoted string; backslash escapes of quotes and backslashes are
// resolved, others kept as written.
func (p *parser) str() (value, error) {
	q := p.src[p.pos]
	p.pos++
	var b strings.Builder
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		switch {
		case c == q:
			p.pos++
			return value{kind: kStr, s: b.String()}, nil
		case c == '\n':
			return value{}, p.errorf("newline in string")
		case c == '\\' && p.pos+1 < len(p.src):
			n := p.src[p.pos+1]
			if n != '\\' && n != '\'' && n != '"' {
				b.WriteByte(c)
			}
			b.WriteByte(n)
			p.pos += 2
		default:
			b.WriteByte(c)
			p.pos++
		}
	}
	return value{}, p.errorf("unterminated string")
}

// int parses a decimal integer, with an optional sign and Python 2's L suffix.
func (p *parser) int() (value, error) {
	start := p.pos
	if c := p.src[p.pos]; c == '-' || c == '+' {
		p.pos++
	}
	digits := p.pos
	for p.pos < len(p.src) && p.src[p.pos] >= '0' && p.src[p.pos] <= '9' {
		p.pos++
	}
	if p.pos == digits {
		return value{}, p.errorf("sign without digits")
	}
	text := p.src[start:p.pos]
	if p.pos < len(p.src) && (p.src[p.pos] == 'L' || p.src[p.pos] == 'l') {
		p.pos++
	}
	n, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		return value{}, p.errorf("integer %s out of range", text)
	}
	return value{kind: kInt, i: n}, nil
}

// seq parses a tuple, list or dict; a parenthesized single value without a
// trailing comma is that value, as in Python.
func (p *parser) seq(open byte) (value, error) {
	start := p.pos
	p.pos++
	closing := map[byte]byte{'(': ')', '[': ']', '{': '}'}[open]
	v := value{kind: map[byte]kind{'(': kTuple, '[': kList, '{': kDict}[open]}
	comma := false
	var seen map[string]bool // dict keys
	for {
		if p.eat(closing) {
			break
		}
		if len(v.items) > 0 && !comma {
			return value{}, p.errorf("expected ',' or %q", closing)
		}
		if open == '{' {
			p.space()
			if p.pos >= len(p.src) || (p.src[p.pos] != '\'' && p.src[p.pos] != '"') {
				return value{}, p.errorf("dict key is not a string")
			}
			k, err := p.str()
			if err != nil {
				return value{}, err
			}
			if seen == nil {
				seen = make(map[string]bool)
			}
			if seen[k.s] {
				return value{}, p.errorf("key %q twice", k.s)
			}
			seen[k.s] = true
			if !p.eat(':') {
				return value{}, p.errorf("expected ':' after key %q", k.s)
			}
			v.keys = append(v.keys, k.s)
		}
		item, err := p.value()
		if err != nil {
			return value{}, err
		}
		v.items = append(v.items, item)
		comma = p.eat(',')
	}
	if open == '(' && len(v.items) == 1 && !comma {
		return v.items[0], nil
	}
	v.raw = p.src[start:p.pos]
	return v, nil
}

func (v value) get(key string) (value, bool) {
	for i, k := range v.keys {
		if k == key {
			return v.items[i], true
		}
	}
	return value{}, false
}

// pyRepr writes s as Python's repr would for plain text: in single quotes.
func pyRepr(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '\'' || c == '\\' {
			return strconv.Quote(s)
		}
	}
	return "'" + s + "'"
}

func clipRaw(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

// parseHeader returns the element type, whether the data must be byte-swapped
// to little-endian, and the shape of the header's array.
func parseHeader(header []byte) (graph.DType, bool, []int, error) {
	p := &parser{src: string(header)}
	top, err := p.value()
	if err != nil {
		return 0, false, nil, err
	}
	p.space()
	if p.pos != len(p.src) {
		return 0, false, nil, p.errorf("text after the dict")
	}
	if top.kind != kDict {
		return 0, false, nil, fmt.Errorf("npy: header is not a dict: %s", clip(p.src))
	}
	for _, k := range top.keys {
		if k != "descr" && k != "fortran_order" && k != "shape" {
			return 0, false, nil, fmt.Errorf("npy: header has unexpected key %s", pyRepr(k))
		}
	}
	descr, ok1 := top.get("descr")
	fortran, ok2 := top.get("fortran_order")
	shapeV, ok3 := top.get("shape")
	if !ok1 || !ok2 || !ok3 {
		return 0, false, nil, fmt.Errorf("npy: header lacks 'descr', 'fortran_order' or 'shape': %s", clip(p.src))
	}

	dt, swap, err := parseDescr(descr)
	if err != nil {
		return 0, false, nil, err
	}
	if shapeV.kind != kTuple {
		return 0, false, nil, fmt.Errorf("npy: shape %s is not a tuple", clipRaw(shapeV.raw))
	}
	if len(shapeV.items) > MaxDims {
		return 0, false, nil, fmt.Errorf("npy: %d dimensions (at most %d)", len(shapeV.items), MaxDims)
	}
	shape := make([]int, len(shapeV.items))
	for i, d := range shapeV.items {
		if d.kind != kInt || d.i < 0 || d.i > math.MaxInt {
			return 0, false, nil, fmt.Errorf("npy: shape %s: dimension %s is not a size", clipRaw(shapeV.raw), clipRaw(d.raw))
		}
		shape[i] = int(d.i)
	}
	if fortran.kind != kName || fortran.s == "None" {
		return 0, false, nil, fmt.Errorf("npy: fortran_order %s is not True or False", clipRaw(fortran.raw))
	}
	if fortran.s == "True" {
		return 0, false, nil, fmt.Errorf("npy: Fortran-order arrays are not supported; save with np.ascontiguousarray (shape %s)", shapeRepr(shape))
	}
	return dt, swap, shape, nil
}

func parseDescr(v value) (graph.DType, bool, error) {
	switch v.kind {
	case kStr:
	case kList:
		return 0, false, fmt.Errorf("npy: structured dtype (descr %s) is not supported", clipRaw(v.raw))
	default:
		return 0, false, fmt.Errorf("npy: descr %s is not a dtype string", clipRaw(v.raw))
	}
	s := v.s
	order, code := byte('='), s
	if s != "" && strings.IndexByte("<>|=", s[0]) >= 0 {
		order, code = s[0], s[1:]
	}
	if dt, ok := kinds[code]; ok {
		swap := dt.Size() > 1 && (order == '>' || (order != '<' && !nativeLittle))
		return dt, swap, nil
	}
	what := "unsupported element type"
	if code != "" {
		switch code[0] {
		case 'O':
			return 0, false, fmt.Errorf("npy: object arrays (descr %s) are not supported: their data is a pickle", pyRepr(s))
		case 'U', 'S', 'a':
			what = "string arrays are not supported"
		case 'V':
			what = "raw bytes (void) are not supported; bfloat16 is not a NumPy type, so a bfloat16 array saved through a NumPy extension has this descr"
		case 'c':
			what = "complex numbers are not supported"
		case 'M', 'm':
			what = "datetimes are not supported"
		case 'f':
			what = "only float16, float32 and float64 are supported"
		}
	}
	return 0, false, fmt.Errorf("npy: descr %s: %s", pyRepr(s), what)
}
