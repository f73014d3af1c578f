package config

import (
	"fmt"
	"math"
	"net/netip"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// The decoder walks yaml.Node trees instead of using yaml.Unmarshal so that
// it can (1) report every problem at once with its path and line, (2) be
// strict in healthmesh's sections and lenient in DPVS's, and (3) read DPVS
// spellings yaml.v3 would refuse (bare-integer durations, yes/no booleans).

// nodeDecoder is implemented by types with their own YAML spelling.
type nodeDecoder interface {
	decodeNode(p *parser, n *yaml.Node, path string)
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	addrType     = reflect.TypeFor[netip.Addr]()
)

// maxDepth bounds how deep value nests, against self-referencing aliases
// (the configuration itself is at most six levels deep).
const maxDepth = 32

// pair is one key/value of a mapping.
type pair struct {
	key  string
	k, v *yaml.Node
}

// deref follows aliases.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == 0 || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "nothing"
}

// join appends a key to a path.
func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "/" + key
}

// mapping returns the pairs of a mapping node, merge keys (<<) expanded
// (explicit keys win, then earlier merge sources), and records each key's
// line. A null node is an empty mapping.
func (p *parser) mapping(n *yaml.Node, path string) []pair {
	n = deref(n)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		p.errAt(n.Line, path, "must be a mapping, got %s", kindName(n))
		return nil
	}
	if p.active[n] {
		p.errAt(n.Line, path, "a merge key (<<) refers to a mapping that contains it")
		return nil
	}
	p.active[n] = true
	defer delete(p.active, n)
	var out, merged []pair
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			p.errAt(k.Line, path, "keys must be plain values, got %s", kindName(k))
			continue
		}
		if k.ShortTag() == "!!merge" {
			for _, m := range mergeSources(v) {
				merged = append(merged, p.mapping(m, path)...)
			}
			continue
		}
		if line, dup := seen[k.Value]; dup {
			p.errAt(k.Line, join(path, k.Value), "duplicate key, first given at line %d", line)
			continue
		}
		seen[k.Value] = k.Line
		out = append(out, pair{key: k.Value, k: k, v: v})
	}
	for _, pr := range merged {
		if _, ok := seen[pr.key]; !ok {
			seen[pr.key] = pr.k.Line
			out = append(out, pr)
		}
	}
	for _, pr := range out {
		p.lines[join(path, pr.key)] = pr.k.Line
	}
	return out
}

func mergeSources(v *yaml.Node) []*yaml.Node {
	v = deref(v)
	if v != nil && v.Kind == yaml.SequenceNode {
		return v.Content
	}
	return []*yaml.Node{v}
}

// scalar returns the text of a scalar node, reporting anything else.
func (p *parser) scalar(n *yaml.Node, path string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		p.errAt(n.Line, path, "must be a single value, got %s", kindName(n))
		return "", false
	}
	return n.Value, true
}

