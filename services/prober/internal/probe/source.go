package probe

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/hashicorp/go-sockaddr/template"
)

// ErrSource is wrapped by ResolveSource's errors.
var ErrSource = errors.New("probe: source address")

// ResolveSource turns a per-target `source` value into one address: either a
// literal IP address or a go-sockaddr template such as
// `{{ GetInterfaceIP "eth0" }}`, which must yield exactly one address (a
// probe binds one source; picking one of several silently would make the
// probe path depend on interface order).
func ResolveSource(tmpl string) (netip.Addr, error) {
	s := strings.TrimSpace(tmpl)
	if s == "" {
		return netip.Addr{}, fmt.Errorf("%w: empty", ErrSource)
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a, nil
	}
	out, err := template.Parse(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%w: template %q: %v", ErrSource, tmpl, err)
	}
	fields := strings.Fields(out)
	if len(fields) != 1 {
		return netip.Addr{}, fmt.Errorf("%w: template %q yields %d addresses %q, want exactly one",
			ErrSource, tmpl, len(fields), fields)
	}
	a, err := netip.ParseAddr(fields[0])
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%w: template %q yields %q, not an IP address", ErrSource, tmpl, fields[0])
	}
	return a, nil
}
