package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestCheckConfig(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		want []string // lines of stdout, in order, by prefix
	}{
		{"valid_with_warning", []string{"testdata/valid.yaml"}, 0, []string{
			"testdata/valid.yaml: VALID (0 virtual-address blocks, 1 virtual-server block, 1 static service; 2 warnings)",
			"warning: global/virtual-server/timeout: timeout 2s is longer than interval 3ns",
			"warning: global/virtual-server/interval: bare integer 3 means 3ns",
		}},
		{"invalid_every_issue", []string{"testdata/invalid.yaml"}, 1, []string{
			"testdata/invalid.yaml: INVALID: 4 errors, 1 warning",
			"error:   global/virtual-address/down-policy: must be 1 (oneOf) or 2 (allOf), got 3 (line 4)",
			"error:   global/virtual-server/interval: must be a duration such as 3s or 1m30s, got \"abc\" (line 6)",
			"error:   virtual-servers/192.0.2.1-TCP-80/interval: must be > 0, got -3s (line 10)",
			"error:   bus/replicas: must be 1..5 (JetStream's limits), got 0 (line 12)",
			"warning: global/virtual-server/colour: ",
		}},
		{"missing_script", []string{"testdata/script.yaml"}, 1, []string{
			"testdata/script.yaml: INVALID: 1 error, 0 warnings",
			"error:   virtual-addresses/192.0.2.1/action-params/script: ",
		}},
		{"no_file_check", []string{"--no-file-check", "testdata/script.yaml"}, 0, []string{
			"testdata/script.yaml: VALID (1 virtual-address block, 0 virtual-server blocks, 0 static services; 0 warnings)",
		}},
		{"flag_after_file", []string{"testdata/script.yaml", "--no-file-check"}, 0, []string{"testdata/script.yaml: VALID"}},
		{"syntax_error", []string{"testdata/syntax.yaml"}, 1, []string{"testdata/syntax.yaml: INVALID: YAML syntax: yaml: line "}},
		{"unreadable", []string{"testdata/none.yaml"}, 1, []string{"testdata/none.yaml: INVALID: config: read: open testdata/none.yaml: no such file"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// No NATS flags and no server: check-config works offline.
			r := runCLI(append([]string{"check-config"}, tc.args...)...)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d:\n%s%s", r.code, tc.code, r.stdout, r.stderr)
			}
			ls := lines(r.stdout)
			if len(ls) != len(tc.want) {
				t.Fatalf("%d lines, want %d:\n%s", len(ls), len(tc.want), r.stdout)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(ls[i], w) {
					t.Errorf("line %d: %q, want prefix %q", i+1, ls[i], w)
				}
			}
		})
	}

	t.Run("json", func(t *testing.T) {
		r := runCLI("check-config", "--json", "testdata/invalid.yaml")
		var rep configReport
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatalf("%v: %s", err, r.stdout)
		}
		if r.code != 1 || rep.Valid || len(rep.Errors) != 4 || len(rep.Warnings) != 1 || rep.Errors[3].Line != 12 || rep.Errors[3].Path != "bus/replicas" {
			t.Fatalf("exit %d: %+v", r.code, rep)
		}
	})

	for _, tc := range []struct {
		name string
		args []string
	}{
		{"no_file", nil},
		{"two_files", []string{"testdata/valid.yaml", "testdata/invalid.yaml"}},
		{"unknown_flag", []string{"--frobnicate", "testdata/valid.yaml"}},
	} {
		t.Run("usage_"+tc.name, func(t *testing.T) {
			if r := runCLI(append([]string{"check-config"}, tc.args...)...); r.code != 2 || r.stderr == "" {
				t.Fatalf("exit %d, want 2 with a message: %q", r.code, r.stderr)
			}
		})
	}
}
