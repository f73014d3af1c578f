package probe

import (
	"fmt"
	"slices"
	"strings"

	"github.com/healthmesh/healthmesh/shared/config"
)

// ProxyProtocol is the PROXY protocol version a probe writes right after
// connecting (tcp, http) or as a first datagram (udp, v2 only).
type ProxyProtocol uint8

// PROXY protocol versions.
const (
	ProxyNone ProxyProtocol = iota
	ProxyV1
	ProxyV2
)

// paramErr is the error for one bad method-params key.
func paramErr(method, key, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %q: %s", ErrParam, method, key, fmt.Sprintf(format, args...))
}

// sortedKeys returns params' keys in order, so that the first error reported
// for a map with several bad keys is always the same one.
func sortedKeys(params map[string]string) []string {
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func noParams(method string, params map[string]string) error {
	if keys := sortedKeys(params); len(keys) > 0 {
		return paramErr(method, keys[0], "unsupported key: %s takes no method-params", method)
	}
	return nil
}

func unknownKey(method, key string, known ...string) error {
	return paramErr(method, key, "unsupported key (want one of %s)", strings.Join(known, ", "))
}

// parseBool accepts the booleans config accepts (yes/no, true/false,
// on/off, any case), so that what check-config passes the prober builds.
func parseBool(method, key, v string) (bool, error) {
	b, err := config.ParseBool(v)
	if err != nil {
		return false, paramErr(method, key, "%v", err)
	}
	return b, nil
}

// parseProxyProtocol accepts "v1" or "v2" (any case); v1 only when allowV1.
func parseProxyProtocol(method, key, v string, allowV1 bool) (ProxyProtocol, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "v1":
		if allowV1 {
			return ProxyV1, nil
		}
	case "v2":
		return ProxyV2, nil
	}
	if allowV1 {
		return ProxyNone, paramErr(method, key, "want v1 or v2, got %q", v)
	}
	return ProxyNone, paramErr(method, key, "want v2 (v1 is a TCP-only text header), got %q", v)
}

func nonEmpty(method, key, v string) error {
	if v == "" {
		return paramErr(method, key, "must not be empty")
	}
	return nil
}

// parsePayload decodes a non-empty send/receive value with its escapes
// (\xHH, \0, \r, \n, \t, \\; see config.DecodeEscapes).
func parsePayload(method, key, v string) ([]byte, error) {
	if err := nonEmpty(method, key, v); err != nil {
		return nil, err
	}
	b, err := config.DecodeEscapes(v)
	if err != nil {
		return nil, paramErr(method, key, "%v", err)
	}
	return b, nil
}
