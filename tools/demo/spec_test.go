package demo

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// specErr fails t unless err matches want (an ErrSpec containing want, or
// nil when want is empty); it reports whether an error was expected.
func specErr(t *testing.T, err error, want string) bool {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatal(err)
		}
		return false
	}
	if err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, ErrSpec) {
		t.Fatalf("err = %v, want ErrSpec containing %q", err, want)
	}
	return true
}

func TestParseSpec(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Spec
		wantErr string
	}{
		{name: "tcp", in: "tcp://127.0.0.11:8080", want: Spec{Proto: TCP, Addr: "127.0.0.11:8080"}},
		{name: "upper_case_proto", in: "HTTP://127.0.0.12:8080/", want: Spec{Proto: HTTP, Addr: "127.0.0.12:8080"}},
		{name: "ipv6_port_zero", in: "udp://[::1]:0", want: Spec{Proto: UDP, Addr: "[::1]:0"}},
		{name: "all_parameters", in: "http://127.0.0.12:80?name=web1&status=503&delay=2s",
			want: Spec{Name: "web1", Proto: HTTP, Addr: "127.0.0.12:80", Status: 503, Delay: 2 * time.Second}},
		{name: "escaped_banner", in: "tcp://127.0.0.11:22?banner=SSH-2.0-demo%0D%0A",
			want: Spec{Proto: TCP, Addr: "127.0.0.11:22", Banner: "SSH-2.0-demo\r\n"}},
		{name: "unknown_proto", in: "sctp://127.0.0.1:1", wantErr: `proto "sctp"`},
		{name: "host_name", in: "tcp://localhost:80", wantErr: `addr "localhost:80"`},
		{name: "no_port", in: "tcp://127.0.0.1", wantErr: `addr "127.0.0.1"`},
		{name: "no_scheme", in: "127.0.0.1:80", wantErr: "want proto://ip:port"},
		{name: "path", in: "http://127.0.0.1:80/x", wantErr: "no path"},
		{name: "unknown_parameter", in: "tcp://127.0.0.1:80?colour=red", wantErr: `unknown parameter "colour"`},
		{name: "status_on_tcp", in: "tcp://127.0.0.1:80?status=503", wantErr: "only http"},
		{name: "banner_on_udp", in: "udp://127.0.0.1:53?banner=x", wantErr: "only tcp"},
		{name: "status_out_of_range", in: "http://127.0.0.1:80?status=99", wantErr: "status 99"},
		{name: "bad_delay", in: "tcp://127.0.0.1:80?delay=soon", wantErr: `delay "soon"`},
		{name: "bad_name", in: "tcp://127.0.0.1:80?name=a/b", wantErr: `name "a/b"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSpec(tc.in)
			if specErr(t, err, tc.wantErr) {
				return
			}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseRange(t *testing.T) {
	tests := []struct {
		name     string
		proto    Proto
		in       string
		wantN    int
		wantAddr []string // first and last
		wantErr  string
	}{
		{name: "ports", proto: TCP, in: "127.0.0.1:20000-29999", wantN: 10000, wantAddr: []string{"127.0.0.1:20000", "127.0.0.1:29999"}},
		{name: "one", proto: UDP, in: "127.0.0.1:53", wantN: 1, wantAddr: []string{"127.0.0.1:53", "127.0.0.1:53"}},
		{name: "addresses_and_ports", proto: HTTP, in: "127.0.1.254-127.0.2.1:80-81", wantN: 8,
			wantAddr: []string{"127.0.1.254:80", "127.0.2.1:81"}},
		{name: "ipv6", proto: TCP, in: "[::1]:9000-9001", wantN: 2, wantAddr: []string{"[::1]:9000", "[::1]:9001"}},
		{name: "port_zero_alone", proto: TCP, in: "127.0.0.1-127.0.0.3:0", wantN: 3, wantAddr: []string{"127.0.0.1:0", "127.0.0.3:0"}},
		{name: "ipv6_without_brackets", proto: TCP, in: "::1:80", wantErr: "brackets"},
		{name: "reversed_ports", proto: TCP, in: "127.0.0.1:90-80", wantErr: "ports"},
		{name: "port_too_big", proto: TCP, in: "127.0.0.1:65000-70000", wantErr: "ports"},
		{name: "port_zero_in_range", proto: TCP, in: "127.0.0.1:0-10", wantErr: "port 0"},
		{name: "mixed_families", proto: TCP, in: "[127.0.0.1-::1]:80", wantErr: "addresses"},
		{name: "reversed_addresses", proto: TCP, in: "127.0.0.9-127.0.0.1:80", wantErr: "addresses"},
		{name: "no_port", proto: TCP, in: "127.0.0.1", wantErr: "want IP"},
		{name: "too_many", proto: TCP, in: "127.0.0.0-127.255.255.255:1-65535", wantErr: "more than"},
		{name: "bad_proto", proto: "sctp", in: "127.0.0.1:80", wantErr: `proto "sctp"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseRange(tc.proto, tc.in)
			if specErr(t, err, tc.wantErr) {
				return
			}
			if len(got) != tc.wantN {
				t.Fatalf("%d backends, want %d", len(got), tc.wantN)
			}
			if first, last := got[0].Addr, got[len(got)-1].Addr; first != tc.wantAddr[0] || last != tc.wantAddr[1] {
				t.Fatalf("first %s last %s, want %v", first, last, tc.wantAddr)
			}
			for _, s := range got {
				if s.Proto != tc.proto {
					t.Fatalf("proto %s, want %s", s.Proto, tc.proto)
				}
			}
		})
	}
}

