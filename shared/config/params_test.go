package config

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/healthmesh/healthmesh/shared/subject"
)

func TestMethod(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Method
		err  string
	}{
		{"1", MethodNone, ""}, {"2", MethodTCP, ""}, {"3", MethodUDP, ""}, {"4", MethodPing, ""},
		{"5", MethodUDPPing, ""}, {"6", MethodHTTP, ""}, {"10000", MethodAuto, ""},
		{"none", MethodNone, ""}, {"TCP", MethodTCP, ""}, {"udp", MethodUDP, ""}, {"Ping", MethodPing, ""},
		{"udpping", MethodUDPPing, ""}, {"http", MethodHTTP, ""}, {"auto", MethodAuto, ""},
		{"65535", 0, "passive) is not supported"}, {"passive", 0, "not supported"},
		{"7", 0, "unknown method 7"}, {"https", 0, `unknown method "https"`}, {"", 0, "unknown method"},
	} {
		t.Run(snake("parse_"+tc.in), func(t *testing.T) {
			got, err := ParseMethod(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseMethod(%q) error = %v, want %q", tc.in, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseMethod(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
			if back, err := ParseMethod(got.String()); err != nil || back != got {
				t.Errorf("String %q does not parse back: %v %v", got.String(), back, err)
			}
		})
	}
	checkFields(t, []field{
		{"string", []string{MethodNone.String(), MethodUDPPing.String(), MethodAuto.String(), MethodPassive.String(), Method(9).String()},
			[]string{"none", "udpping", "auto", "passive", "method9"}},
		{"auto tcp", MethodAuto.ResolveAuto(subject.TCP), MethodTCP},
		{"auto udp", MethodAuto.ResolveAuto(subject.UDP), MethodUDPPing},
		{"auto other", MethodAuto.ResolveAuto(subject.Proto(1)), MethodPing},
		{"http stays", MethodHTTP.ResolveAuto(subject.UDP), MethodHTTP},
		{"probed", []bool{MethodNone.Probed(), MethodHTTP.Probed(), MethodAuto.Probed(), MethodPassive.Probed()},
			[]bool{true, true, false, false}},
		{"annotation", methodAnnotation(),
			"# Check Method Annotations: 1-none, 2-tcp, 3-udp, 4-ping, 5-udpping, 6-http, 10000-auto, 65535-passive"},
	})
}

func TestMethodParams(t *testing.T) {
	for _, tc := range []struct {
		name   string
		m      Method
		params map[string]string
		bad    []string // keys reported, sorted
	}{
		{"none_accepts_anything", MethodNone, map[string]string{"whatever": "x"}, nil},
		{"tcp_all", MethodTCP, map[string]string{"send": `PING\r\n`, "receive": "+PONG", "proxy-protocol": "V2"}, nil},
		{"tcp_v1", MethodTCP, map[string]string{"proxy-protocol": "v1"}, nil},
		{"tcp_empty_send", MethodTCP, map[string]string{"send": ""}, []string{"send"}},
		{"tcp_bad_escape", MethodTCP, map[string]string{"receive": `\xZZ`}, []string{"receive"}},
		{"tcp_unknown", MethodTCP, map[string]string{"quic": "true"}, []string{"quic"}},
		{"udp_v2_only", MethodUDP, map[string]string{"proxy-protocol": "v1", "send": "x"}, []string{"proxy-protocol"}},
		{"udpping_like_udp", MethodUDPPing, map[string]string{"send": "a", "receive": "b", "proxy-protocol": "v2"}, nil},
		{"ping_none", MethodPing, map[string]string{"size": "1"}, []string{"size"}},
		{"http_all", MethodHTTP, map[string]string{
			"method": "HEAD", "host": "example.org", "uri": "https://example.org/x", "https": "yes",
			"tls-verify": "false", "proxy": "no", "proxy-protocol": "v1", "request-headers": "A::b;;C::d",
			"request": "{}", "response-codes": "200, 301-302", "response": "ok", "response-regex": `^o+k$`,
		}, nil},
		{"http_bad", MethodHTTP, map[string]string{
			"method": "DELETE", "host": "", "uri": "ftp://x/", "https": "si", "request-headers": "A:b",
			"response-codes": "99", "response-regex": "(", "request-header": "typo",
		}, []string{"host", "https", "method", "request-header", "request-headers", "response-codes", "response-regex", "uri"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, is := range checkMethodParams(tc.m, tc.params) {
				if is.msg == "" {
					t.Errorf("empty message for %s", is.key)
				}
				got = append(got, is.key)
			}
			if !reflect.DeepEqual(got, tc.bad) {
				t.Errorf("bad keys = %v, want %v", got, tc.bad)
			}
		})
	}
}