// value decodes n into v (addressable). Null leaves v as it is, so defaults
// filled in beforehand survive an empty key.
func (p *parser) value(n *yaml.Node, path string, v reflect.Value, strict bool) {
	n = deref(n)
	if isNull(n) {
		return
	}
	if p.depth++; p.depth > maxDepth {
		p.errAt(n.Line, path, "nested too deeply")
		p.depth--
		return
	}
	defer func() { p.depth-- }()
	if d, ok := v.Addr().Interface().(nodeDecoder); ok {
		d.decodeNode(p, n, path)
		return
	}
	switch v.Type() {
	case durationType:
		if d, ok := p.duration(n, path); ok {
			v.SetInt(int64(d))
		}
		return
	case addrType:
		if s, ok := p.scalar(n, path); ok {
			a, err := netip.ParseAddr(s)
			if err != nil || a.Zone() != "" {
				p.errAt(n.Line, path, "must be an IP address, got %q", s)
				return
			}
			v.Set(reflect.ValueOf(a.Unmap()))
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		p.structure(n, path, v, strict)
	case reflect.Pointer:
		e := reflect.New(v.Type().Elem())
		p.value(n, path, e.Elem(), strict)
		v.Set(e)
	case reflect.Map:
		p.stringMap(n, path, v)
	case reflect.Slice:
		p.list(n, path, v, strict)
	case reflect.String:
		if s, ok := p.scalar(n, path); ok {
			v.SetString(s)
		}
	case reflect.Bool:
		if s, ok := p.scalar(n, path); ok {
			b, err := ParseBool(s)
			if err != nil {
				p.errAt(n.Line, path, "must be true or false, got %q", s)
				return
			}
			v.SetBool(b)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if s, ok := p.scalar(n, path); ok {
			i, err := parseInt(s)
			if err != nil || v.OverflowInt(i) {
				p.errAt(n.Line, path, "must be an integer, got %q", s)
				return
			}
			v.SetInt(i)
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if s, ok := p.scalar(n, path); ok {
			i, err := parseInt(s)
			switch {
			case err != nil:
				p.errAt(n.Line, path, "must be an integer, got %q", s)
			case i < 0:
				p.errAt(n.Line, path, "must be >= 0, got %d", i)
			case v.OverflowUint(uint64(i)):
				p.errAt(n.Line, path, "must be at most %d, got %d", uint64(1)<<(v.Type().Bits())-1, i)
			default:
				v.SetUint(uint64(i))
			}
		}
	case reflect.Float32, reflect.Float64:
		if s, ok := p.scalar(n, path); ok {
			f, err := strconv.ParseFloat(s, 64)
			if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
				p.errAt(n.Line, path, "must be a number, got %q", s)
				return
			}
			v.SetFloat(f)
		}
	default:
		p.errAt(n.Line, path, "internal: cannot decode into %s", v.Type())
	}
}

// parseInt reads a YAML integer: decimal (a leading 0 is not octal, as in
// YAML 1.2), or 0x/0o/0b prefixed.
func parseInt(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return i, nil
	}
	t := strings.TrimLeft(s, "+-")
	if len(t) > 2 && t[0] == '0' && strings.ContainsRune("xXoObB", rune(t[1])) {
		return strconv.ParseInt(s, 0, 64)
	}
	return strconv.ParseInt(s, 10, 64)
}

// duration reads a Go duration string, or a bare integer in nanoseconds as
// DPVS reads it (with a warning, since "interval: 3" is almost never meant).
func (p *parser) duration(n *yaml.Node, path string) (time.Duration, bool) {
	s, ok := p.scalar(n, path)
	if !ok {
		return 0, false
	}
	if n.ShortTag() == "!!int" {
		i, err := parseInt(s)
		if err != nil {
			p.errAt(n.Line, path, "must be a duration such as 3s, got %q", s)
			return 0, false
		}
		if i != 0 {
			p.warnAt(n.Line, path, "bare integer %s means %v (nanoseconds, as DPVS reads it); write a unit, e.g. %ss", s, time.Duration(i), s)
		}
		return time.Duration(i), true
	}
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		p.errAt(n.Line, path, "must be a duration such as 3s or 1m30s, got %q", s)
		return 0, false
	}
	return d, true
}

// structField is a decodable field of a struct, inline fields flattened.
type structField struct {
	name  string
	index []int
}

