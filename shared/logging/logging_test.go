package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr string
		check   func(t *testing.T, out string)
	}{
		{name: "json_by_default_off_terminal", opts: Options{Service: "prober", Node: "n1"}, check: func(t *testing.T, out string) {
			var m map[string]any
			if err := json.Unmarshal([]byte(out), &m); err != nil {
				t.Fatalf("not JSON: %q: %v", out, err)
			}
			if m["svc"] != "prober" || m["node"] != "n1" || m["message"] != "hello" {
				t.Fatalf("fields: %v", m)
			}
		}},
		{name: "console_on_request", opts: Options{Format: "console"}, check: func(t *testing.T, out string) {
			if strings.HasPrefix(out, "{") || !strings.Contains(out, "hello") {
				t.Fatalf("want console line, got %q", out)
			}
		}},
		{name: "level_filters_info", opts: Options{Level: "warn"}, check: func(t *testing.T, out string) {
			if out != "" {
				t.Fatalf("info logged at warn level: %q", out)
			}
		}},
		{name: "bad_format", opts: Options{Format: "xml"}, wantErr: `format "xml"`},
		{name: "bad_level", opts: Options{Level: "loud"}, wantErr: `level "loud"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			l, err := New(&buf, tc.opts)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			l.Info().Msg("hello")
			tc.check(t, strings.TrimSpace(buf.String()))
		})
	}
}
