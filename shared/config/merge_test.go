package config

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestMergeSemantics checks DPVS's inheritance rules (§6.4) one by one.
func TestMergeSemantics(t *testing.T) {
	const vip, vs = "192.0.2.1", "192.0.2.1-TCP-80"
	for _, tc := range []struct {
		name  string
		text  string
		check func(t *testing.T, c *Config)
	}{
		{"zero_inherits", `
global:
  virtual-server: {interval: 7s, timeout: 1s}
virtual-servers:
  192.0.2.1-TCP-80: {interval: 0, timeout: 500ms}
`, func(t *testing.T, c *Config) {
			got := c.EffectiveVS(vsid(t, vs))
			checkFields(t, []field{{"interval", got.Interval, 7 * time.Second}, {"timeout", got.Timeout, 500 * time.Millisecond}})
		}},
		{"method_params_follow_parent_method", `
global:
  virtual-server:
    method: tcp
    method-params: {send: ping, receive: pong}
virtual-servers:
  192.0.2.1-TCP-80:
    method-params: {send: dropped}
`, func(t *testing.T, c *Config) {
			got := c.EffectiveVS(vsid(t, vs))
			checkFields(t, []field{{"method", got.Method, MethodTCP},
				{"params", got.MethodParams, map[string]string{"send": "ping", "receive": "pong"}}})
		}},
		{"method_given_never_inherits_params", `
global:
  virtual-server:
    method: tcp
    method-params: {send: ping}
virtual-servers:
  192.0.2.1-TCP-80: {method: tcp}
`, func(t *testing.T, c *Config) {
			got := c.EffectiveVS(vsid(t, vs))
			checkFields(t, []field{{"params", got.MethodParams, map[string]string(nil)}})
		}},
		{"action_params_inherited_only_when_empty", `
virtual-addresses:
  192.0.2.1: {actioner: KernelRouteAddDelVerdict}
  192.0.2.2:
    actioner: KernelRouteAddDel
    action-params: {ifname: dummy0}
`, func(t *testing.T, c *Config) {
			a := c.EffectiveVA(netip.MustParseAddr(vip))
			b := c.EffectiveVA(netip.MustParseAddr("192.0.2.2"))
			checkFields(t, []field{{"inherited", a.ActionParams, map[string]string{"ifname": "lo"}},
				{"actioner kept", a.Actioner, "KernelRouteAddDelVerdict"},
				{"own", b.ActionParams, map[string]string{"ifname": "dummy0"}}})
		}},
		{"disable_not_inherited", `
global:
  virtual-address: {disable: true, down-policy: 1}
virtual-addresses:
  192.0.2.1: {action-sync-time: 5s}
`, func(t *testing.T, c *Config) {
			own := c.EffectiveVA(netip.MustParseAddr(vip))
			other := c.EffectiveVA(netip.MustParseAddr("192.0.2.9"))
			checkFields(t, []field{{"own block disable", own.Disable, false},
				{"own block down-policy inherited", own.DownPolicy, OneOf},
				{"no block uses global disable", other.Disable, true}})
		}},
		{"retry_zero_inherits_999999_is_no_retry", `
global:
  virtual-server: {down-retry: 4, up-retry: 999999}
virtual-servers:
  192.0.2.1-TCP-80: {down-retry: 0, up-retry: 0}
  192.0.2.1-TCP-81: {down-retry: 999999, up-retry: 2}
`, func(t *testing.T, c *Config) {
			a := c.EffectiveVS(vsid(t, vs))
			b := c.EffectiveVS(vsid(t, "192.0.2.1-TCP-81"))
			checkFields(t, []field{{"a down", a.DownCount(), 5}, {"a up", a.UpCount(), 1},
				{"b down", b.DownCount(), 1}, {"b up", b.UpCount(), 3}})
		}},
		{"rise_fall_fold_into_retries", `
virtual-servers:
  192.0.2.1-TCP-80: {rise: 1, fall: 4}
`, func(t *testing.T, c *Config) {
			a := c.EffectiveVS(vsid(t, vs))
			checkFields(t, []field{{"up-retry", a.UpRetry, NoRetry}, {"down-retry", a.DownRetry, uint(3)},
				{"up count", a.UpCount(), 1}, {"down count", a.DownCount(), 4}})
		}},
		{"extensions_inherit", `
global:
  virtual-server: {observers: all, jitter: 0.2, netns: blue, weight: 7}
virtual-servers:
  192.0.2.1-TCP-80: {jitter: 0.3}
`, func(t *testing.T, c *Config) {
			a := c.EffectiveVS(vsid(t, vs))
			checkFields(t, []field{{"observers", a.Observers, ObserversAll}, {"jitter", a.Jitter, 0.3},
				{"netns", a.Netns, "blue"}, {"weight", a.Weight, uint16(7)}})
		}},
		{"effective_lookup_unmaps_and_resolves", `
virtual-servers:
  192.0.2.1-UDP-53: {interval: 9s}
`, func(t *testing.T, c *Config) {
			id := vsid(t, "192.0.2.1-UDP-53")
			id.Addr = netip.MustParseAddr("::ffff:192.0.2.1")
			a := c.EffectiveVS(id)
			checkFields(t, []field{{"interval", a.Interval, 9 * time.Second}, {"method", a.Method, MethodUDPPing}})
		}},
		{"effective_returns_copies", `
virtual-servers:
  192.0.2.1-TCP-80: {method: tcp, method-params: {send: a}}
`, func(t *testing.T, c *Config) {
			a := c.EffectiveVS(vsid(t, vs))
			a.MethodParams["send"] = "changed"
			va := c.EffectiveVA(netip.MustParseAddr(vip))
			va.ActionParams["ifname"] = "changed"
			checkFields(t, []field{
				{"vs params", c.EffectiveVS(vsid(t, vs)).MethodParams["send"], "a"},
				{"va params", c.Global.VirtualAddress.ActionParams["ifname"], "lo"}})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _ := mustParse(t, tc.text)
			tc.check(t, cfg)
		})
	}
}