func TestActionParams(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "announce.sh")
	plain := filepath.Join(dir, "plain.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(plain, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		actioner string
		params   map[string]string
		check    func(string, bool) error
		bad      []string
	}{
		{"backend_update_none", ActionerBackendUpdate, nil, LocalFile, nil},
		{"backend_update_rejects_params", ActionerBackendUpdate, map[string]string{"ifname": "lo"}, LocalFile, []string{"ifname"}},
		{"blank_anything", ActionerBlank, map[string]string{"x": "y"}, LocalFile, nil},
		{"kernel_route", ActionerKernelRoute, map[string]string{"ifname": "lo", "with-route": "yes"}, LocalFile, nil},
		{"kernel_route_needs_ifname", ActionerKernelRoute, nil, LocalFile, []string{"ifname"}},
		{"kernel_route_netns_name", ActionerKernelRoute, map[string]string{"ifname": "hm0", "netns": "lb1"}, LocalFile, nil},
		{"kernel_route_netns_path", ActionerKernelRouteVerdict, map[string]string{"ifname": "hm0", "netns": "/proc/1/ns/net"}, LocalFile, nil},
		{"kernel_route_netns_bad", ActionerKernelRoute, map[string]string{"ifname": "hm0", "netns": "a/b"}, LocalFile, []string{"netns"}},
		{"kernel_route_netns_empty", ActionerKernelRoute, map[string]string{"ifname": "hm0", "netns": ""}, LocalFile, []string{"netns"}},
		{"dpvs_addr_kernel_netns", ActionerDpvsAddrKernel, map[string]string{"ifname": "hm0", "dpvs-ifname": "dpdk0", "netns": "lb1"}, LocalFile, nil},
		{"verdict_bad_with_route", ActionerKernelRouteVerdict, map[string]string{"ifname": "lo", "with-route": "sometimes"}, LocalFile, []string{"with-route"}},
		{"dpvs_addr", ActionerDpvsAddr, map[string]string{"dpvs-ifname": "dpdk0.102"}, LocalFile, nil},
		{"dpvs_addr_no_ifname", ActionerDpvsAddr, map[string]string{"dpvs-ifname": "dpdk0", "ifname": "lo"}, LocalFile, []string{"ifname"}},
		{"dpvs_addr_kernel_without_with_route", ActionerDpvsAddrKernel, map[string]string{"ifname": "lo", "dpvs-ifname": "dpdk0"}, LocalFile, nil},
		{"dpvs_addr_kernel_missing", ActionerDpvsAddrKernel, map[string]string{"with-route": "no"}, LocalFile, []string{"dpvs-ifname", "ifname"}},
		{"script_executable", ActionerScript, map[string]string{"script": script, "args": "dpdk0"}, LocalFile, nil},
		{"script_not_executable", ActionerScript, map[string]string{"script": plain}, LocalFile, []string{"script"}},
		{"script_missing", ActionerScript, map[string]string{"script": filepath.Join(dir, "nope")}, LocalFile, []string{"script"}},
		{"script_check_skipped", ActionerScript, map[string]string{"script": "/elsewhere/announce"}, NoFileCheck, nil},
		{"script_required", ActionerScript, map[string]string{"args": "x"}, NoFileCheck, []string{"script"}},
		{"unknown_actioner", "Bogus", nil, LocalFile, []string{"actioner"}},
		{"empty_actioner", "", nil, LocalFile, []string{"actioner"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, is := range checkAction(tc.actioner, tc.params, tc.check) {
				got = append(got, is.key)
			}
			if !reflect.DeepEqual(got, tc.bad) {
				t.Errorf("bad keys = %v, want %v", got, tc.bad)
			}
		})
	}
	t.Run("unknown_actioner_lists_valid_names", func(t *testing.T) {
		iss := checkAction("Scrpt", nil, NoFileCheck)
		if len(iss) != 1 || !strings.Contains(iss[0].msg, strings.Join(Actioners(), ", ")) {
			t.Errorf("message %v does not list the actioners", iss)
		}
	})
	t.Run("options_check_file_is_used", func(t *testing.T) {
		var asked []string
		opts := Options{CheckFile: func(path string, exec bool) error {
			asked = append(asked, path)
			return nil
		}}
		text := "virtual-addresses:\n  192.0.2.1: {actioner: Script, action-params: {script: /opt/a.sh}}\nbus: {creds-file: /opt/hm.creds}\n"
		if _, _, err := opts.Parse([]byte(text), "t"); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(asked, []string{"/opt/a.sh", "/opt/hm.creds"}) {
			t.Errorf("CheckFile asked for %v", asked)
		}
	})
}

