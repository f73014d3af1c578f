package prober

import (
	"testing"

	"github.com/healthmesh/healthmesh/services/prober/internal/probe"
)

// Targets without params share their method's prober, except http (it keeps
// its target's TLS settings); targets with params get their own.
func TestWorkerProberSharing(t *testing.T) {
	w := &worker{shared: map[string]probe.Prober{}}
	get := func(method string, params map[string]string) probe.Prober {
		t.Helper()
		p, err := w.prober(method, params)
		if err != nil {
			t.Fatalf("%s %v: %v", method, params, err)
		}
		return p
	}
	for _, m := range []string{probe.MethodTCP, probe.MethodUDP, probe.MethodNone} {
		if a, b := get(m, nil), get(m, map[string]string{}); a != b {
			t.Errorf("%s without params: two probers, want one shared", m)
		}
	}
	if get(probe.MethodTCP, nil) == get(probe.MethodUDP, nil) {
		t.Error("tcp and udp share a prober")
	}
	send := map[string]string{"send": "ping", "receive": "pong"}
	if a, b := get(probe.MethodTCP, send), get(probe.MethodTCP, send); a == b || a == get(probe.MethodTCP, nil) {
		t.Error("a tcp target with params shares its prober")
	}
	if get(probe.MethodHTTP, nil) == get(probe.MethodHTTP, nil) {
		t.Error("http targets share a prober")
	}
	if _, err := w.prober(probe.MethodTCP, map[string]string{"bogus": "1"}); err == nil {
		t.Error("bad params accepted")
	}
}
