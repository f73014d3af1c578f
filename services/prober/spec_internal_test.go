package prober

import (
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/healthmesh/healthmesh/services/prober/internal/probe"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/subject"
)

func testDef(t *testing.T) *event.Target {
	t.Helper()
	tid := subject.TargetID{Endpoint: subject.Endpoint{Addr: netip.MustParseAddr("127.0.0.1"), Proto: subject.TCP, Port: 80},
		Method: probe.MethodTCP, Hash: "0000abcd"}
	return &event.Target{V: 1, ID: tid.Token(), Addr: "127.0.0.1", Port: 80, Proto: "TCP", Method: "auto",
		Interval: int64(time.Second), Timeout: int64(time.Second / 2), Observers: 1, Rev: 3}
}

func TestParseSpec(t *testing.T) {
	d := testDef(t)
	d.CheckAddr, d.CheckPort, d.FastInterval = "::ffff:127.0.0.2", 8080, int64(time.Second/4)
	s, err := parseSpec(d)
	if err != nil {
		t.Fatal(err)
	}
	want := probe.Target{Addr: netip.MustParseAddrPort("127.0.0.2:8080"), Proto: subject.TCP, Timeout: time.Second / 2}
	if s.target != want || s.method != probe.MethodTCP || s.token != d.ID || s.fast != d.FastInterval || s.rev != 3 {
		t.Errorf("spec = %+v, want target %+v, method tcp (auto over TCP), token, fast interval and rev kept", s, want)
	}
	for field, bad := range map[string]func(*event.Target){
		"address":       func(d *event.Target) { d.Addr = "127.0.0" },
		"check address": func(d *event.Target) { d.CheckAddr = "x" },
		"proto":         func(d *event.Target) { d.Proto = "SCTP" },
		"target":        func(d *event.Target) { d.ID = "nope" },
	} {
		d := testDef(t)
		bad(d)
		if _, err := parseSpec(d); err == nil {
			t.Errorf("bad %s accepted", field)
		}
	}
}

// A job is rebuilt when how or when its target is probed changes, and only
// then: a new config revision alone keeps it.
func TestSameProbe(t *testing.T) {
	base, _ := parseSpec(testDef(t))
	for name, change := range map[string]func(*event.Target){
		"timeout":   func(d *event.Target) { d.Timeout++ },
		"interval":  func(d *event.Target) { d.Interval++ },
		"down":      func(d *event.Target) { d.DownInterval = 1 },
		"params":    func(d *event.Target) { d.Params = map[string]string{"send": "x"} },
		"method":    func(d *event.Target) { d.Method = "none" },
		"source":    func(d *event.Target) { d.Source = "127.0.0.9" },
		"check":     func(d *event.Target) { d.CheckPort = 81 },
		"observers": func(d *event.Target) { d.Observers = 2 },
	} {
		d := testDef(t)
		change(d)
		s, err := parseSpec(d)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if sameProbe(base, s) {
			t.Errorf("%s changed, job kept", name)
		}
	}
	d := testDef(t)
	d.Rev, d.UsedBy = 4, []string{"x"}
	if s, _ := parseSpec(d); !sameProbe(base, s) {
		t.Error("a new revision alone rebuilt the job")
	}
}

// A definition that cannot be probed is counted and leaves the previous one.
func TestPutTarget_keeps_the_previous_definition_over_a_bad_one(t *testing.T) {
	w := &worker{log: zerolog.Nop(), defs: map[string]*spec{}, wake: make(chan struct{}, 1),
		m: newMetrics(prometheus.NewRegistry(), nil)}
	good := testDef(t)
	w.putTarget("k", good, 1)
	bad := testDef(t)
	bad.Addr = "not-an-address"
	w.putTarget("k", bad, 2)
	if got := w.defs["k"]; got == nil || got.target.Addr.Addr().String() != "127.0.0.1" {
		t.Fatalf("defs[k] = %+v, want the good definition", got)
	}
	if n := testutil.ToFloat64(w.m.badTargets); n != 1 {
		t.Errorf("bad targets = %v, want 1", n)
	}
}
