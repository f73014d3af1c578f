package config

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/healthmesh/healthmesh/shared/subject"
)

// ErrSyntax is wrapped by the error of a file that is not valid YAML.
var ErrSyntax = errors.New("yaml syntax")

// SyntaxError is the error of a file that is not valid YAML.
type SyntaxError struct {
	Source string
	Err    error // from the YAML parser, with its line
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("config: %s: %v", e.Source, e.Err)
}

// Unwrap lets errors.Is(err, ErrSyntax) hold.
func (e *SyntaxError) Unwrap() []error { return []error{ErrSyntax, e.Err} }

// Issue is one problem found in a file: where (a slash-separated path such
// as "virtual-servers/192.0.2.1-TCP-80/interval", and the line when known)
// and what.
type Issue struct {
	Path string
	Line int // 1-based; 0 when unknown
	Msg  string
}

// String formats the issue as "path: msg (line N)".
func (i Issue) String() string {
	var b strings.Builder
	if i.Path != "" {
		b.WriteString(i.Path)
		b.WriteString(": ")
	}
	b.WriteString(i.Msg)
	if i.Line > 0 {
		fmt.Fprintf(&b, " (line %d)", i.Line)
	}
	return b.String()
}

// Warning is something accepted that the operator should know about: a key
// DPVS ignores, a bare-integer duration, a key DPVS would never match.
type Warning Issue

// String formats the warning like an Issue.
func (w Warning) String() string { return Issue(w).String() }

// ValidationError is the error of a file that parsed as YAML but is not a
// valid configuration. It holds every issue found, sorted by line.
type ValidationError struct {
	Source string
	Issues []Issue
}

// Error lists the issues, one per line.
func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Issues))
	for i, is := range e.Issues {
		lines[i] = is.String()
	}
	return strings.Join(lines, "\n")
}

// Options adjust loading. The zero value checks files on the local host.
type Options struct {
	// CheckFile checks a file the configuration names: a Script actioner's
	// script (executable is true) and the bus credentials and TLS files.
	// nil means LocalFile. NoFileCheck skips the checks, for check-config
	// run on another host than the one the file is for.
	CheckFile func(path string, executable bool) error
}

// LocalFile checks that path is a regular file on this host and, when
// executable is set, that it has an execute bit (DPVS's Script check).
func LocalFile(path string, executable bool) error {
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("file %s does not exist", path)
		}
		return fmt.Errorf("file %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	if executable && st.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not executable", path)
	}
	return nil
}

// NoFileCheck accepts every file.
func NoFileCheck(string, bool) error { return nil }

// Load reads and parses a file with the default options.
func Load(path string) (*Config, []Warning, error) { return Options{}.Load(path) }

// Parse parses a file's content with the default options; source names it
// in messages and in Config.Source.
func Parse(data []byte, source string) (*Config, []Warning, error) {
	return Options{}.Parse(data, source)
}

// Load reads and parses a file.
func (o Options) Load(path string) (*Config, []Warning, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("config: read: %w", err)
	}
	return o.Parse(data, path)
}

// Parse parses, merges and validates a file's content. An empty file is
// valid and yields Default(). The error is a *ValidationError listing every
// issue, or a *SyntaxError. Warnings are returned in both cases.
func (o Options) Parse(data []byte, source string) (*Config, []Warning, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, nil, &SyntaxError{Source: source, Err: err}
	}
	if o.CheckFile == nil {
		o.CheckFile = LocalFile
	}
	p := &parser{
		opts:   o,
		lines:  map[string]int{},
		active: map[*yaml.Node]bool{},
		vaKey:  map[netip.Addr]string{},
		vsKey:  map[subject.VSID]string{},
		svKey:  map[subject.VSID]string{},
	}
	cfg := Default()
	cfg.Source, cfg.Revision = source, revision(data)
	raw := p.file(&root, cfg)
	p.merge(cfg, raw)
	p.validate(cfg)

	sort.SliceStable(p.warns, func(i, j int) bool { return p.warns[i].Line < p.warns[j].Line })
	if len(p.issues) > 0 {
		sort.SliceStable(p.issues, func(i, j int) bool {
			a, b := p.issues[i], p.issues[j]
			if a.Line != b.Line {
				return a.Line < b.Line
			}
			return a.Path < b.Path
		})
		return nil, p.warns, &ValidationError{Source: source, Issues: p.issues}
	}
	return cfg, p.warns, nil
}