func TestDurations(t *testing.T) {
	for _, tc := range []struct {
		name, value string
		want        time.Duration
		warn, err   string
	}{
		{"go_duration", "3s", 3 * time.Second, "", ""},
		{"dpvs_rendered", "1m0s", time.Minute, "", ""},
		{"fraction", "1.5s", 1500 * time.Millisecond, "", ""},
		{"bare_integer_is_nanoseconds", "3", 3, "bare integer 3 means 3ns", ""},
		{"bare_zero_inherits", "0", 3 * time.Second, "", ""},
		{"quoted_integer", `"3"`, 0, "", "must be a duration such as 3s"},
		{"garbage", "soon", 0, "", `got "soon"`},
		{"list", "[3s]", 0, "", "must be a single value, got a list"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := "global:\n  virtual-server:\n    interval: " + tc.value + "\n"
			cfg, warns, err := Options{CheckFile: NoFileCheck}.Parse([]byte(text), "d.yaml")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "global/virtual-server/interval") {
					t.Fatalf("error = %v, want one with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Global.VirtualServer.Interval; got != tc.want {
				t.Errorf("interval = %v, want %v", got, tc.want)
			}
			gotWarn := ""
			for _, w := range warns {
				if w.Path == "global/virtual-server/interval" {
					gotWarn = w.Msg
				}
			}
			if (tc.warn == "") != (gotWarn == "") || !strings.Contains(gotWarn, tc.warn) {
				t.Errorf("warning = %q, want %q", gotWarn, tc.warn)
			}
		})
	}
}

