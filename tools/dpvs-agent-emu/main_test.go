package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/healthmesh/healthmesh/shared/dpvsagent"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestRun(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "calls.jsonl")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	addrc := make(chan string, 1)
	errc := make(chan error, 1)
	var stderr syncBuffer
	go func() {
		errc <- run(ctx, []string{"-listen", "127.0.0.1:0", "-seed", "testdata/demo.yaml", "-log", logPath}, &stderr,
			func(addr string) { addrc <- addr })
	}()
	var addr string
	select {
	case addr = <-addrc:
	case err := <-errc:
		t.Fatalf("run: %v", err)
	}
	c, err := dpvsagent.New(addr)
	if err != nil {
		t.Fatal(err)
	}
	vss, err := c.ListVS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(vss) != 3 {
		t.Fatalf("demo seed: %d services, want 3", len(vss))
	}
	if err := c.AddAddr(ctx, "dpdk0", "192.0.2.2"); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("run after cancel: %v", err)
	}
	log, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(string(log)), "\n"); len(lines) != 2 || !strings.Contains(lines[1], `"path":"/v2/device/dpdk0/addr"`) {
		t.Fatalf("call log %q", log)
	}
	if !strings.Contains(stderr.String(), `"services":3`) {
		t.Fatalf("startup log %q", stderr.String())
	}
}

func TestRunErrors(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("vips:\n  - addr: nope\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "missing_seed", args: []string{"-seed", "testdata/absent.yaml"}, want: "absent.yaml"},
		{name: "invalid_seed", args: []string{"-seed", bad}, want: "vips[0].addr"},
		{name: "bad_listen", args: []string{"-listen", "127.0.0.1:notaport"}, want: "listen"},
		{name: "unknown_flag", args: []string{"-nope"}, want: "not defined"},
		{name: "extra_args", args: []string{"x"}, want: "unexpected arguments"},
		{name: "log_dir_missing", args: []string{"-log", filepath.Join(t.TempDir(), "no", "such", "x.jsonl")}, want: "call log"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr syncBuffer
			err := run(t.Context(), tt.args, &stderr, nil)
			if err == nil || !strings.Contains(err.Error()+stderr.String(), tt.want) {
				t.Fatalf("run(%q) = %v (stderr %q), want %q", tt.args, err, stderr.String(), tt.want)
			}
		})
	}
}
