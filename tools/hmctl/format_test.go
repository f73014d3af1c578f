package main

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/healthmesh/healthmesh/shared/bus"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/subject"
)

func TestRecordText(t *testing.T) {
	sp := subject.Space{}
	ts := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC).UnixNano()
	vs := subject.VSID{Addr: mustEndpoint(t, vs80).Addr, Proto: subject.TCP, Port: 80}
	tid := subject.TargetID{Endpoint: mustEndpoint(t, be1), Method: "tcp", Hash: subject.HashOf("x")}
	tests := []struct {
		name    string
		subject string
		msg     bus.Message
		noHdr   bool // decode by subject, as for a message without Hm-Schema
		want    []string
	}{
		{"action_failed", sp.Action("BackendUpdate", vs.Token()), &event.ActionResult{V: 1, Node: "lb1", Actioner: "BackendUpdate",
			Kind: event.KindBackend, Object: vs80, Op: "APPLY", Error: "dpvs-agent: 500", Duration: int64(12 * time.Millisecond), Attempt: 3, Items: 2, TS: ts},
			false, []string{"action ", vs80, "BackendUpdate APPLY FAILED: dpvs-agent: 500", "node=lb1 attempt=3 12ms items=2"}},
		{"action_ok_by_subject", sp.Action("KernelRouteAddDel", "192_0_2_1"), &event.ActionResult{V: 1, Node: "lb2", Actioner: "KernelRouteAddDel",
			Kind: event.KindVA, Object: "192.0.2.1", Op: "DOWN", OK: true, Attempt: 1, TS: ts},
			true, []string{"action ", "KernelRouteAddDel DOWN ok", "node=lb2"}},
		{"audit_reload_failed", sp.Audit("config-reload"), &event.AuditRecord{V: 1, Verb: "config-reload", Who: "agg-a", Object: "/etc/hm.conf",
			Error: "bus/replicas: must be 1..5", Detail: "running configuration kept: abc", TS: ts},
			false, []string{"audit ", "/etc/hm.conf", "config-reload FAILED: bus/replicas: must be 1..5  by agg-a  running configuration kept: abc"}},
		{"probe_result", sp.Result(tid, "p1"), &event.ProbeResult{V: 1, Target: tid.Token(), Observer: "p1", Node: "lb1", State: event.Down,
			Reason: event.ReasonL7STS, RTT: int64(1500 * time.Microsecond), Detail: "status 503", TS: ts},
			false, []string{"result ", tid.Token(), "down    L7STS    p1@lb1  rtt=1.5ms", `"status 503"`}},
		{"va_counts", sp.EventVA(vs.Addr), &event.Transition{V: 1, Kind: event.KindVA, Object: "192.0.2.1", VA: "192.0.2.1", From: event.Up,
			To: event.Down, Reason: event.ReasonAggr, TS: ts, Counts: &event.Counts{Down: 2, Total: 3, Unknown: 1, Unchecked: 1}},
			false, []string{"va ", "up      → down", "vs up=0 down=2 unknown=1 total=3 unchecked=1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := bus.NewMsg(tc.subject, tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			hdr := m.Header
			if tc.noHdr {
				hdr = nats.Header{}
			}
			rec, err := decodeRecord(sp, m.Subject, hdr, m.Data)
			if err != nil {
				t.Fatal(err)
			}
			rec.seq = 42
			line := rec.text(true)
			if !strings.HasPrefix(line, time.Unix(0, ts).Local().Format(timeLayout)+"  #42 ") {
				t.Errorf("line does not start with the time and sequence: %s", line)
			}
			for _, w := range tc.want {
				if !strings.Contains(line, w) {
					t.Errorf("line lacks %q: %s", w, line)
				}
			}
		})
	}

	t.Run("undecodable", func(t *testing.T) {
		if _, err := decodeRecord(sp, "other.subject", nats.Header{}, []byte{0x80}); err == nil || !strings.Contains(err.Error(), "not a healthmesh subject") {
			t.Fatalf("err %v", err)
		}
		if _, err := decodeRecord(sp, sp.EventVA(vs.Addr), nats.Header{}, []byte{0xc1}); err == nil || !strings.Contains(err.Error(), "hm.event.va.192_0_2_1") {
			t.Fatalf("err %v", err)
		}
	})
}