func fieldsOf(t reflect.Type) []structField {
	var out []structField
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		if tag == "-" || !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if strings.Contains(opts, "inline") {
			for _, sf := range fieldsOf(f.Type) {
				sf.index = append([]int{i}, sf.index...)
				out = append(out, sf)
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out = append(out, structField{name: name, index: []int{i}})
	}
	return out
}

// structure decodes a mapping into a struct. Unknown keys are errors when
// strict (healthmesh's sections) and warnings otherwise (DPVS's sections,
// which DPVS reads leniently).
func (p *parser) structure(n *yaml.Node, path string, v reflect.Value, strict bool) {
	fields := fieldsOf(v.Type())
	for _, pr := range p.mapping(n, path) {
		i := slices.IndexFunc(fields, func(f structField) bool { return f.name == pr.key })
		if i < 0 {
			names := make([]string, len(fields))
			for j, f := range fields {
				names[j] = f.name
			}
			sort.Strings(names)
			if strict {
				p.errAt(pr.k.Line, join(path, pr.key), "unknown key (valid: %s)", strings.Join(names, ", "))
			} else {
				p.warnAt(pr.k.Line, join(path, pr.key), "unknown key ignored, as DPVS ignores it (valid: %s)", strings.Join(names, ", "))
			}
			continue
		}
		p.value(pr.v, join(path, pr.key), v.FieldByIndex(fields[i].index), strict)
	}
}

// stringMap decodes a mapping of plain values (method-params,
// action-params). Values keep their text as written: "yes" stays "yes".
func (p *parser) stringMap(n *yaml.Node, path string, v reflect.Value) {
	if v.Type().Key().Kind() != reflect.String || v.Type().Elem().Kind() != reflect.String {
		p.errAt(n.Line, path, "internal: cannot decode into %s", v.Type())
		return
	}
	if n.Kind != yaml.MappingNode {
		p.mapping(n, path) // reports it
		return
	}
	prs := p.mapping(n, path)
	if len(prs) == 0 {
		v.SetZero() // {} and nothing mean the same: no params
		return
	}
	m := reflect.MakeMapWithSize(v.Type(), len(prs))
	for _, pr := range prs {
		val := deref(pr.v)
		s := ""
		if !isNull(val) {
			var ok bool
			if s, ok = p.scalar(val, join(path, pr.key)); !ok {
				continue
			}
		}
		m.SetMapIndex(reflect.ValueOf(pr.key).Convert(v.Type().Key()), reflect.ValueOf(s).Convert(v.Type().Elem()))
	}
	v.Set(m)
}

// list decodes a sequence. A list of strings may also be written as one
// comma-separated value ("nats://a:4222,nats://b:4222").
func (p *parser) list(n *yaml.Node, path string, v reflect.Value, strict bool) {
	if n.Kind == yaml.ScalarNode && v.Type().Elem().Kind() == reflect.String {
		var parts []string
		for s := range strings.SplitSeq(n.Value, ",") {
			if s = strings.TrimSpace(s); s != "" {
				parts = append(parts, s)
			}
		}
		if len(parts) == 0 {
			v.SetZero()
			return
		}
		out := reflect.MakeSlice(v.Type(), len(parts), len(parts))
		for i, s := range parts {
			out.Index(i).SetString(s)
		}
		v.Set(out)
		return
	}
	if n.Kind != yaml.SequenceNode {
		p.errAt(n.Line, path, "must be a list, got %s", kindName(n))
		return
	}
	if len(n.Content) == 0 {
		v.SetZero() // [] and nothing mean the same
		return
	}
	out := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, e := range n.Content {
		ip := join(path, strconv.Itoa(i))
		p.lines[ip] = e.Line
		p.value(e, ip, out.Index(i), strict)
	}
	v.Set(out)
}

// Custom spellings.

func (m *Method) decodeNode(p *parser, n *yaml.Node, path string) {
	s, ok := p.scalar(n, path)
	if !ok {
		return
	}
	if strings.TrimSpace(s) == "0" {
		*m = 0 // DPVS: 0 inherits
		return
	}
	v, err := ParseMethod(s)
	if err != nil {
		p.errAt(n.Line, path, "%v", err)
		return
	}
	*m = v
}

func (d *DownPolicy) decodeNode(p *parser, n *yaml.Node, path string) {
	s, ok := p.scalar(n, path)
	if !ok {
		return
	}
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "0":
		*d = 0 // DPVS: 0 inherits
	case "1", "oneof":
		*d = OneOf
	case "2", "allof":
		*d = AllOf
	default:
		p.errAt(n.Line, path, "must be 1 (oneOf) or 2 (allOf), got %s", s)
	}
}

func (o *Observers) decodeNode(p *parser, n *yaml.Node, path string) {
	s, ok := p.scalar(n, path)
	if !ok {
		return
	}
	if strings.EqualFold(strings.TrimSpace(s), "all") {
		*o = ObserversAll
		return
	}
	i, err := parseInt(s)
	if err != nil || i < 1 || i > math.MaxInt32 {
		p.errAt(n.Line, path, `must be a number >= 1 or "all", got %q`, s)
		return
	}
	*o = Observers(i)
}

func (b *ByteSize) decodeNode(p *parser, n *yaml.Node, path string) {
	s, ok := p.scalar(n, path)
	if !ok {
		return
	}
	v, err := ParseByteSize(s)
	if err != nil {
		p.errAt(n.Line, path, "%v", err)
		return
	}
	*b = v
}

// ParseByteSize reads a size: an integer number of bytes, a number with a
// unit (KB MB GB TB are powers of 1000, KiB MiB GiB TiB of 1024; B allowed),
// "unlimited" or -1.
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	if strings.EqualFold(t, "unlimited") || t == "-1" {
		return Unlimited, nil
	}
	units := []struct {
		suffix string
		mult   int64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
	}
	mult := int64(1)
	for _, u := range units {
		if len(t) > len(u.suffix) && strings.EqualFold(t[len(t)-len(u.suffix):], u.suffix) {
			mult, t = u.mult, strings.TrimSpace(t[:len(t)-len(u.suffix)])
			break
		}
	}
	i, err := parseInt(t)
	if err != nil || i < 0 || i > math.MaxInt64/mult {
		return 0, fmt.Errorf(`must be a size such as 1073741824, 512MiB or 10GB, or "unlimited", got %q`, s)
	}
	return ByteSize(i * mult), nil
}

// reflectOf returns the addressable value a pointer points to.
func reflectOf(ptr any) reflect.Value { return reflect.ValueOf(ptr).Elem() }