func TestWarnings(t *testing.T) {
	for _, tc := range []struct {
		name, text, path, msg string
	}{
		{"unknown_dpvs_key", "global:\n  virtual-server:\n    intervall: 3s\n",
			"global/virtual-server/intervall", "unknown key ignored"},
		{"unknown_section", "servces: {}\n", "servces", "unknown section ignored"},
		{"unknown_global_block", "global:\n  virtual-service: {}\n", "global/virtual-service", "unknown key ignored"},
		{"non_canonical_va_key", "virtual-addresses:\n  \"2001:DB8:0::1\": {down-policy: 1}\n",
			"virtual-addresses/2001:DB8:0::1", "read as 2001:db8::1"},
		{"non_canonical_vs_key", "virtual-servers:\n  192.0.2.1-tcp-80: {}\n",
			"virtual-servers/192.0.2.1-tcp-80", "read as 192.0.2.1-TCP-80"},
		{"params_without_method", "virtual-servers:\n  192.0.2.1-TCP-80:\n    method-params: {send: x}\n",
			"virtual-servers/192.0.2.1-TCP-80/method-params", "ignored: without method"},
		{"timeout_over_interval", "global:\n  virtual-server: {interval: 1s}\n",
			"global/virtual-server/timeout", "longer than interval"},
		{"vip_actioner_at_vs", "virtual-servers:\n  192.0.2.1-TCP-80: {actioner: KernelRouteAddDel, action-params: {ifname: lo}}\n",
			"virtual-servers/192.0.2.1-TCP-80/actioner", "acts on a VIP"},
		{"nothing_to_check", "dpvs-agent: {enabled: false}\n", "dpvs-agent", "nothing will be checked"},
		{"auto_param_for_one_proto", "global:\n  virtual-server:\n    method: auto\n    method-params: {proxy-protocol: v1}\n",
			"global/virtual-server/method-params/proxy-protocol", "UDP services"},
		{"insecure_tls", "bus: {tls: {insecure-skip-verify: true}}\n", "bus/tls/insecure-skip-verify", "not verified"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, warns := mustParse(t, tc.text)
			for _, w := range warns {
				if w.Path == tc.path && strings.Contains(w.Msg, tc.msg) {
					if w.Line == 0 {
						t.Errorf("warning %s has no line", w)
					}
					return
				}
			}
			t.Errorf("no warning at %s containing %q; got %v", tc.path, tc.msg, warns)
		})
	}
}

func TestYAMLFeatures(t *testing.T) {
	t.Run("anchors_and_merge_keys", func(t *testing.T) {
		cfg, _ := mustParse(t, `
base: &base
  method: tcp
  interval: 4s
virtual-servers:
  192.0.2.1-TCP-80:
    <<: *base
    interval: 6s
  192.0.2.1-TCP-81: *base
`)
		a := cfg.EffectiveVS(vsid(t, "192.0.2.1-TCP-80"))
		b := cfg.EffectiveVS(vsid(t, "192.0.2.1-TCP-81"))
		checkFields(t, []field{{"a method", a.Method, MethodTCP}, {"a interval (explicit wins)", a.Interval, 6 * time.Second},
			{"b interval", b.Interval, 4 * time.Second}})
	})
	t.Run("alias_cycles_are_errors", func(t *testing.T) {
		for _, text := range []string{
			"virtual-servers: &a {<<: *a}\n",
			"bus: &b\n  tls: *b\n",
			"services: &s\n  192.0.2.1-TCP-1:\n    backends: [*s]\n",
		} {
			if _, _, err := Parse([]byte(text), "cycle"); err == nil {
				t.Errorf("Parse(%q) accepted a self-referencing document", text)
			}
		}
		// Merging an enclosing mapping whose reading is over is no cycle:
		// its keys are simply unknown here.
		if _, warns, err := Parse([]byte("global: &a\n  virtual-server:\n    <<: *a\n"), "x"); err != nil || len(warns) != 1 {
			t.Errorf("merge of the enclosing mapping: %v, %v", err, warns)
		}
	})
	t.Run("urls_as_one_string", func(t *testing.T) {
		cfg, _ := mustParse(t, "bus: {urls: \"nats://127.0.0.1:4222, nats://127.0.0.2:4222\"}\n")
		checkFields(t, []field{{"urls", cfg.Bus.URLs, []string{"nats://127.0.0.1:4222", "nats://127.0.0.2:4222"}}})
	})
	t.Run("yaml11_booleans_and_numbers", func(t *testing.T) {
		cfg, _ := mustParse(t, "virtual-addresses:\n  192.0.2.1: {disable: yes}\nprober: {concurrency: 0x10}\nbus: {replicas: 03}\n")
		checkFields(t, []field{{"disable", cfg.VirtualAddresses[netip.MustParseAddr("192.0.2.1")].Disable, true},
			{"hex", cfg.Prober.Concurrency, 16}, {"leading zero is decimal", cfg.Bus.Replicas, 3}})
	})
	t.Run("param_values_keep_their_text", func(t *testing.T) {
		cfg, _ := mustParse(t, "virtual-servers:\n  192.0.2.1-TCP-80:\n    method: http\n    method-params: {https: yes, response-codes: 200}\n")
		got := cfg.VirtualServers[vsid(t, "192.0.2.1-TCP-80")].MethodParams
		if !reflect.DeepEqual(got, map[string]string{"https": "yes", "response-codes": "200"}) {
			t.Errorf("params = %v", got)
		}
	})
}
