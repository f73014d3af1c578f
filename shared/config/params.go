package config

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// paramIssue is a problem with one key of method-params or action-params
// ("" for the map as a whole).
type paramIssue struct {
	key, msg string
}

func issuef(key, format string, a ...any) paramIssue {
	return paramIssue{key: key, msg: fmt.Sprintf(format, a...)}
}

// Method params.

// paramSpec checks one param value; nil accepts any value.
type paramSpec func(v string) error

func nonEmpty(v string) error {
	if v == "" {
		return fmt.Errorf("must not be empty")
	}
	return nil
}

func payload(v string) error {
	if v == "" {
		return fmt.Errorf("must not be empty")
	}
	_, err := DecodeEscapes(v)
	return err
}

func oneOfFold(choices ...string) paramSpec {
	return func(v string) error {
		for _, c := range choices {
			if strings.EqualFold(v, c) {
				return nil
			}
		}
		return fmt.Errorf("must be %s, got %q", strings.Join(choices, " or "), v)
	}
}

func boolParam(v string) error {
	_, err := ParseBool(v)
	return err
}

func httpMethod(v string) error {
	switch v {
	case "GET", "PUT", "POST", "HEAD":
		return nil
	}
	return fmt.Errorf("must be GET, PUT, POST or HEAD (upper case), got %q", v)
}

func httpURI(v string) error {
	if v == "" {
		return fmt.Errorf("must not be empty")
	}
	u, err := url.Parse(v)
	if err != nil {
		return fmt.Errorf("not a valid URI: %v", err)
	}
	if u.IsAbs() && u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("scheme must be http or https, got %q", u.Scheme)
	}
	return nil
}

func responseCodes(v string) error {
	_, err := ParseResponseCodes(v)
	return err
}

func requestHeaders(v string) error {
	_, err := ParseRequestHeaders(v)
	return err
}

func responseRegex(v string) error {
	if v == "" {
		return fmt.Errorf("must not be empty")
	}
	if _, err := regexp.Compile(v); err != nil {
		return fmt.Errorf("not a valid regular expression: %v", err)
	}
	return nil
}

// methodParamSpecs returns the params a method accepts (nil: any params,
// as for none). DPVS's lists, with its bugs fixed: tcp and udp do use their
// params, and http gains response-regex.
func methodParamSpecs(m Method) map[string]paramSpec {
	switch m {
	case MethodNone:
		return nil
	case MethodTCP:
		return map[string]paramSpec{"send": payload, "receive": payload, "proxy-protocol": oneOfFold("v1", "v2")}
	case MethodUDP, MethodUDPPing:
		return map[string]paramSpec{"send": payload, "receive": payload, "proxy-protocol": oneOfFold("v2")}
	case MethodPing:
		return map[string]paramSpec{}
	case MethodHTTP:
		return map[string]paramSpec{
			"method":          httpMethod,
			"host":            nonEmpty,
			"uri":             httpURI,
			"https":           boolParam,
			"tls-verify":      boolParam,
			"proxy":           boolParam,
			"proxy-protocol":  oneOfFold("v1", "v2"),
			"request-headers": requestHeaders,
			"request":         nonEmpty,
			"response-codes":  responseCodes,
			"response":        nonEmpty,
			"response-regex":  responseRegex,
		}
	}
	return nil
}

// checkMethodParams returns the problems of params for method m, which must
// not be auto.
func checkMethodParams(m Method, params map[string]string) []paramIssue {
	specs := methodParamSpecs(m)
	if specs == nil {
		return nil
	}
	var out []paramIssue
	for _, k := range sortedKeys(params) {
		spec, ok := specs[k]
		switch {
		case !ok && len(specs) == 0:
			out = append(out, issuef(k, "%s takes no params", m))
		case !ok:
			out = append(out, issuef(k, "not a %s param (valid: %s)", m, strings.Join(sortedKeys(specs), ", ")))
		default:
			if err := spec(params[k]); err != nil {
				out = append(out, issuef(k, "%v", err))
			}
		}
	}
	return out
}

// Actioners.

// Actioner names, as DPVS spells them (case-sensitive).
const (
	ActionerBackendUpdate      = "BackendUpdate"
	ActionerBlank              = "Blank"
	ActionerDpvsAddr           = "DpvsAddrAddDel"
	ActionerDpvsAddrKernel     = "DpvsAddrKernelRouteAddDel"
	ActionerKernelRoute        = "KernelRouteAddDel"
	ActionerKernelRouteVerdict = "KernelRouteAddDelVerdict"
	ActionerScript             = "Script"
)

