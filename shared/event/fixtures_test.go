package event

import (
	"strings"
	"time"
)

// fixture is one realistic message: the Go value behind the golden files
// schemas/fixtures/<schema>.<case>.{msgpack,json}.
type fixture struct {
	schema string // schema name, as in the Hm-Schema header
	name   string // case name
	msg    any    // pointer to the message
}

// file is the fixture's base name under schemas/fixtures.
func (f fixture) file() string { return f.schema + "." + f.name }

// testName is the fixture's snake_case subtest name.
func (f fixture) testName() string { return strings.ReplaceAll(f.file(), ".", "_") }

// Times in the fixtures: 2026-01-01T00:00:00Z plus a little.
const (
	fxT0  = int64(1767225600) * int64(time.Second)
	fxSec = int64(time.Second)
	fxMs  = int64(time.Millisecond)
)

// Addresses are documentation ranges only (TEST-NET-1/2, 2001:db8::/32).
func fixtures() []fixture {
	return []fixture{
		{SchemaProbeResult, "tcp_up", &ProbeResult{
			V: Version, Target: "192_0_2_10-TCP-8080-tcp-3f1a2b4c", Observer: "prober-a1", Node: "lb1",
			Seq: 1042, TS: fxT0 + 3*fxSec, State: Up, Reason: ReasonL4OK, RTT: 412 * int64(time.Microsecond),
			Interval: 3 * fxSec, Rev: 7,
		}},
		{SchemaProbeResult, "http_down", &ProbeResult{
			V: Version, Target: "2001-db8--10-TCP-80-http-9f3a01c2", Observer: "prober-b2", Node: "lb2",
			Seq: 77, TS: fxT0 + 5*fxSec, State: Down, Reason: ReasonL7STS, RTT: 38 * fxMs,
			Detail: "status 503", Interval: 2 * fxSec, Rev: 7,
		}},
		{SchemaProbeResult, "probe_error", &ProbeResult{
			V: Version, Target: "192_0_2_11-UDP-53-udpping-00c0ffee", Observer: "prober-a1",
			Seq: 1, TS: fxT0, State: Unknown, Reason: ReasonSOCKERR,
			Detail: "bind 198.51.100.7: cannot assign requested address",
		}},

		{SchemaTransition, "backend_down", &Transition{
			V: Version, Kind: KindBackend, Object: "192.0.2.10-TCP-8080", VS: "198.51.100.1-TCP-80", VA: "198.51.100.1",
			From: Up, To: Down, Reason: ReasonL4CON, Detail: "connection refused", Gen: 4,
			TS: fxT0 + 9*fxSec, Since: fxT0 - 3600*fxSec, Rev: 7, Term: 3, Aggregator: "agg-1",
			Target: "192_0_2_10-TCP-8080-tcp-3f1a2b4c", ResultSeq: 918273,
			Votes: []Vote{
				{Observer: "prober-a1", State: Down, Last: Down, Count: 2, TS: fxT0 + 9*fxSec, Reason: ReasonL4CON},
				{Observer: "prober-b2", State: Down, Last: Down, Count: 3, TS: fxT0 + 8*fxSec, Reason: ReasonL4CON},
				{Observer: "prober-c3", State: Up, Last: Up, Count: 40, TS: fxT0 - 60*fxSec, Reason: ReasonL4OK, Stale: true},
			},
			Quorum: &Quorum{Need: 2, Observers: 3, Live: 2, Up: 0, Down: 2},
			Apply: &BackendApply{
				VIP: "198.51.100.1", VPort: 80, Proto: "TCP", Addr: "192.0.2.10", Port: 8080,
				Weight: 0, UserWeight: 100, Inhibited: true, Version: "1767225590123",
			},
			Action: &ActionSpec{Actioner: "BackendUpdate", Timeout: 2 * fxSec, SyncTime: 15 * fxSec},
		}},
		{SchemaTransition, "backend_paused", &Transition{
			V: Version, Kind: KindBackend, Object: "2001:db8::10-TCP-80", VS: "2001:db8::1-TCP-80", VA: "2001:db8::1",
			From: Up, To: Down, Reason: ReasonPaused, Detail: "paused by alice: kernel upgrade", Gen: 12,
			TS: fxT0 + 20*fxSec, Since: fxT0 - 86400*fxSec, Rev: 7, Term: 3, Aggregator: "agg-1", Paused: true,
			Apply: &BackendApply{
				VIP: "2001:db8::1", VPort: 80, Proto: "TCP", Addr: "2001:db8::10", Port: 80,
				Weight: 0, UserWeight: 10, Inhibited: true,
			},
			Action: &ActionSpec{Actioner: "BackendUpdate", Timeout: 2 * fxSec, SyncTime: 15 * fxSec},
		}},
		{SchemaTransition, "vs_up", &Transition{
			V: Version, Kind: KindVS, Object: "198.51.100.1-TCP-80", VS: "198.51.100.1-TCP-80", VA: "198.51.100.1",
			From: Unknown, To: Up, Reason: ReasonAggr, Gen: 1, TS: fxT0 + 4*fxSec, Rev: 7, Term: 3,
			Counts: &Counts{Up: 2, Down: 1, Unknown: 0, Total: 3},
		}},
		{SchemaTransition, "va_down", &Transition{
			V: Version, Kind: KindVA, Object: "2001:db8::1", VA: "2001:db8::1",
			From: Up, To: Down, Reason: ReasonAggr, Detail: "down-policy allOf: every VS down", Gen: 6,
			TS: fxT0 + 30*fxSec, Since: fxT0 - 7200*fxSec, Rev: 8, Term: 4, Aggregator: "agg-2",
			Counts: &Counts{Up: 0, Down: 2, Unknown: 0, Total: 3, Unchecked: 1},
			Action: &ActionSpec{
				Actioner: "KernelRouteAddDel",
				Params:   map[string]string{"ifname": "lo", "with-route": "yes"},
				Timeout:  2 * fxSec, SyncTime: 60 * fxSec,
			},
		}},

		{SchemaActionResult, "backend_update_ok", &ActionResult{
			V: Version, Node: "lb1", Actioner: "BackendUpdate", Kind: KindBackend, Object: "198.51.100.1-TCP-80",
			Op: "APPLY", OK: true, Duration: 4 * fxMs, Attempt: 1, Items: 3, EventSeq: 5521, TS: fxT0 + 10*fxSec,
		}},
		{SchemaActionResult, "kernel_route_error", &ActionResult{
			V: Version, Node: "lb2", Actioner: "KernelRouteAddDel", Kind: KindVA, Object: "2001:db8::1",
			Op: "DOWN", OK: false, Error: "netlink: AddrDel dummy0: link not found", Duration: 150 * int64(time.Microsecond),
			Attempt: 2, EventSeq: 5600, TS: fxT0 + 31*fxSec,
		}},
		{SchemaActionResult, "script_sync", &ActionResult{
			V: Version, Node: "lb1", Actioner: "Script", Kind: KindVA, Object: "198.51.100.1",
			Op: "SYNC", OK: true, Duration: 25 * fxMs, Attempt: 1, TS: fxT0 + 60*fxSec,
			Output: "announce 198.51.100.1/32: ok\n",
		}},

		{SchemaAudit, "pause", &AuditRecord{
			V: Version, Verb: "pause", Who: "alice@ops1", Why: "kernel upgrade",
			Object: "198.51.100.1-TCP-80/192.0.2.10-TCP-8080", OK: true, TS: fxT0 + 19*fxSec,
		}},
		{SchemaAudit, "config_reload_rejected", &AuditRecord{
			V: Version, Verb: "config-reload", Who: "signal:SIGHUP", OK: false,
			Error:  "virtual-servers/198.51.100.1-TCP-80/interval: must be > 0",
			Detail: "running configuration kept", Rev: 7, TS: fxT0 + 40*fxSec,
		}},

		{SchemaTarget, "http_full", &Target{
			V: Version, ID: "192_0_2_10-TCP-8080-http-9f3a01c2", Addr: "192.0.2.10", Port: 8080, Proto: "TCP",
			Method: "http", Params: map[string]string{"http-uri": "/healthz", "response-codes": "200,204", "https": "no"},
			Interval: 3 * fxSec, Timeout: 1 * fxSec, Observers: 2, Jitter: 0.1,
			FastInterval: 1 * fxSec, DownInterval: 10 * fxSec, Source: "198.51.100.7", Netns: "probe",
			CheckAddr: "192.0.2.20", CheckPort: 9000, Rev: 7,
			UsedBy: []string{"198.51.100.1-TCP-80/192.0.2.10-TCP-8080", "198.51.100.2-TCP-80/192.0.2.10-TCP-8080"},
		}},
		{SchemaTarget, "ping_full_mesh", &Target{
			V: Version, ID: "2001-db8--10-TCP-0-ping-0badf00d", Addr: "2001:db8::10", Port: 0, Proto: "TCP",
			Method: "ping", Interval: 2 * fxSec, Timeout: 1 * fxSec, Observers: ObserversAll, Rev: 3,
		}},

		{SchemaMember, "labels", &Member{
			V: Version, ID: "prober-a1", Node: "lb1", Zone: "dc-a", Labels: map[string]string{"rack": "r12", "role": "edge"},
			Started: fxT0 - 3600*fxSec, Heartbeat: fxT0 + 2*fxSec, Owned: 1234, Version: "v0.1.0",
		}},
		{SchemaMember, "leaving", &Member{
			V: Version, ID: "prober-b2", Node: "lb2", Started: fxT0 - 60*fxSec, Heartbeat: fxT0 + 3*fxSec, Leaving: true,
		}},
	}
}
