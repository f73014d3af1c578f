package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestRenderRoundTrip renders each valid file and parses the output back:
// the configuration must be the same, and the output must say DPVS's way.
func TestRenderRoundTrip(t *testing.T) {
	for _, tc := range []struct{ name, path string }{
		{"default", ""},
		{"dpvs_sample", "testdata/healthcheck.conf.sample"},
		{"dpvs_simple", "testdata/healthcheck.conf.simple"},
		{"dpvs_stress", "testdata/healthcheck.conf.stress"},
		{"full", "testdata/full.yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Default()
			if tc.path != "" {
				cfg = mustLoad(t, tc.path)
			}
			out := Render(cfg)
			lines := strings.SplitN(string(out), "\n", 4)
			if lines[0] != methodAnnotation() || lines[1] != "# VA DownPolicy Annotations: 1-oneOf, 2-allOf" || lines[2] != "" {
				t.Errorf("header = %q", lines[:3])
			}
			if !strings.Contains(string(out), "action-sync-time: 1m0s") {
				t.Errorf("durations not written as 1m0s:\n%s", out)
			}
			back, warns, err := Options{CheckFile: NoFileCheck}.Parse(out, "rendered")
			if err != nil {
				t.Fatalf("rendered output does not parse: %v\n%s", err, out)
			}
			if len(warns) != 0 {
				t.Errorf("rendered output has warnings: %v", warns)
			}
			back.Source, back.Revision = cfg.Source, cfg.Revision
			if !reflect.DeepEqual(back, cfg) {
				t.Errorf("round trip changed the configuration:\nbefore %+v\nafter  %+v\n%s", cfg, back, out)
			}
			if again := Render(back); string(again) != string(out) {
				t.Errorf("rendering is not stable:\n%s\n---\n%s", out, again)
			}
		})
	}
}

func TestRenderSample(t *testing.T) {
	out := string(Render(mustLoad(t, "testdata/healthcheck.conf.sample")))
	for _, want := range []string{
		"global:\n  virtual-address:\n    disable: false\n    down-policy: 2\n    actioner: KernelRouteAddDel\n",
		"  192.0.2.1-TCP-8080:\n    method: 4\n    interval: 5s\n    down-retry: 999999\n    up-retry: 999999\n    timeout: 1s\n    method-params: {}\n",
		"    method: 10000\n",
		"    action-params: {}\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("rendered sample lacks %q:\n%s", want, out)
		}
	}
}

func TestRenderRedactsSecrets(t *testing.T) {
	cfg, _ := mustParse(t, "bus: {user: alice, password: s3cret}\n")
	out := string(Render(cfg))
	if strings.Contains(out, "s3cret") || !strings.Contains(out, "password: "+Redacted) || !strings.Contains(out, "user: alice") {
		t.Errorf("password not redacted:\n%s", out)
	}
	cfg, _ = mustParse(t, "bus: {token: t0ken}\n")
	if out := string(Render(cfg)); strings.Contains(out, "t0ken") || !strings.Contains(out, "token: "+Redacted) {
		t.Errorf("token not redacted:\n%s", out)
	}
}

func TestCheckReport(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	valid := write("valid.conf", "global:\n  virtual-server:\n    interval: 5s\n")
	invalid := write("invalid.conf", "global:\n  virtual-server:\n    interval: -5s\n")
	badYAML := write("bad.conf", "global: [\n")
	secret := write("secret.conf", "bus:\n  user: alice\n  password: \"s3c\\\"ret\" # keep me\n  token: ''\n")
	plainSecret := write("plain.conf", "bus: {token: s3cret, prefix: hm}\n")
	singleSecret := write("single.conf", "bus:\n  password: 's3c''ret'\n  user: bob\n")
	warned := write("warned.conf", "global:\n  virtual-server:\n    interval: 3\n")
	missing := filepath.Join(dir, "missing.conf")

	for _, tc := range []struct {
		name, path string
		want       []string
		absent     []string
	}{
		{"valid", valid, []string{
			"Config File " + valid + ": VALID\n\n\nRaw Configs from " + valid + ":\n" + methodAnnotation() +
				"\n# VA DownPolicy Annotations: 1-oneOf, 2-allOf\nglobal:\n  virtual-server:\n    interval: 5s\n"}, nil},
		{"validation_error", invalid, []string{
			"Config File " + invalid + ": INVALID (Validation Error: global/virtual-server/interval: must be > 0, got -5s (line 3))",
			"Raw Configs from " + invalid + ":\n", "interval: -5s\n"}, nil},
		{"yaml_format_error", badYAML, []string{"Config File " + badYAML + ": INVALID (Yaml Format Error: yaml: ", "Raw Configs from"}, nil},
		{"file_read_error", missing, []string{"Config File " + missing + ": INVALID (File Read Error: "}, []string{"Raw Configs"}},
		{"secrets_redacted", secret, []string{"VALID", "  password: " + Redacted + " # keep me\n", "  token: ''\n"}, []string{"s3c"}},
		{"plain_secret_redacted", plainSecret, []string{"bus: {token: " + Redacted + ", prefix: hm}\n"}, []string{"s3c"}},
		{"single_quoted_secret_redacted", singleSecret, []string{"  password: " + Redacted + "\n  user: bob\n"}, []string{"s3c"}},
		{"warnings_listed", warned, []string{": VALID\nwarning: ", "\nwarning: global/virtual-server/interval: bare integer 3 means 3ns"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := CheckReport(tc.path)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("report lacks %q:\n%s", w, got)
				}
			}
			for _, a := range tc.absent {
				if strings.Contains(got, a) {
					t.Errorf("report has %q:\n%s", a, got)
				}
			}
		})
	}
}

// FuzzParse holds that no input makes Parse (or Render of what it accepts)
// panic. Run with go test -fuzz=FuzzParse; plain go test runs the seeds.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*")
	for _, p := range files {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("virtual-servers: {'::ffff:1.2.3.4-UDP-1': {<<: [{method: 5}, {interval: 1}]}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, _, err := Options{CheckFile: NoFileCheck}.Parse(data, "fuzz")
		if err == nil {
			_ = Render(cfg)
		}
	})
}