func TestLoadConfig(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		want    []Spec
		wantErr string
	}{
		{name: "list", yaml: `
- name: web1
  proto: HTTP
  addr: 127.0.0.12:8080
  status: 503
- {name: ssh, proto: tcp, addr: 127.0.0.11:2222, banner: "SSH-2.0-demo\r\n"}
- {proto: udp, addr: "[::1]:5353", delay: 150ms}
`, want: []Spec{
			{Name: "web1", Proto: HTTP, Addr: "127.0.0.12:8080", Status: 503},
			{Name: "ssh", Proto: TCP, Addr: "127.0.0.11:2222", Banner: "SSH-2.0-demo\r\n"},
			{Proto: UDP, Addr: "[::1]:5353", Delay: 150 * time.Millisecond},
		}},
		{name: "unknown_key", yaml: "- {name: a, proto: tcp, addr: 127.0.0.1:1, port: 80}\n", wantErr: "field port not found"},
		{name: "bad_proto_names_line", yaml: "- {proto: tcp, addr: 127.0.0.1:1}\n\n- name: b\n  proto: quic\n  addr: 127.0.0.1:2\n",
			wantErr: `cfg.yaml:3: backend 2 b: bad backend spec: proto "quic"`},
		{name: "not_a_list", yaml: "name: a\n", wantErr: "cannot unmarshal"},
		{name: "bad_delay", yaml: "- {proto: udp, addr: 127.0.0.1:1, delay: later}\n", wantErr: "later"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "cfg.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := LoadConfig(path)
			if specErr(t, err, tc.wantErr) {
				return
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
	t.Run("missing_file", func(t *testing.T) {
		_, err := LoadConfig(filepath.Join(t.TempDir(), "nope.yaml"))
		if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "nope.yaml") {
			t.Fatalf("err = %v, want not-exist naming the file", err)
		}
	})
}

func TestReply(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{name: "ping_bare", in: "PING", want: "PONG"},
		{name: "ping_lf", in: "PING\n", want: "PONG\n"},
		{name: "ping_crlf", in: "PING\r\n", want: "PONG\r\n"},
		{name: "two_pings", in: "PING\nPING\r\n", want: "PONG\nPONG\r\n"},
		{name: "echo", in: "hello\n", want: "hello\n"},
		{name: "mixed", in: "hi\nPING\nthere", want: "hi\nPONG\nthere"},
		{name: "lower_case_is_echoed", in: "ping\n", want: "ping\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(reply([]byte(tc.in))); got != tc.want {
				t.Fatalf("reply(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}
