package subject

import (
	"net/netip"
	"testing"
)

func TestNewSpace(t *testing.T) {
	tests := []struct {
		name    string
		prefix  string
		want    string
		wantErr bool
	}{
		{"empty_is_default", "", "hm", false},
		{"custom", "lab-2_a", "lab-2_a", false},
		{"dot", "hm.x", "", true},
		{"upper", "HM", "", true},
		{"wildcard", "hm*", "", true},
		{"space", "h m", "", true},
		{"gt", ">", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkParse(t, "NewSpace", NewSpace, tt.prefix, Space{Prefix: tt.want}, tt.wantErr)
		})
	}
}

func TestSpaceNames(t *testing.T) {
	vs := ep("192.168.88.1", TCP, 80)
	backend := ep("10.0.0.1", TCP, 8080)
	vs6 := ep("2001:db8::", UDP, 53)
	backend6 := ep("2001:db8::2", UDP, 5353)
	target := TargetID{ep("10.0.0.1", TCP, 80), "http", "0123abcd"}
	va := netip.MustParseAddr("192.168.88.1")
	va6 := netip.MustParseAddr("2001::1")
	lab := Space{Prefix: "lab-2"}
	var def Space

	tests := []struct {
		name, got, want string
	}{
		{"stream_results", def.StreamResults(), "HM_RESULTS"},
		{"stream_events", def.StreamEvents(), "HM_EVENTS"},
		{"bucket_targets", def.BucketTargets(), "hm_targets"},
		{"bucket_members", def.BucketMembers(), "hm_members"},
		{"bucket_leader", def.BucketLeader(), "hm_leader"},
		{"bucket_state", def.BucketState(), "hm_state"},
		{"result", def.Result(target, "p1"), "hm.result.51.10_0_0_1-TCP-80-http-0123abcd.p1"},
		{"result_observer_escaped", def.Result(target, "lb1.dc-a"), "hm.result.51.10_0_0_1-TCP-80-http-0123abcd.lb1_2edc-a"},
		{"results_all", def.ResultsAll(), "hm.result.>"},
		{"results_partition", def.ResultsPartition(51), "hm.result.51.>"},
		{"event_backend", def.EventBackend(vs, backend), "hm.event.backend.192_168_88_1-TCP-80.10_0_0_1-TCP-8080"},
		{"event_backend_ipv6", def.EventBackend(vs6, backend6), "hm.event.backend.2001-db8---UDP-53.2001-db8--2-UDP-5353"},
		{"event_vs", def.EventVS(vs), "hm.event.vs.192_168_88_1-TCP-80"},
		{"event_va", def.EventVA(va), "hm.event.va.192_168_88_1"},
		{"event_va_ipv6", def.EventVA(va6), "hm.event.va.2001--1"},
		{"events_all", def.EventsAll(), "hm.event.>"},
		{"events_backend_all", def.EventsBackendAll(), "hm.event.backend.>"},
		{"events_va_all", def.EventsVAAll(), "hm.event.va.>"},
		{"action_backend_update", def.Action("BackendUpdate", vs.Token()), "hm.action.BackendUpdate.192_168_88_1-TCP-80"},
		{"action_va", def.Action("KernelRouteAddDel", AddrToken(va6)), "hm.action.KernelRouteAddDel.2001--1"},
		{"actions_all", def.ActionsAll(), "hm.action.>"},
		{"audit", def.Audit("pause"), "hm.audit.pause"},
		{"audit_escaped", def.Audit("config reload"), "hm.audit.config_20reload"},
		{"audit_all", def.AuditAll(), "hm.audit.>"},
		{"api", def.API("status"), "hm.api.status"},
		{"api_all", def.APIAll(), "hm.api.>"},
		{"key_target", KeyTarget(target), "10_0_0_1-TCP-80-http-0123abcd"},
		{"key_member", KeyMember("prober.1"), "prober_2e1"},
		{"key_leader", KeyLeader, "aggregator"},
		{"key_backend_state", KeyBackendState(vs, backend), "backend.192_168_88_1-TCP-80.10_0_0_1-TCP-8080"},
		{"key_vs_state", KeyVSState(vs6), "vs.2001-db8---UDP-53"},
		{"key_va_state", KeyVAState(va), "va.192_168_88_1"},
		{"key_target_state", KeyTargetState(target), "target.10_0_0_1-TCP-80-http-0123abcd"},
		{"key_meta", KeyMeta, "meta.aggregator"},
		{"custom_stream_results", lab.StreamResults(), "LAB_2_RESULTS"},
		{"custom_stream_events", lab.StreamEvents(), "LAB_2_EVENTS"},
		{"custom_bucket_targets", lab.BucketTargets(), "lab_2_targets"},
		{"custom_bucket_state", lab.BucketState(), "lab_2_state"},
		{"custom_result", lab.Result(target, "p1"), "lab-2.result.51.10_0_0_1-TCP-80-http-0123abcd.p1"},
		{"custom_event_va", lab.EventVA(va), "lab-2.event.va.192_168_88_1"},
		{"custom_api", lab.API("status"), "lab-2.api.status"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
}