// Actioners returns every actioner name, sorted.
func Actioners() []string {
	return []string{ActionerBackendUpdate, ActionerBlank, ActionerDpvsAddr, ActionerDpvsAddrKernel,
		ActionerKernelRoute, ActionerKernelRouteVerdict, ActionerScript}
}

// actionSpec is the params of an actioner: required and optional keys with
// their checks; anyParams accepts everything (Blank).
type actionSpec struct {
	required, optional map[string]paramSpec
	anyParams          bool
}

// kernelIfname checks a Linux interface name (IFNAMSIZ is 16 with the NUL).
func kernelIfname(v string) error {
	switch {
	case v == "":
		return fmt.Errorf("must not be empty")
	case len(v) > 15:
		return fmt.Errorf("interface name %q is longer than 15 bytes", v)
	case v == "." || v == ".." || strings.ContainsAny(v, "/: \t\n"):
		return fmt.Errorf("%q is not a valid interface name", v)
	}
	return nil
}

// actionNetns checks the namespace the kernel actioners work in: a name
// under /run/netns (ip netns add NAME) or an absolute path such as
// /proc/PID/ns/net, as the actioner accepts it.
func actionNetns(v string) error {
	if strings.HasPrefix(v, "/") {
		return nil
	}
	if v == "" {
		return fmt.Errorf("must not be empty when given")
	}
	return checkNetns(v)
}

// dpvsIfname checks a DPVS port name, which goes into a dpvs-agent URL path.
func dpvsIfname(v string) error {
	if v == "" {
		return fmt.Errorf("must not be empty")
	}
	if strings.ContainsAny(v, "/?# \t\n") {
		return fmt.Errorf("%q is not a valid DPVS interface name", v)
	}
	return nil
}

func actionSpecOf(name string, checkFile func(string, bool) error) (actionSpec, bool) {
	switch name {
	case ActionerBackendUpdate:
		return actionSpec{}, true
	case ActionerBlank:
		return actionSpec{anyParams: true}, true
	case ActionerKernelRoute, ActionerKernelRouteVerdict:
		return actionSpec{
			required: map[string]paramSpec{"ifname": kernelIfname},
			optional: map[string]paramSpec{"with-route": boolParam, "netns": actionNetns},
		}, true
	case ActionerDpvsAddr:
		return actionSpec{required: map[string]paramSpec{"dpvs-ifname": dpvsIfname}}, true
	case ActionerDpvsAddrKernel:
		// with-route really is optional here (DPVS refuses the actioner
		// without it, a bug).
		return actionSpec{
			required: map[string]paramSpec{"ifname": kernelIfname, "dpvs-ifname": dpvsIfname},
			optional: map[string]paramSpec{"with-route": boolParam, "netns": actionNetns},
		}, true
	case ActionerScript:
		return actionSpec{
			required: map[string]paramSpec{"script": func(v string) error {
				if v == "" {
					return fmt.Errorf("must not be empty")
				}
				return checkFile(v, true)
			}},
			optional: map[string]paramSpec{"args": nonEmpty},
		}, true
	}
	return actionSpec{}, false
}

// checkAction returns the problems of an actioner and its params; key
// "actioner" is the actioner name itself.
func checkAction(name string, params map[string]string, checkFile func(string, bool) error) []paramIssue {
	spec, ok := actionSpecOf(name, checkFile)
	if !ok {
		msg := fmt.Sprintf("unknown actioner %q (valid: %s)", name, strings.Join(Actioners(), ", "))
		if i := slices.IndexFunc(Actioners(), func(a string) bool { return strings.EqualFold(a, name) }); i >= 0 {
			msg += fmt.Sprintf("; names are case-sensitive: %s", Actioners()[i])
		}
		if name == "" {
			msg = fmt.Sprintf("must not be empty (valid: %s)", strings.Join(Actioners(), ", "))
		}
		return []paramIssue{{key: "actioner", msg: msg}}
	}
	if spec.anyParams {
		return nil
	}
	var out []paramIssue
	for _, k := range sortedKeys(spec.required) {
		if _, ok := params[k]; !ok {
			out = append(out, issuef(k, "required by %s", name))
		}
	}
	for _, k := range sortedKeys(params) {
		check, ok := spec.required[k]
		if !ok {
			check, ok = spec.optional[k]
		}
		if !ok {
			valid := append(sortedKeys(spec.required), sortedKeys(spec.optional)...)
			if len(valid) == 0 {
				out = append(out, issuef(k, "%s takes no params", name))
			} else {
				out = append(out, issuef(k, "not a %s param (valid: %s)", name, strings.Join(valid, ", ")))
			}
			continue
		}
		if err := check(params[k]); err != nil {
			out = append(out, issuef(k, "%v", err))
		}
	}
	return out
}