func TestDecodeEscapes(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []byte
		err      string
	}{
		{"plain", "hello", []byte("hello"), ""},
		{"crlf", `PING\r\n`, []byte("PING\r\n"), ""},
		{"hex", `\x00\x01\xff`, []byte{0, 1, 0xff}, ""},
		{"hex_upper", `\xAB`, []byte{0xab}, ""},
		{"nul_tab_backslash", `\0\t\\`, []byte{0, '\t', '\\'}, ""},
		{"empty", "", []byte{}, ""},
		{"unknown", `\q`, nil, `unknown escape \q`},
		{"short_hex", `\x1`, nil, "two hex digits"},
		{"bad_hex", `\xg0`, nil, "two hex digits"},
		{"lone_backslash", `abc\`, nil, "lone backslash"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeEscapes(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("DecodeEscapes(%q) error = %v, want %q", tc.in, err, tc.err)
				}
				return
			}
			if err != nil || !bytes.Equal(got, tc.want) {
				t.Errorf("DecodeEscapes(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestParseResponseCodes(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []StatusRange
		err      bool
	}{
		{"default", DefaultResponseCodes, []StatusRange{{200, 299}, {300, 399}, {400, 499}}, false},
		{"single_and_spaces", " 200 , 301 - 302", []StatusRange{{200, 200}, {301, 302}}, false},
		{"empty", "", nil, true},
		{"trailing_comma", "200,", nil, true},
		{"reversed", "302-301", nil, true},
		{"out_of_range", "600", nil, true},
		{"word", "ok", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseResponseCodes(tc.in)
			if (err != nil) != tc.err || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ParseResponseCodes(%q) = %v, %v; want %v (error %v)", tc.in, got, err, tc.want, tc.err)
			}
		})
	}
	if r := (StatusRange{200, 299}); !r.Contains(204) || r.Contains(300) {
		t.Errorf("Contains is wrong for %v", r)
	}
}

func TestParseRequestHeaders(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []Header
		err      bool
	}{
		{"two", "Host::a.example;;X-Id::7", []Header{{"Host", "a.example"}, {"X-Id", "7"}}, false},
		{"value_with_colon", "X-Url::http://x", []Header{{"X-Url", "http://x"}}, false},
		{"single_colon", "Host:a", nil, true},
		{"empty_value", "Host::", nil, true},
		{"empty_name", "::v", nil, true},
		{"bad_name", "Bad Name::v", nil, true},
		{"line_break", "A::b\r\nEvil: 1", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseRequestHeaders(tc.in)
			if (err != nil) != tc.err || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ParseRequestHeaders(%q) = %v, %v; want %v (error %v)", tc.in, got, err, tc.want, tc.err)
			}
		})
	}
}

func TestParseByteSizeAndBool(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ByteSize
		err  bool
	}{
		{"1024", 1024, false}, {"1KiB", 1024, false}, {"512 MiB", 512 << 20, false}, {"10GB", 10e9, false},
		{"2tib", 2 << 40, false}, {"7B", 7, false}, {"unlimited", Unlimited, false}, {"-1", Unlimited, false},
		{"-2", 0, true}, {"lots", 0, true}, {"1.5GB", 0, true}, {"99999999999TiB", 0, true},
	} {
		t.Run(snake("size_"+tc.in), func(t *testing.T) {
			got, err := ParseByteSize(tc.in)
			if (err != nil) != tc.err || got != tc.want {
				t.Errorf("ParseByteSize(%q) = %v, %v; want %v (error %v)", tc.in, got, err, tc.want, tc.err)
			}
		})
	}
	for _, tc := range []struct {
		in   string
		want bool
		err  bool
	}{{"yes", true, false}, {"TRUE", true, false}, {"on", true, false}, {"No", false, false},
		{"false", false, false}, {"off", false, false}, {"1", false, true}, {"", false, true}} {
		t.Run(snake("bool_"+tc.in), func(t *testing.T) {
			got, err := ParseBool(tc.in)
			if (err != nil) != tc.err || got != tc.want {
				t.Errorf("ParseBool(%q) = %v, %v", tc.in, got, err)
			}
		})
	}
}

func TestSourceAndNetns(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"127.0.0.1", true}, {"::1", true}, {"fe80::1%eth0", true},
		{`{{ GetPrivateIP }}`, true},
		{`{{ GetAllInterfaces | include "name" "lo" | exclude "type" "IPv6" | attr "address" }}`, true},
		{"eth0", false}, {`{{ GetPrivateIP `, false}, {`{{ NoSuchFunc }}`, false},
	} {
		t.Run(snake("source_"+tc.in), func(t *testing.T) {
			if err := checkSource(tc.in); (err == nil) != tc.ok {
				t.Errorf("checkSource(%q) = %v, want ok=%v", tc.in, err, tc.ok)
			}
		})
	}
	for _, tc := range []struct {
		in string
		ok bool
	}{{"blue", true}, {"probe-ns_1", true}, {"a/b", false}, {"..", false}, {strings.Repeat("n", 256), false}} {
		t.Run(snake("netns_"+tc.in[:min(len(tc.in), 8)]), func(t *testing.T) {
			if err := checkNetns(tc.in); (err == nil) != tc.ok {
				t.Errorf("checkNetns(%q) = %v, want ok=%v", tc.in, err, tc.ok)
			}
		})
	}
}

// snake turns a table value into a snake_case subtest name.
func snake(s string) string {
	var b strings.Builder
	under := false
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			under = false
			continue
		}
		if !under {
			b.WriteByte('_')
			under = true
		}
	}
	return strings.TrimRight(b.String(), "_")
}

func TestNamesAndURLs(t *testing.T) {
	checkFields(t, []field{
		{"down policies", []string{OneOf.String(), AllOf.String(), DownPolicy(3).String()}, []string{"oneOf", "allOf", "policy3"}},
		{"observers", []string{Observers(3).String(), ObserversAll.String()}, []string{"3", "all"}},
		{"byte sizes", []string{ByteSize(10).String(), Unlimited.String()}, []string{"10", "unlimited"}},
		{"agent :port", DPVSAgent{Addr: ":8082"}.URL(), "http://127.0.0.1:8082"},
		{"agent host:port", DPVSAgent{Addr: "127.0.0.5:9000"}.URL(), "http://127.0.0.5:9000"},
		{"agent https", DPVSAgent{Addr: "https://[::1]:8443"}.URL(), "https://[::1]:8443"},
		{"agent http empty host", DPVSAgent{Addr: "http://:9000"}.URL(), "http://127.0.0.1:9000"},
		{"backend id", Backend{Addr: netip.MustParseAddr("127.0.0.1"), Port: 80}.ID(subject.UDP).String(), "127.0.0.1-UDP-80"},
		{"kernel ifname ok", kernelIfname("dpdk0.102.kni") == nil, true},
		{"kernel ifname slash", kernelIfname("a/b") != nil, true},
		{"kernel ifname empty", kernelIfname("") != nil, true},
		{"dpvs ifname ok", dpvsIfname("dpdk0.102") == nil, true},
		{"dpvs ifname path", dpvsIfname("dpdk0/x") != nil, true},
		{"dpvs ifname empty", dpvsIfname("") != nil, true},
	})
}

func TestInheritedAutoParamsOfServices(t *testing.T) {
	text := `
global:
  virtual-server:
    method: auto
    method-params: {proxy-protocol: v1}
services:
  192.0.2.1-TCP-80:
    backends: [{addr: 127.0.0.1}]
  192.0.2.1-UDP-53:
    backends: [{addr: 127.0.0.1}]
`
	_, _, err := Parse([]byte(text), "t")
	want := "services/192.0.2.1-UDP-53: method-params/proxy-protocol inherited from global/virtual-server: must be v2, got \"v1\" (auto is udpping for UDP); give this service a virtual-servers block (line 9)"
	if err == nil || err.Error() != want {
		t.Errorf("error = %v\nwant %s", err, want)
	}
}
