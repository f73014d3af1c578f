package probe

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/healthmesh/healthmesh/shared/config"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/subject"
)

func TestEveryMethodHasAnImplementation(t *testing.T) {
	pg := NewPinger(PingerOptions{})
	t.Cleanup(func() { pg.Close() })
	seen := map[reflect.Type]string{}
	for _, m := range Methods() {
		t.Run(m, func(t *testing.T) {
			p, err := New(m, nil, Deps{Pinger: pg})
			if err != nil || p == nil {
				t.Fatalf("New(%q) = %v, %v", m, p, err)
			}
			typ := reflect.TypeOf(p)
			if other, dup := seen[typ]; dup {
				t.Fatalf("methods %q and %q share implementation %v", m, other, typ)
			}
			seen[typ] = m
			if _, err := New(m, map[string]string{"no-such-key": "x"}, Deps{Pinger: pg}); m != MethodNone && !errors.Is(err, ErrParam) {
				t.Fatalf("New(%q) with an unknown key: err = %v, want ErrParam", m, err)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	pg := NewPinger(PingerOptions{})
	t.Cleanup(func() { pg.Close() })
	deps := Deps{Pinger: pg}
	cases := []struct {
		name    string
		method  string
		params  map[string]string
		deps    Deps
		wantErr error
		wantIn  string // the message must name what is wrong
	}{
		{"unknown_method", "tcpx", nil, deps, ErrMethod, `"tcpx"`},
		{"auto_not_resolved", MethodAuto, nil, deps, ErrMethod, "Resolve"},
		{"tcp_unknown_key", MethodTCP, map[string]string{"sned": "x"}, deps, ErrParam, `"sned"`},
		{"tcp_empty_send", MethodTCP, map[string]string{"send": ""}, deps, ErrParam, `"send": must not be empty`},
		{"tcp_bad_escape", MethodTCP, map[string]string{"receive": `ok\q`}, deps, ErrParam, `"receive"`},
		{"tcp_bad_proxy_protocol", MethodTCP, map[string]string{"proxy-protocol": "v3"}, deps, ErrParam, `"proxy-protocol"`},
		{"udp_proxy_v1_rejected", MethodUDP, map[string]string{"proxy-protocol": "v1"}, deps, ErrParam, "want v2"},
		{"udp_quic_key", MethodUDP, map[string]string{"quic": "true"}, deps, ErrParam, `"quic"`},
		{"udpping_unknown_key", MethodUDPPing, map[string]string{"recieve": "x"}, deps, ErrParam, `udpping: "recieve"`},
		{"ping_takes_no_params", MethodPing, map[string]string{"send": "x"}, deps, ErrParam, "no method-params"},
		{"ping_needs_pinger", MethodPing, nil, Deps{}, ErrDeps, "Pinger"},
		{"udpping_needs_pinger", MethodUDPPing, nil, Deps{}, ErrDeps, "Pinger"},
		{"http_lower_case_method", MethodHTTP, map[string]string{"method": "get"}, deps, ErrParam, `"method"`},
		{"http_relative_uri", MethodHTTP, map[string]string{"uri": "healthz"}, deps, ErrParam, `"uri"`},
		{"http_ftp_uri", MethodHTTP, map[string]string{"uri": "ftp://x/y"}, deps, ErrParam, `"uri"`},
		{"http_bad_bool", MethodHTTP, map[string]string{"tls-verify": "maybe"}, deps, ErrParam, `"tls-verify"`},
		{"http_header_control_char", MethodHTTP, map[string]string{"request-headers": "X-A::b\x01"}, deps, ErrParam, "invalid value"},
		{"http_codes_reversed", MethodHTTP, map[string]string{"response-codes": "300-200"}, deps, ErrParam, "start is after"},
		{"http_codes_garbage", MethodHTTP, map[string]string{"response-codes": "200,abc"}, deps, ErrParam, `"abc"`},
		{"http_codes_out_of_range", MethodHTTP, map[string]string{"response-codes": "20-99"}, deps, ErrParam, "status codes are"},
		{"http_headers_no_separator", MethodHTTP, map[string]string{"request-headers": "X-A:b"}, deps, ErrParam, "Name::Value"},
		{"http_headers_empty_value", MethodHTTP, map[string]string{"request-headers": "X-A::b;;X-B::"}, deps, ErrParam, `"X-B::"`},
		{"http_headers_bad_name", MethodHTTP, map[string]string{"request-headers": "X A::b"}, deps, ErrParam, "header name"},
		{"http_bad_regex", MethodHTTP, map[string]string{"response-regex": "("}, deps, ErrParam, `"response-regex"`},
		{"http_bad_host", MethodHTTP, map[string]string{"host": "a b"}, deps, ErrParam, `"host"`},
		{"http_unknown_key", MethodHTTP, map[string]string{"request-header": "A::b"}, deps, ErrParam, `"request-header"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(tc.method, tc.params, tc.deps)
			if !errors.Is(err, tc.wantErr) || p != nil {
				t.Fatalf("New = %v, %v; want error %v", p, err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantIn) {
				t.Fatalf("error %q does not mention %q", err, tc.wantIn)
			}
		})
	}
}

func TestNoneAcceptsAnyParams(t *testing.T) {
	p, err := New(MethodNone, map[string]string{"anything": "goes"}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	r := p.Probe(context.Background(), &Target{})
	wantResult(t, r, event.Up, event.ReasonNone)
}

func TestResolve(t *testing.T) {
	cases := []struct {
		name   string
		method string
		proto  subject.Proto
		want   string
	}{
		{"auto_tcp", MethodAuto, subject.TCP, MethodTCP},
		{"auto_udp", MethodAuto, subject.UDP, MethodUDPPing},
		{"auto_other", MethodAuto, subject.Proto(132), MethodPing},
		{"explicit_kept", MethodHTTP, subject.UDP, MethodHTTP},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Resolve(tc.method, tc.proto); got != tc.want {
				t.Fatalf("Resolve(%q, %v) = %q, want %q", tc.method, tc.proto, got, tc.want)
			}
		})
	}
}

func TestPayloadEscapes(t *testing.T) {
	cases := []struct {
		name    string
		in      string
		want    string
		wantErr string
	}{
		{"plain", "PING", "PING", ""},
		{"crlf_tab_backslash_nul", `a\r\n\t\\\0`, "a\r\n\t\\\x00", ""},
		{"hex", `\x00\xfF\x41`, "\x00\xffA", ""},
		{"unknown_escape_names_key", `a\q`, "", `tcp: "send"`},
		{"trailing_backslash_names_key", `a\`, "", `tcp: "send"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := parseTCPParams(map[string]string{"send": tc.in})
			if tc.wantErr != "" {
				if !errors.Is(err, ErrParam) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parse %q: err = %v, want %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil || string(p.Send) != tc.want {
				t.Fatalf("parse %q = %q, %v; want %q", tc.in, p.Send, err, tc.want)
			}
		})
	}
}

// TestMethodsMatchConfig: every method the configuration accepts as probed
// has a prober, and nothing else does.
func TestMethodsMatchConfig(t *testing.T) {
	var fromConfig []string
	for m := config.Method(0); m < 100; m++ {
		if m.Probed() {
			fromConfig = append(fromConfig, m.String())
		}
	}
	if !reflect.DeepEqual(fromConfig, Methods()) {
		t.Fatalf("config probes %v, Methods() = %v", fromConfig, Methods())
	}
}

func TestParseHTTPParams(t *testing.T) {
	cases := []struct {
		name   string
		params map[string]string
		check  func(t *testing.T, p HTTPParams)
	}{
		{"defaults", nil, func(t *testing.T, p HTTPParams) {
			if p.Method != "GET" || p.RequestURI != "/" || p.Host != "" || p.HTTPS || p.TLSSkipVerify || p.Proxy {
				t.Fatalf("defaults = %+v", p)
			}
			if got := NewHTTP(p, nil).p.Codes; !reflect.DeepEqual(got, []config.StatusRange{{Lo: 200, Hi: 299}, {Lo: 300, Hi: 399}, {Lo: 400, Hi: 499}}) {
				t.Fatalf("default codes = %v", got)
			}
		}},
		{"absolute_https_uri", map[string]string{"uri": "https://svc.example:8443/health?deep=1"}, func(t *testing.T, p HTTPParams) {
			if !p.HTTPS || p.Host != "svc.example:8443" || p.RequestURI != "/health?deep=1" {
				t.Fatalf("got %+v", p)
			}
		}},
		{"https_no_does_not_undo_https_uri", map[string]string{"uri": "https://a.example/", "https": "no"}, func(t *testing.T, p HTTPParams) {
			if !p.HTTPS {
				t.Fatal("https uri must force TLS")
			}
		}},
		{"host_param_wins", map[string]string{"uri": "http://a.example/", "host": "b.example", "request-headers": "Host::c.example"}, func(t *testing.T, p HTTPParams) {
			if p.Host != "b.example" {
				t.Fatalf("Host = %q, want b.example", p.Host)
			}
		}},
		{"host_header_before_uri_host", map[string]string{"uri": "http://a.example/", "request-headers": "Host::c.example;;X-Y::z"}, func(t *testing.T, p HTTPParams) {
			if p.Host != "c.example" || p.Header.Get("X-Y") != "z" || p.Header.Get("Host") != "" {
				t.Fatalf("Host = %q, header %v", p.Host, p.Header)
			}
		}},
		{"tls_verify_off_and_codes", map[string]string{"tls-verify": "NO", "response-codes": " 200 , 301-302 "}, func(t *testing.T, p HTTPParams) {
			if !p.TLSSkipVerify || !reflect.DeepEqual(p.Codes, []config.StatusRange{{Lo: 200, Hi: 200}, {Lo: 301, Hi: 302}}) {
				t.Fatalf("got %+v", p)
			}
		}},
		{"header_values", map[string]string{"request-headers": "X-A::1;;X-A::2;;Authorization::Bearer t"}, func(t *testing.T, p HTTPParams) {
			if want := (http.Header{"X-A": {"1", "2"}, "Authorization": {"Bearer t"}}); !reflect.DeepEqual(p.Header, want) {
				t.Fatalf("header = %v, want %v", p.Header, want)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := parseHTTPParams(tc.params)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, p)
		})
	}
}

func TestTargetValidation(t *testing.T) {
	pg := NewPinger(PingerOptions{})
	t.Cleanup(func() { pg.Close() })
	good := netip.MustParseAddrPort("127.0.0.1:9")
	cases := []struct {
		name   string
		target *Target
		want   string
	}{
		{"nil_target", nil, "no target"},
		{"no_address", &Target{Timeout: time.Second}, "no address"},
		{"zero_timeout", &Target{Addr: good}, "timeout 0s must be > 0"},
		{"negative_timeout", &Target{Addr: good, Timeout: -time.Second}, "must be > 0"},
		{"family_mismatch", &Target{Addr: good, Timeout: time.Second, Source: netip.MustParseAddr("::1")}, "different address families"},
	}
	for _, m := range Methods() {
		if m == MethodNone {
			continue
		}
		p, err := New(m, nil, Deps{Pinger: pg})
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range cases {
			t.Run(m+"_"+tc.name, func(t *testing.T) {
				r := p.Probe(context.Background(), tc.target)
				wantResult(t, r, event.Unknown, event.ReasonPROCERR)
				if r.Verdict() || !strings.Contains(r.Detail, tc.want) {
					t.Fatalf("detail %q, want it to contain %q", r.Detail, tc.want)
				}
			})
		}
	}
}

func TestResolveSource(t *testing.T) {
	cases := []struct {
		name    string
		tmpl    string
		want    string
		wantErr string
	}{
		{"literal_v4", "127.0.0.2", "127.0.0.2", ""},
		{"literal_v6", " ::1 ", "::1", ""},
		{"template_one_address", `{{ GetAllInterfaces | include "name" "^lo$" | include "type" "IPv4" | attr "address" }}`, "127.0.0.1", ""},
		{"template_two_addresses", `{{ GetAllInterfaces | include "name" "^lo$" | join "address" " " }}`, "", "want exactly one"},
		{"template_no_address", `{{ GetAllInterfaces | include "name" "^no-such-if$" | attr "address" }}`, "", "yields 0 addresses"},
		{"bad_template", `{{ NoSuchFunc }}`, "", "template"},
		{"empty", "  ", "", "empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ResolveSource(tc.tmpl)
			if tc.wantErr != "" {
				if !errors.Is(err, ErrSource) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ResolveSource(%q) = %v, %v; want error %q", tc.tmpl, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != netip.MustParseAddr(tc.want) {
				t.Fatalf("ResolveSource(%q) = %v, %v; want %s", tc.tmpl, got, err, tc.want)
			}
		})
	}
}

func TestHTTPTypedParamsBadURI(t *testing.T) {
	p := NewHTTP(HTTPParams{RequestURI: "http://elsewhere.example/"}, nil)
	r := p.Probe(context.Background(), target(t, "127.0.0.1:9", time.Second))
	wantResult(t, r, event.Unknown, event.ReasonPROCERR)
	if !strings.Contains(r.Detail, "not a path") {
		t.Fatalf("detail %q", r.Detail)
	}
}
