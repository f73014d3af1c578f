package main

import (
	"bytes"
	"context"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/healthmesh/healthmesh/shared/event"
)

func TestDecode(t *testing.T) {
	tr := &event.Transition{V: event.Version, Kind: event.KindBackend, VS: vs80, Object: be1, VA: "192.0.2.1",
		From: event.Up, To: event.Down, Reason: event.ReasonL4CON, Detail: "refused <&>", Gen: 3, TS: 1700000000000000000,
		Votes: []event.Vote{{Observer: "p1", State: event.Down, Count: 2}}}
	msg, err := event.Marshal(tr)
	if err != nil {
		t.Fatal(err)
	}
	want, err := event.ToJSON(msg)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		in     []byte
		code   int
		stdout string
		stderr string
	}{
		{"transition", msg, 0, string(want) + "\n", ""},
		{"empty_input", nil, 0, "", ""},
		{"malformed", []byte{0xc1}, 1, "", "hmctl: decode: event: decode: to json: offset 0: invalid code 0xc1"},
		{"truncated", msg[:len(msg)-3], 1, "", "hmctl: decode: event: decode"},
		{"trailing_bytes", append(slices.Clone(msg), 0x01), 1, "", "1 bytes after the value"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			c := &cli{ctx: context.Background(), stdin: bytes.NewReader(tc.in), stdout: &out, stderr: &errb, now: time.Now}
			code := c.run([]string{"decode"})
			if code != tc.code || out.String() != tc.stdout || !strings.Contains(errb.String(), tc.stderr) {
				t.Fatalf("exit %d (want %d)\nstdout %q\nwant   %q\nstderr %q (want %q)", code, tc.code, out.String(), tc.stdout, errb.String(), tc.stderr)
			}
		})
	}
	t.Run("round_trip_fields", func(t *testing.T) {
		var out bytes.Buffer
		c := &cli{ctx: context.Background(), stdin: bytes.NewReader(msg), stdout: &out, stderr: &bytes.Buffer{}, now: time.Now}
		if code := c.run([]string{"decode"}); code != 0 {
			t.Fatalf("exit %d", code)
		}
		for _, want := range []string{`"obj":"198.51.100.1-TCP-8080"`, `"d":"refused <&>"`, `"votes":[{`, `"gen":3`} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("%s lacks %s", out.String(), want)
			}
		}
	})
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestUnreachableNATS(t *testing.T) {
	url := "nats://" + closedPort(t)
	for _, args := range [][]string{
		{"status"},
		{"watch"},
		{"history", "--since", "2h"},
		{"members"},
		{"pause", vs80 + "/" + be1, "--reason", "x"},
		{"resume", vs80 + "/" + be1},
	} {
		t.Run(args[0], func(t *testing.T) {
			start := time.Now()
			r := runCLI(append(args, "-nats-url", url, "-connect-timeout", "300ms")...)
			want := "hmctl: cannot reach NATS at " + url + ": "
			if r.code != 1 || !strings.HasPrefix(r.stderr, want) || !strings.Contains(r.stderr, "connection refused") || r.stdout != "" {
				t.Fatalf("exit %d, want 1 with %q…connection refused:\n%s%s", r.code, want, r.stdout, r.stderr)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("took %v with a 300ms connect timeout", d)
			}
		})
	}
	t.Run("password_redacted", func(t *testing.T) {
		r := runCLI("status", "-nats-url", "nats://op:s3cret@"+strings.TrimPrefix(url, "nats://"), "-connect-timeout", "300ms")
		if r.code != 1 || strings.Contains(r.stderr, "s3cret") || !strings.Contains(r.stderr, "op:xxxxx@") {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
	})
}

func TestUsage(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"no_command", nil, 2, "usage: hmctl COMMAND"},
		{"help", []string{"help"}, 0, "check-config"},
		{"unknown_command", []string{"frob"}, 2, `unknown command "frob"`},
		{"command_help", []string{"status", "-h"}, 0, "usage: hmctl status [--json]"},
		{"unknown_flag", []string{"members", "--frob"}, 2, "flag provided but not defined: -frob"},
		{"status_arguments", []string{"status", "extra"}, 2, `unexpected arguments ["extra"]`},
		{"watch_bad_filter", []string{"watch", "not an id"}, 2, `object "not an id"`},
		{"decode_arguments", []string{"decode", "file"}, 2, "the message comes on stdin"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(tc.args...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.stderr) {
				t.Fatalf("exit %d (want %d), stderr lacks %q:\n%s", r.code, tc.code, tc.stderr, r.stderr)
			}
		})
	}
}

func TestParseArgs(t *testing.T) {
	tests := []struct {
		name string
		args []string
		pos  []string
		vs   string
	}{
		{"flags_first", []string{"--vs", "a", "b"}, []string{"b"}, "a"},
		{"flags_after", []string{"b", "--vs", "a", "c"}, []string{"b", "c"}, "a"},
		{"double_dash", []string{"--vs", "a", "--", "--vs", "c"}, []string{"--vs", "c"}, "a"},
		{"none", nil, nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &cli{stderr: &bytes.Buffer{}}
			fs, _ := c.newFlags("pause")
			vs := fs.String("vs", "", "")
			pos, err := parseArgs(fs, tc.args)
			if err != nil || !slices.Equal(pos, tc.pos) || *vs != tc.vs {
				t.Fatalf("pos %q vs %q err %v, want %q %q", pos, *vs, err, tc.pos, tc.vs)
			}
		})
	}
}

func TestParseWhen(t *testing.T) {
	now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Time
		err  bool
	}{
		{"2h", now.Add(-2 * time.Hour), false},
		{"7d", now.Add(-7 * 24 * time.Hour), false},
		{"1d12h", now.Add(-36 * time.Hour), false},
		{"2026-11-20T10:00:00Z", time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC), false},
		{"2026-11-20T10:00:00.5+01:00", time.Date(2026, 11, 20, 9, 0, 0, 5e8, time.UTC), false},
		{"-1h", time.Time{}, true},
		{"yesterday", time.Time{}, true},
		{"5x", time.Time{}, true},
	}
	for _, tc := range tests {
		t.Run(strings.NewReplacer(":", "_", ".", "_", "+", "_", "-", "_").Replace(tc.in), func(t *testing.T) {
			got, err := parseWhen(tc.in, now)
			if (err != nil) != tc.err || !got.Equal(tc.want) {
				t.Fatalf("parseWhen(%q) = %v, %v; want %v (error %v)", tc.in, got, err, tc.want, tc.err)
			}
		})
	}
}
