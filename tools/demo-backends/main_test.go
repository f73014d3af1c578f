package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/healthmesh/healthmesh/tools/demo"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRunFlags(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "backends.yaml")
	if err := os.WriteFile(cfg, []byte("- {name: cfg-web, proto: http, addr: 127.0.0.111:0}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		args      []string
		wantErr   string
		wantNames []string
		check     func(t *testing.T, list []demo.Status)
	}{
		{name: "every_source", args: []string{
			"-config", cfg,
			"-listen", "tcp://127.0.0.112:0?name=plain,udp://127.0.0.112:0?name=dns",
			"-listen", "tcp://127.0.0.112:0?name=own&banner=mine%0A",
			"-tcp-range", "127.0.0.113-127.0.0.114:0",
			"-tcp-banner", `hello\r\n`,
		}, wantNames: []string{"cfg-web", "plain", "dns", "own", "127.0.0.113-TCP-", "127.0.0.114-TCP-"},
			check: func(t *testing.T, list []demo.Status) {
				for _, tc := range []struct{ name, banner string }{{"plain", "hello\r\n"}, {"own", "mine\n"}} {
					addr := ""
					for _, st := range list {
						if st.Name == tc.name {
							addr = st.Addr
						}
					}
					c, err := net.DialTimeout("tcp", addr, 3*time.Second)
					if err != nil {
						t.Fatal(err)
					}
					got := make([]byte, len(tc.banner))
					_ = c.SetDeadline(time.Now().Add(3 * time.Second))
					_, err = io.ReadFull(c, got)
					c.Close()
					if err != nil || string(got) != tc.banner {
						t.Fatalf("%s banner %q, %v; want %q", tc.name, got, err, tc.banner)
					}
				}
			}},
		{name: "no_backends", args: nil, wantErr: "no backends"},
		{name: "bad_listen", args: []string{"-listen", "quic://127.0.0.1:443"}, wantErr: `-listen: "quic://127.0.0.1:443"`},
		{name: "bad_range", args: []string{"-udp-range", "127.0.0.1:9-1"}, wantErr: "-udp-range: bad backend spec: udp range"},
		{name: "bad_banner_escape", args: []string{"-listen", "tcp://127.0.0.1:0", "-tcp-banner", `\q`}, wantErr: "-tcp-banner"},
		{name: "bad_config", args: []string{"-config", filepath.Join(t.TempDir(), "missing.yaml")}, wantErr: "missing.yaml"},
		{name: "bad_log_format", args: []string{"-listen", "tcp://127.0.0.1:0", "-log-format", "xml"}, wantErr: `format "xml"`},
		{name: "stray_argument", args: []string{"-listen", "tcp://127.0.0.1:0", "extra"}, wantErr: "unexpected arguments"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			pr, pw := io.Pipe()
			defer pr.Close()
			errc := make(chan error, 1)
			args := append([]string{"-control", "127.0.0.1:0", "-log-format", "json"}, tc.args...)
			go func() {
				err := run(ctx, args, pw, io.Discard)
				pw.CloseWithError(errors.New("run returned"))
				errc <- err
			}()
			if tc.wantErr != "" {
				if err := <-errc; err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			ready, err := demo.ReadReady(pr)
			if err != nil {
				t.Fatalf("%v (run: %v)", err, <-errc)
			}
			if ready.Backends != len(tc.wantNames) {
				t.Fatalf("ready %+v, want %d backends", ready, len(tc.wantNames))
			}
			client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
			resp, err := client.Get("http://" + ready.Control + "/backends")
			if err != nil {
				t.Fatal(err)
			}
			var list []demo.Status
			err = json.NewDecoder(resp.Body).Decode(&list)
			resp.Body.Close()
			if err != nil || len(list) != len(tc.wantNames) {
				t.Fatalf("/backends: %+v, %v", list, err)
			}
			for i, want := range tc.wantNames {
				if !strings.HasPrefix(list[i].Name, want) || list[i].State != demo.StateUp {
					t.Fatalf("backend %d: %+v, want %s… up", i, list[i], want)
				}
			}
			tc.check(t, list)
			cancel()
			if err := <-errc; err != nil {
				t.Fatalf("run after cancel: %v", err)
			}
		})
	}
}
