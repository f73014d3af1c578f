package demo

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Proto is what a backend speaks.
type Proto string

// The backend kinds.
const (
	TCP  Proto = "tcp"  // accepts; optional banner; "PING" → "PONG", anything else echoed
	HTTP Proto = "http" // 200 "OK <name>" on any path, /echo returns the request
	UDP  Proto = "udp"  // "PING" → "PONG", anything else echoed
)

// ErrSpec is wrapped by every error about a bad backend description.
var ErrSpec = errors.New("bad backend spec")

// maxRange caps what one range expands to, so a typo (a /8 instead of a /24)
// is an error instead of an out-of-memory.
const maxRange = 1 << 20

// Spec describes one backend. Name may be empty: it then becomes the DPVS
// backend ID of the bound address ("127.0.0.11-TCP-8080"), which is also
// what an operator sees in healthmesh.
type Spec struct {
	Name   string        `yaml:"name"`
	Proto  Proto         `yaml:"proto"`
	Addr   string        `yaml:"addr"`             // ip:port or [ip6]:port; port 0 picks a free port
	Banner string        `yaml:"banner,omitempty"` // tcp: written on accept
	Status int           `yaml:"status,omitempty"` // http: code to answer (default 200)
	Delay  time.Duration `yaml:"delay,omitempty"`  // wait this long before every answer
}

// check validates s and returns its address.
func (s Spec) check() (netip.AddrPort, error) {
	if s.Name != "" && !validName(s.Name) {
		return netip.AddrPort{}, fmt.Errorf("%w: name %q: want letters, digits, '.', '_' or '-'", ErrSpec, s.Name)
	}
	switch s.Proto {
	case TCP, HTTP, UDP:
	default:
		return netip.AddrPort{}, fmt.Errorf("%w: proto %q: want tcp, http or udp", ErrSpec, s.Proto)
	}
	ap, err := netip.ParseAddrPort(s.Addr)
	if err != nil || ap.Addr().Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("%w: addr %q: want ip:port or [ip6]:port", ErrSpec, s.Addr)
	}
	if s.Banner != "" && s.Proto != TCP {
		return netip.AddrPort{}, fmt.Errorf("%w: banner: only tcp backends send one", ErrSpec)
	}
	if s.Status != 0 {
		if s.Proto != HTTP {
			return netip.AddrPort{}, fmt.Errorf("%w: status: only http backends answer with a status", ErrSpec)
		}
		if err := checkCode(s.Status); err != nil {
			return netip.AddrPort{}, fmt.Errorf("%w: %w", ErrSpec, err)
		}
	}
	if s.Delay < 0 {
		return netip.AddrPort{}, fmt.Errorf("%w: delay %v: must not be negative", ErrSpec, s.Delay)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

func checkCode(code int) error {
	if code < 200 || code > 599 {
		return fmt.Errorf("status %d: want 200-599", code)
	}
	return nil
}

func validName(n string) bool {
	for _, r := range n {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
		default:
			return false
		}
	}
	return n != ""
}

// ParseProto accepts tcp, http and udp in any case.
func ParseProto(s string) (Proto, error) {
	p := Proto(strings.ToLower(s))
	switch p {
	case TCP, HTTP, UDP:
		return p, nil
	}
	return "", fmt.Errorf("%w: proto %q: want tcp, http or udp", ErrSpec, s)
}

// ParseSpec reads one -listen item: PROTO://ADDR[?name=N&banner=B&status=C&delay=D],
// for example "tcp://127.0.0.11:8080?banner=SSH-2.0-demo%0D%0A" or
// "http://[::1]:0?name=web". Query values are URL-escaped.
func ParseSpec(s string) (Spec, error) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return Spec{}, fmt.Errorf("%w: %q: want proto://ip:port[?name=...]", ErrSpec, s)
	}
	if (u.Path != "" && u.Path != "/") || u.User != nil || u.Fragment != "" {
		return Spec{}, fmt.Errorf("%w: %q: want proto://ip:port[?name=...] (no path, user or fragment)", ErrSpec, s)
	}
	p, err := ParseProto(u.Scheme)
	if err != nil {
		return Spec{}, fmt.Errorf("%q: %w", s, err)
	}
	sp := Spec{Proto: p, Addr: u.Host}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return Spec{}, fmt.Errorf("%w: %q: query: %v", ErrSpec, s, err)
	}
	for k, vs := range q {
		v := vs[len(vs)-1]
		switch k {
		case "name":
			sp.Name = v
		case "banner":
			sp.Banner = v
		case "status":
			if sp.Status, err = strconv.Atoi(v); err != nil {
				return Spec{}, fmt.Errorf("%w: %q: status %q: want a number", ErrSpec, s, v)
			}
		case "delay":
			if sp.Delay, err = time.ParseDuration(v); err != nil {
				return Spec{}, fmt.Errorf("%w: %q: delay %q: want a duration such as 3s", ErrSpec, s, v)
			}
		default:
			return Spec{}, fmt.Errorf("%w: %q: unknown parameter %q (want name, banner, status or delay)", ErrSpec, s, k)
		}
	}
	if _, err := sp.check(); err != nil {
		return Spec{}, fmt.Errorf("%q: %w", s, err)
	}
	return sp, nil
}