func revision(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// parser collects the issues and warnings of one Parse.
type parser struct {
	opts   Options
	issues []Issue
	warns  []Warning
	lines  map[string]int      // path of a key → its line
	active map[*yaml.Node]bool // mappings being read, to stop merge-key cycles
	depth  int                 // nesting of value, to stop alias cycles

	// The keys as written, for messages.
	vaKey map[netip.Addr]string
	vsKey map[subject.VSID]string
	svKey map[subject.VSID]string
}

func (p *parser) errAt(line int, path, format string, a ...any) {
	p.issues = append(p.issues, Issue{Path: path, Line: line, Msg: fmt.Sprintf(format, a...)})
}

func (p *parser) warnAt(line int, path, format string, a ...any) {
	p.warns = append(p.warns, Warning{Path: path, Line: line, Msg: fmt.Sprintf(format, a...)})
}

// errf reports an issue at path, with the line of path or of its nearest
// ancestor that the file spells out (an inherited value has no line of its
// own: the block that inherits it is named).
func (p *parser) errf(path, format string, a ...any) { p.errAt(p.lineOf(path), path, format, a...) }

func (p *parser) warnf(path, format string, a ...any) { p.warnAt(p.lineOf(path), path, format, a...) }

func (p *parser) lineOf(path string) int {
	for path != "" {
		if l, ok := p.lines[path]; ok {
			return l
		}
		i := strings.LastIndexByte(path, '/')
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

// has reports whether the file spells out the key at path.
func (p *parser) has(path string) bool {
	_, ok := p.lines[path]
	return ok
}

// File layout as read, before merging.

// vsFile is a VS block as written: rise and fall are folded into
// up-retry/down-retry once read.
type vsFile struct {
	VSConf `yaml:",inline"`
	Rise   *uint `yaml:"rise"`
	Fall   *uint `yaml:"fall"`
}

type serviceFile struct {
	Backends []backendFile `yaml:"backends"`
}

type backendFile struct {
	Addr      netip.Addr `yaml:"addr"`
	Port      *uint16    `yaml:"port"`
	Weight    *uint16    `yaml:"weight"`
	Inhibited bool       `yaml:"inhibited"`
}

type rawFile struct {
	globalVA VAConf
	globalVS VSConf
	vas      map[netip.Addr]VAConf
	vss      map[subject.VSID]VSConf
	services map[subject.VSID]serviceFile
}

// Top-level section names.
const (
	keyGlobal   = "global"
	keyVAs      = "virtual-addresses"
	keyVSs      = "virtual-servers"
	keyGlobalVA = "virtual-address"
	keyGlobalVS = "virtual-server"
	keyBus      = "bus"
	keyAgent    = "dpvs-agent"
	keyServices = "services"
	keyProber   = "prober"
	keyAggr     = "aggregator"
	keyActioner = "actioner"
)

// file decodes the document: DPVS sections into raw (to be merged), the
// healthmesh sections straight into cfg over its defaults.
func (p *parser) file(root *yaml.Node, cfg *Config) rawFile {
	raw := rawFile{
		vas:      map[netip.Addr]VAConf{},
		vss:      map[subject.VSID]VSConf{},
		services: map[subject.VSID]serviceFile{},
	}
	doc := root
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			return raw
		}
		doc = doc.Content[0]
	}
	if isNull(deref(doc)) {
		return raw
	}
	if deref(doc).Kind != yaml.MappingNode {
		p.errAt(doc.Line, "", "the file must be a mapping of sections (global, virtual-addresses, virtual-servers, bus …), got %s", kindName(deref(doc)))
		return raw
	}
	for _, pr := range p.mapping(doc, "") {
		switch pr.key {
		case keyGlobal:
			for _, g := range p.mapping(pr.v, keyGlobal) {
				path := join(keyGlobal, g.key)
				switch g.key {
				case keyGlobalVA:
					p.structure(deref(g.v), path, reflectOf(&raw.globalVA), false)
				case keyGlobalVS:
					raw.globalVS = p.vsBlock(g.v, path)
				default:
					p.warnAt(g.k.Line, path, "unknown key ignored, as DPVS ignores it (valid: virtual-address, virtual-server)")
				}
			}
		case keyVAs:
			p.vaBlocks(pr.v, raw.vas)
		case keyVSs:
			for _, b := range p.mapping(pr.v, keyVSs) {
				if id, ok := p.vsKeyOf(b, keyVSs, p.vsKey); ok {
					raw.vss[id] = p.vsBlock(b.v, join(keyVSs, b.key))
				}
			}
		case keyServices:
			for _, b := range p.mapping(pr.v, keyServices) {
				if id, ok := p.vsKeyOf(b, keyServices, p.svKey); ok {
					var sf serviceFile
					p.value(b.v, join(keyServices, b.key), reflectOf(&sf), true)
					raw.services[id] = sf
				}
			}
		case keyBus:
			p.value(pr.v, keyBus, reflectOf(&cfg.Bus), true)
		case keyAgent:
			p.value(pr.v, keyAgent, reflectOf(&cfg.DPVSAgent), true)
		case keyProber:
			p.value(pr.v, keyProber, reflectOf(&cfg.Prober), true)
		case keyAggr:
			p.value(pr.v, keyAggr, reflectOf(&cfg.Aggregator), true)
		case keyActioner:
			p.value(pr.v, keyActioner, reflectOf(&cfg.Actioner), true)
		default:
			p.warnAt(pr.k.Line, pr.key, "unknown section ignored (valid: %s)", strings.Join([]string{
				keyGlobal, keyVAs, keyVSs, keyBus, keyAgent, keyServices, keyProber, keyAggr, keyActioner}, ", "))
		}
	}
	return raw
}

// vaBlocks reads virtual-addresses, checking each key is a VIP.
func (p *parser) vaBlocks(n *yaml.Node, into map[netip.Addr]VAConf) {
	for _, b := range p.mapping(n, keyVAs) {
		path := join(keyVAs, b.key)
		a, err := netip.ParseAddr(b.key)
		if err != nil || a.Zone() != "" {
			p.errAt(b.k.Line, path, "key must be an IP address such as 192.0.2.1 or 2001:db8::1 (DPVS silently never matches such a block)")
			continue
		}
		a = a.Unmap()
		if prev, dup := p.vaKey[a]; dup {
			p.errAt(b.k.Line, path, "same address as %q at line %d", prev, p.lines[join(keyVAs, prev)])
			continue
		}
		if a.String() != b.key {
			p.warnAt(b.k.Line, path, "read as %s; DPVS matches keys as exact strings and would never use this block", a)
		}
		p.vaKey[a] = b.key
		var va VAConf
		p.structure(deref(b.v), path, reflectOf(&va), false)
		into[a] = va
	}
}

// vsKeyOf checks a VIP-PROTO-PORT key.
func (p *parser) vsKeyOf(b pair, section string, seen map[subject.VSID]string) (subject.VSID, bool) {
	path := join(section, b.key)
	id, err := subject.ParseEndpoint(b.key)
	if err != nil {
		p.errAt(b.k.Line, path, "key must be VIP-PROTO-PORT such as 192.0.2.1-TCP-80 or 2001:db8::1-UDP-53 (DPVS silently never matches such a block)")
		return id, false
	}
	if id.Port == 0 {
		p.errAt(b.k.Line, path, "port must be 1..65535")
		return id, false
	}
	if prev, dup := seen[id]; dup {
		p.errAt(b.k.Line, path, "same service as %q at line %d", prev, p.lines[join(section, prev)])
		return id, false
	}
	if id.String() != b.key {
		p.warnAt(b.k.Line, path, "read as %s; DPVS matches keys as exact strings and would never use this block", id)
	}
	seen[id] = b.key
	return id, true
}

// vsBlock reads a VS block and folds rise/fall into the retries.
func (p *parser) vsBlock(n *yaml.Node, path string) VSConf {
	var f vsFile
	n = deref(n)
	if isNull(n) {
		return f.VSConf
	}
	p.structure(n, path, reflectOf(&f), false)
	fold := func(v *uint, key, retryKey string, retry *uint) {
		if v == nil {
			return
		}
		kp := join(path, key)
		switch {
		case p.has(join(path, retryKey)):
			p.errf(kp, "%s and %s say the same thing in two ways: set only one", key, retryKey)
		case *v < 1:
			p.errf(kp, "must be >= 1 (%s N = N results in a row), got %d", key, *v)
		case *v-1 >= NoRetry:
			p.errf(kp, "must be < %d, got %d", NoRetry+1, *v)
		case *v == 1:
			*retry = NoRetry
		default:
			*retry = *v - 1
		}
	}
	fold(f.Rise, "rise", "up-retry", &f.UpRetry)
	fold(f.Fall, "fall", "down-retry", &f.DownRetry)
	return f.VSConf
}