// Value syntaxes shared with the probers and actioners.

// ParseBool reads the booleans DPVS params accept: yes/no, true/false
// (and on/off), in any case.
func ParseBool(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "yes", "true", "on":
		return true, nil
	case "no", "false", "off":
		return false, nil
	}
	return false, fmt.Errorf("must be yes/no or true/false, got %q", s)
}

// DecodeEscapes turns the escapes of a send/receive payload into bytes:
// \xHH (two hex digits), \0, \r, \n, \t and \\. Other backslashes are
// errors, so a typo cannot silently change the bytes sent. (In a
// double-quoted YAML string, YAML has already decoded its own escapes;
// these are for plain and single-quoted strings.)
func DecodeEscapes(s string) ([]byte, error) {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		if i+1 >= len(s) {
			return nil, fmt.Errorf("escape at byte %d: lone backslash at the end (write \\\\ for a backslash)", i)
		}
		i++
		switch s[i] {
		case '\\':
			out = append(out, '\\')
		case '0':
			out = append(out, 0)
		case 'r':
			out = append(out, '\r')
		case 'n':
			out = append(out, '\n')
		case 't':
			out = append(out, '\t')
		case 'x':
			if i+2 >= len(s) {
				return nil, fmt.Errorf("escape at byte %d: \\x needs two hex digits", i-1)
			}
			v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return nil, fmt.Errorf("escape at byte %d: \\x needs two hex digits, got %q", i-1, s[i+1:i+3])
			}
			out = append(out, byte(v))
			i += 2
		default:
			return nil, fmt.Errorf("escape at byte %d: unknown escape \\%c (valid: \\xHH \\0 \\r \\n \\t \\\\)", i-1, s[i])
		}
	}
	return out, nil
}

// StatusRange is an inclusive range of HTTP status codes.
type StatusRange struct{ Lo, Hi int }

// Contains reports whether code is in the range.
func (r StatusRange) Contains(code int) bool { return code >= r.Lo && code <= r.Hi }

// DefaultResponseCodes is what an http check accepts when response-codes is
// not set (DPVS's default: everything but 5xx).
const DefaultResponseCodes = "200-299,300-399,400-499"

// ParseResponseCodes reads a comma-separated list of codes and inclusive
// ranges ("200,301-302"), spaces allowed. Codes must be 100..599.
func ParseResponseCodes(s string) ([]StatusRange, error) {
	var out []StatusRange
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		r := StatusRange{}
		var err1, err2 error
		r.Lo, err1 = strconv.Atoi(strings.TrimSpace(lo))
		r.Hi = r.Lo
		if isRange {
			r.Hi, err2 = strconv.Atoi(strings.TrimSpace(hi))
		}
		switch {
		case part == "":
			return nil, fmt.Errorf("empty entry in %q (want codes or ranges such as 200,301-302)", s)
		case err1 != nil || err2 != nil:
			return nil, fmt.Errorf("%q is not a code or a range N-M", part)
		case r.Lo < 100 || r.Hi > 599:
			return nil, fmt.Errorf("%q: status codes are 100..599", part)
		case r.Lo > r.Hi:
			return nil, fmt.Errorf("%q: range start is after its end", part)
		}
		out = append(out, r)
	}
	return out, nil
}

// Header is one HTTP request header.
type Header struct{ Name, Value string }

// ParseRequestHeaders reads DPVS's request-headers syntax:
// "Name::Value;;Name::Value", names and values non-empty.
func ParseRequestHeaders(s string) ([]Header, error) {
	var out []Header
	for part := range strings.SplitSeq(s, ";;") {
		name, value, ok := strings.Cut(part, "::")
		name = strings.TrimSpace(name)
		switch {
		case !ok || name == "" || value == "":
			return nil, fmt.Errorf("%q: want Name::Value (entries separated by ;;)", part)
		case strings.ContainsAny(name, " \t\r\n:()<>@,;\\\"/[]?={}"):
			return nil, fmt.Errorf("%q is not a valid header name", name)
		case strings.ContainsAny(value, "\r\n\x00"):
			return nil, fmt.Errorf("value of %s must not contain line breaks", name)
		}
		out = append(out, Header{Name: name, Value: value})
	}
	return out, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