// ParseRange expands IP[-IP]:PORT[-PORT] (IPv6 as [IP[-IP]]:PORT[-PORT]) into
// one backend of proto per address and port, addresses outer, ports inner:
// "127.0.0.1:20000-29999" is 10,000 listeners, "127.0.1.1-127.0.1.100:80" is 100.
func ParseRange(proto Proto, s string) ([]Spec, error) {
	if _, err := ParseProto(string(proto)); err != nil {
		return nil, err
	}
	bad := func(why string) error {
		return fmt.Errorf("%w: %s range %q: %s", ErrSpec, proto, s, why)
	}
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return nil, bad("want IP[-IP]:PORT[-PORT]")
	}
	hosts, ports := s[:i], s[i+1:]
	if strings.HasPrefix(hosts, "[") && strings.HasSuffix(hosts, "]") {
		hosts = hosts[1 : len(hosts)-1]
	} else if strings.Contains(hosts, ":") {
		return nil, bad("write IPv6 ranges in brackets: [::1]:PORT[-PORT]")
	}
	first, last, err := cutRange(hosts, netip.ParseAddr)
	if err != nil || first.Zone() != "" || last.Zone() != "" || first.Is4() != last.Is4() || last.Less(first) {
		return nil, bad("addresses: want IP or IP-IP, same family, first <= last")
	}
	lo, hi, err := cutRange(ports, func(p string) (uint16, error) {
		n, err := strconv.ParseUint(p, 10, 16)
		return uint16(n), err
	})
	if err != nil || hi < lo {
		return nil, bad("ports: want PORT or PORT-PORT, first <= last, at most 65535")
	}
	if lo == 0 && hi != 0 {
		return nil, bad("ports: port 0 (any free port) only on its own")
	}
	nports := int(hi) - int(lo) + 1
	naddrs := 1
	for a := first; a != last; a = a.Next() {
		if naddrs++; naddrs*nports > maxRange {
			return nil, bad(fmt.Sprintf("more than %d backends", maxRange))
		}
	}
	out := make([]Spec, 0, naddrs*nports)
	for a, i := first, 0; i < naddrs; a, i = a.Next(), i+1 {
		for p := int(lo); p <= int(hi); p++ {
			out = append(out, Spec{Proto: proto, Addr: netip.AddrPortFrom(a, uint16(p)).String()})
		}
	}
	return out, nil
}

func cutRange[T any](s string, parse func(string) (T, error)) (T, T, error) {
	a, b, found := strings.Cut(s, "-")
	first, err := parse(a)
	if err != nil || !found {
		return first, first, err
	}
	last, err := parse(b)
	return first, last, err
}

// LoadConfig reads a YAML file holding a list of backends:
//
//	# backends.yaml
//	- {name: web1, proto: http, addr: 127.0.0.12:8080}
//	- {name: ssh, proto: tcp, addr: 127.0.0.11:2222, banner: "SSH-2.0-demo\r\n"}
//	- {proto: udp, addr: 127.0.0.13:5353, delay: 100ms}
//
// Unknown keys are errors; every error names the file and line.
func LoadConfig(path string) ([]Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return ParseConfig(path, data)
}

// ParseConfig is LoadConfig on data already read; source names it in errors.
func ParseConfig(source string, data []byte) ([]Spec, error) {
	var specs []Spec
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&specs); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", source, ErrSpec, err)
	}
	// A second pass over the node tree only to name the line of a bad item.
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", source, ErrSpec, err)
	}
	for i := range specs {
		if p, err := ParseProto(string(specs[i].Proto)); err == nil {
			specs[i].Proto = p
		}
		if _, err := specs[i].check(); err != nil {
			line := 0
			if len(doc.Content) == 1 && i < len(doc.Content[0].Content) {
				line = doc.Content[0].Content[i].Line
			}
			return nil, fmt.Errorf("%s:%d: backend %d %s: %w", source, line, i+1, specs[i].Name, err)
		}
	}
	return specs, nil
}
