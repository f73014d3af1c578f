package config

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/healthmesh/healthmesh/shared/subject"
)

// Method is a check method. Its numbers are DPVS's, so a healthcheck.conf
// written with numbers keeps its meaning; the names are accepted beside them.
type Method uint16

// Check methods. MethodPassive exists only so that its number can be
// recognised and rejected with a clear message: DPVS runs it in the data path.
const (
	MethodNone    Method = 1
	MethodTCP     Method = 2
	MethodUDP     Method = 3
	MethodPing    Method = 4
	MethodUDPPing Method = 5
	MethodHTTP    Method = 6
	MethodAuto    Method = 10000
	MethodPassive Method = 65535
)

// methodList returns every method in DPVS order (a function, not a
// package variable, so nothing can change it).
func methodList() []Method {
	return []Method{MethodNone, MethodTCP, MethodUDP, MethodPing, MethodUDPPing, MethodHTTP, MethodAuto, MethodPassive}
}

// String returns the method name ("tcp", "auto" …), or "method<n>" for a
// number that is not a method.
func (m Method) String() string {
	switch m {
	case MethodNone:
		return "none"
	case MethodTCP:
		return "tcp"
	case MethodUDP:
		return "udp"
	case MethodPing:
		return "ping"
	case MethodUDPPing:
		return "udpping"
	case MethodHTTP:
		return "http"
	case MethodAuto:
		return "auto"
	case MethodPassive:
		return "passive"
	}
	return "method" + strconv.Itoa(int(m))
}

// Probed reports whether m is a method a prober runs (none tcp udp ping
// udpping http): not auto, not passive, not an unknown number.
func (m Method) Probed() bool {
	return m >= MethodNone && m <= MethodHTTP
}

// ResolveAuto returns the method auto stands for on a service of the given
// protocol, as DPVS resolves it: TCP → tcp, UDP → udpping, anything else →
// ping. Any other method is returned unchanged.
func (m Method) ResolveAuto(p subject.Proto) Method {
	if m != MethodAuto {
		return m
	}
	switch p {
	case subject.TCP:
		return MethodTCP
	case subject.UDP:
		return MethodUDPPing
	}
	return MethodPing
}

// MarshalYAML writes the DPVS number, so rendered files stay readable by DPVS.
func (m Method) MarshalYAML() (any, error) { return uint16(m), nil }

// ParseMethod accepts a DPVS method number or a method name (any case).
// passive (65535) is refused: healthmesh cannot run DPVS's data-path check.
func ParseMethod(s string) (Method, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseUint(s, 10, 16); err == nil {
		for _, m := range methodList() {
			if uint64(m) == n {
				return checkMethod(m)
			}
		}
		return 0, fmt.Errorf("unknown method %d (want %s)", n, methodChoices())
	}
	for _, m := range methodList() {
		if strings.EqualFold(m.String(), s) {
			return checkMethod(m)
		}
	}
	return 0, fmt.Errorf("unknown method %q (want %s)", s, methodChoices())
}

func checkMethod(m Method) (Method, error) {
	if m == MethodPassive {
		return 0, fmt.Errorf("method 65535 (passive) is not supported: it is DPVS's data-path check, set with ipvsadm --dest-check")
	}
	return m, nil
}

func methodChoices() string {
	var b strings.Builder
	for _, m := range methodList() {
		if m == MethodPassive {
			continue
		}
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d or %s", m, m)
	}
	return b.String()
}

// methodAnnotation is the first comment line of /conf and /conf/check.
func methodAnnotation() string {
	var parts []string
	for _, m := range methodList() {
		parts = append(parts, fmt.Sprintf("%d-%s", uint16(m), m))
	}
	return "# Check Method Annotations: " + strings.Join(parts, ", ")
}
