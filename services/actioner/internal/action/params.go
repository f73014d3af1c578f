package action

import (
	"fmt"
	"slices"
	"strings"
)

// params checks one actioner's parameters and reports the first problem as
// ErrParams naming the actioner and the key.
type params struct {
	name string
	m    map[string]string
}

// only rejects any key not in allowed.
func (p params) only(allowed ...string) error {
	keys := make([]string, 0, len(p.m))
	for k := range p.m {
		keys = append(keys, k)
	}
	slices.Sort(keys) // report the same key every time
	for _, k := range keys {
		if !slices.Contains(allowed, k) {
			if len(allowed) == 0 {
				return p.errf(k, "not supported (%s takes no params)", p.name)
			}
			return p.errf(k, "not supported (want %s)", strings.Join(allowed, ", "))
		}
	}
	return nil
}

// required returns a key that must be present and not blank.
func (p params) required(key string) (string, error) {
	v, ok := p.m[key]
	if !ok {
		return "", p.errf(key, "required")
	}
	v = strings.TrimSpace(v)
	if v == "" {
		return "", p.errf(key, "must not be empty")
	}
	return v, nil
}

// ifname returns a required interface name, checked the way the kernel
// checks it (1-15 bytes, no '/', ':' or white space) so a typo is caught at
// configuration time rather than at the first transition.
func (p params) ifname(key string) (string, error) {
	v, err := p.required(key)
	if err != nil {
		return "", err
	}
	if len(v) > 15 || v == "." || v == ".." || strings.ContainsAny(v, "/: \t\n") {
		return "", p.errf(key, "%q is not an interface name (1-15 characters, no '/', ':' or spaces)", v)
	}
	return v, nil
}

// dpvsIfname returns a required DPVS port name ("dpdk0", "dpdk0.kni",
// "bond0.100"). It goes into a URL path, so '/' and spaces are refused.
func (p params) dpvsIfname(key string) (string, error) {
	v, err := p.required(key)
	if err != nil {
		return "", err
	}
	if strings.ContainsFunc(v, func(r rune) bool { return r == '/' || r <= ' ' || r == 0x7f }) {
		return "", p.errf(key, "%q is not a DPVS interface name (no '/', spaces or control characters)", v)
	}
	return v, nil
}

// optionalBool reads yes/no/true/false (any case); an absent key is false.
// A present but empty key is false too, which fixes the DPVS bug where
// DpvsAddrKernelRouteAddDel failed without an explicit with-route.
func (p params) optionalBool(key string) (bool, error) {
	v, ok := p.m[key]
	if !ok {
		return false, nil
	}
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "yes", "true":
		return true, nil
	case "no", "false", "":
		return false, nil
	}
	return false, p.errf(key, "%q is not a boolean (want yes, no, true or false)", v)
}

// netns returns the optional network namespace: a name under /run/netns
// or an absolute path such as /proc/<pid>/ns/net. "" is the actioner's own.
func (p params) netns(key string) (string, error) {
	v, ok := p.m[key]
	if !ok {
		return "", nil
	}
	v = strings.TrimSpace(v)
	switch {
	case v == "":
		return "", p.errf(key, "must not be empty when given")
	case strings.HasPrefix(v, "/"):
		return v, nil
	case v == "." || v == ".." || strings.ContainsAny(v, "/\x00"):
		return "", p.errf(key, "%q is neither a namespace name nor an absolute path", v)
	}
	return v, nil
}

func (p params) errf(key, format string, args ...any) error {
	return fmt.Errorf("%w: %s: param %q: %s", ErrParams, p.name, key, fmt.Sprintf(format, args...))
}
