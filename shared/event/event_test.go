package event

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
)

func TestRoundTrip(t *testing.T) {
	for _, f := range fixtures() {
		t.Run(f.testName(), func(t *testing.T) {
			b, err := Marshal(f.msg)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			got, err := SchemaFor(f.schema)
			if err != nil {
				t.Fatal(err)
			}
			if err := Unmarshal(b, got); err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if !reflect.DeepEqual(got, f.msg) {
				t.Errorf("round trip:\n got %#v\nwant %#v", got, f.msg)
			}
		})
	}
	for _, schema := range schemaNames() {
		t.Run("zero_"+strings.ReplaceAll(schema, ".", "_"), func(t *testing.T) {
			zero, _ := SchemaFor(schema)
			b, err := Marshal(zero)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			got, _ := SchemaFor(schema)
			if err := Unmarshal(b, got); err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if !reflect.DeepEqual(got, zero) {
				t.Errorf("round trip of the zero value: got %#v", got)
			}
		})
	}
}

// The "v2" variants below stand for a later writer (or an older reader):
// each has one extra field (x2) that v1 does not know and lacks one field
// that v1 has (named in the comment). Shared fields keep their keys.

type probeResultV2 struct { // no RTT
	V        int              `msgpack:"v"`
	Target   string           `msgpack:"t"`
	Observer string           `msgpack:"o"`
	Node     string           `msgpack:"n,omitempty"`
	Seq      uint64           `msgpack:"s"`
	TS       int64            `msgpack:"ts"`
	State    State            `msgpack:"st"`
	Reason   Reason           `msgpack:"r"`
	Detail   string           `msgpack:"d,omitempty"`
	Interval int64            `msgpack:"iv,omitempty"`
	Rev      uint64           `msgpack:"rev,omitempty"`
	Extra    map[string][]int `msgpack:"x2"`
}

type voteV2 struct { // no Last
	Observer string  `msgpack:"o"`
	State    State   `msgpack:"st"`
	Count    int     `msgpack:"n"`
	TS       int64   `msgpack:"ts"`
	Reason   Reason  `msgpack:"r,omitempty"`
	Stale    bool    `msgpack:"stale,omitempty"`
	Extra    float64 `msgpack:"x2"`
}

type transitionV2 struct { // no Quorum; votes are voteV2
	V          int           `msgpack:"v"`
	Kind       Kind          `msgpack:"k"`
	Object     string        `msgpack:"obj"`
	VS         string        `msgpack:"vs,omitempty"`
	VA         string        `msgpack:"va"`
	From       State         `msgpack:"from"`
	To         State         `msgpack:"to"`
	Reason     Reason        `msgpack:"r"`
	Detail     string        `msgpack:"d,omitempty"`
	Gen        uint64        `msgpack:"gen"`
	TS         int64         `msgpack:"ts"`
	Since      int64         `msgpack:"since,omitempty"`
	Rev        uint64        `msgpack:"rev"`
	Term       uint64        `msgpack:"term"`
	Aggregator string        `msgpack:"agg,omitempty"`
	Target     string        `msgpack:"t,omitempty"`
	ResultSeq  uint64        `msgpack:"rseq,omitempty"`
	Votes      []voteV2      `msgpack:"votes,omitempty"`
	Counts     *Counts       `msgpack:"c,omitempty"`
	Apply      *BackendApply `msgpack:"apply,omitempty"`
	Action     *ActionSpec   `msgpack:"act,omitempty"`
	Paused     bool          `msgpack:"paused,omitempty"`
	Extra      *struct {
		Path  []string       `msgpack:"path"`
		Score map[string]int `msgpack:"score"`
	} `msgpack:"x2"`
}

type actionResultV2 struct { // no Duration
	V        int      `msgpack:"v"`
	Node     string   `msgpack:"n"`
	Actioner string   `msgpack:"a"`
	Kind     Kind     `msgpack:"k"`
	Object   string   `msgpack:"obj"`
	Op       string   `msgpack:"op"`
	OK       bool     `msgpack:"ok"`
	Error    string   `msgpack:"err,omitempty"`
	Attempt  int      `msgpack:"att"`
	Items    int      `msgpack:"items,omitempty"`
	EventSeq uint64   `msgpack:"eseq,omitempty"`
	TS       int64    `msgpack:"ts"`
	Output   string   `msgpack:"out,omitempty"`
	Extra    []string `msgpack:"x2"`
}

type auditRecordV2 struct { // no Who
	V      int    `msgpack:"v"`
	Verb   string `msgpack:"verb"`
	Why    string `msgpack:"why,omitempty"`
	Object string `msgpack:"obj,omitempty"`
	OK     bool   `msgpack:"ok"`
	Error  string `msgpack:"err,omitempty"`
	Detail string `msgpack:"d,omitempty"`
	Rev    uint64 `msgpack:"rev,omitempty"`
	TS     int64  `msgpack:"ts"`
	Extra  []byte `msgpack:"x2"`
}

type targetV2 struct { // no Timeout
	V            int                `msgpack:"v"`
	ID           string             `msgpack:"id"`
	Addr         string             `msgpack:"addr"`
	Port         uint16             `msgpack:"port"`
	Proto        string             `msgpack:"proto"`
	Method       string             `msgpack:"m"`
	Params       map[string]string  `msgpack:"p,omitempty"`
	Interval     int64              `msgpack:"iv"`
	Observers    int                `msgpack:"obs"`
	Jitter       float64            `msgpack:"jit,omitempty"`
	FastInterval int64              `msgpack:"fiv,omitempty"`
	DownInterval int64              `msgpack:"div,omitempty"`
	Source       string             `msgpack:"src,omitempty"`
	Netns        string             `msgpack:"ns,omitempty"`
	CheckAddr    string             `msgpack:"caddr,omitempty"`
	CheckPort    uint16             `msgpack:"cport,omitempty"`
	Rev          uint64             `msgpack:"rev"`
	UsedBy       []string           `msgpack:"used,omitempty"`
	Extra        map[string]float64 `msgpack:"x2"`
}

type memberV2 struct { // no Owned
	V         int               `msgpack:"v"`
	ID        string            `msgpack:"id"`
	Node      string            `msgpack:"node"`
	Zone      string            `msgpack:"zone,omitempty"`
	Labels    map[string]string `msgpack:"labels,omitempty"`
	Started   int64             `msgpack:"start"`
	Heartbeat int64             `msgpack:"hb"`
	Version   string            `msgpack:"ver,omitempty"`
	Leaving   bool              `msgpack:"leaving,omitempty"`
	Extra     []uint64          `msgpack:"x2"`
}

func TestCompatibility(t *testing.T) {
	fx := map[string]any{}
	for _, f := range fixtures() {
		fx[f.file()] = f.msg
	}
	tr := &transitionV2{}
	copyByName(reflect.ValueOf(tr).Elem(), reflect.ValueOf(fx["transition.v1.backend_down"]).Elem())
	for i := range tr.Votes {
		tr.Votes[i].Extra = 0.5
	}
	tr.Extra = &struct {
		Path  []string       `msgpack:"path"`
		Score map[string]int `msgpack:"score"`
	}{Path: []string{"a", "b"}, Score: map[string]int{"a": 1}}

	tests := []struct {
		name    string
		v1      any    // a v1 message
		v2      any    // a v2 message with its extra field set
		dropped string // the v1 field v2 lacks
	}{
		{"probe_result", fx["probe_result.v1.http_down"],
			v2From(&probeResultV2{Extra: map[string][]int{"k": {1, 2}}}, fx["probe_result.v1.tcp_up"]), "RTT"},
		{"transition", fx["transition.v1.backend_down"], tr, "Quorum"},
		{"action_result", fx["action_result.v1.kernel_route_error"],
			v2From(&actionResultV2{Extra: []string{"x"}}, fx["action_result.v1.backend_update_ok"]), "Duration"},
		{"audit_record", fx["audit_record.v1.pause"],
			v2From(&auditRecordV2{Extra: []byte{0xff, 0}}, fx["audit_record.v1.config_reload_rejected"]), "Who"},
		{"target", fx["target.v1.http_full"],
			v2From(&targetV2{Extra: map[string]float64{"w": 0.25}}, fx["target.v1.ping_full_mesh"]), "Timeout"},
		{"member", fx["member.v1.labels"],
			v2From(&memberV2{Extra: []uint64{1 << 63}}, fx["member.v1.leaving"]), "Owned"},
	}
	for _, tt := range tests {
		t.Run(tt.name+"_v1_to_v2", func(t *testing.T) {
			if reflect.ValueOf(tt.v1).Elem().FieldByName(tt.dropped).IsZero() {
				t.Fatalf("the v1 message must set %s, or dropping it proves nothing", tt.dropped)
			}
			b, err := Marshal(tt.v1)
			if err != nil {
				t.Fatal(err)
			}
			got := reflect.New(reflect.TypeOf(tt.v2).Elem())
			if err := Unmarshal(b, got.Interface()); err != nil {
				t.Fatalf("v2 reader: %v", err)
			}
			want := reflect.New(reflect.TypeOf(tt.v2).Elem())
			copyByName(want.Elem(), reflect.ValueOf(tt.v1).Elem())
			if !reflect.DeepEqual(got.Interface(), want.Interface()) {
				t.Errorf("v2 reader of a v1 message:\n got %#v\nwant %#v", got.Interface(), want.Interface())
			}
		})
		t.Run(tt.name+"_v2_to_v1", func(t *testing.T) {
			if reflect.ValueOf(tt.v2).Elem().FieldByName("Extra").IsZero() {
				t.Fatal("the v2 message must set Extra, or ignoring it proves nothing")
			}
			b, err := Marshal(tt.v2)
			if err != nil {
				t.Fatal(err)
			}
			got := reflect.New(reflect.TypeOf(tt.v1).Elem())
			if err := Unmarshal(b, got.Interface()); err != nil {
				t.Fatalf("v1 reader: %v", err)
			}
			if f := got.Elem().FieldByName(tt.dropped); !f.IsZero() {
				t.Errorf("%s missing on the wire decoded as %v, want the zero value", tt.dropped, f)
			}
			want := reflect.New(reflect.TypeOf(tt.v1).Elem())
			copyByName(want.Elem(), reflect.ValueOf(tt.v2).Elem())
			if !reflect.DeepEqual(got.Interface(), want.Interface()) {
				t.Errorf("v1 reader of a v2 message:\n got %#v\nwant %#v", got.Interface(), want.Interface())
			}
		})
	}
}

// v2From fills v2's shared fields from a v1 message and returns v2.
func v2From(v2, v1 any) any {
	copyByName(reflect.ValueOf(v2).Elem(), reflect.ValueOf(v1).Elem())
	return v2
}

// copyByName copies src into dst field by field name, recursing through
// structs, pointers and slices whose types differ; fields dst lacks are
// dropped and fields src lacks are left alone. It is the expected result of
// decoding one version's encoding into the other.
func copyByName(dst, src reflect.Value) {
	switch {
	case dst.Type() == src.Type():
		dst.Set(src)
	case dst.Kind() == reflect.Struct && src.Kind() == reflect.Struct:
		for i := 0; i < dst.NumField(); i++ {
			if sf := src.FieldByName(dst.Type().Field(i).Name); sf.IsValid() {
				copyByName(dst.Field(i), sf)
			}
		}
	case dst.Kind() == reflect.Pointer && src.Kind() == reflect.Pointer:
		if !src.IsNil() {
			dst.Set(reflect.New(dst.Type().Elem()))
			copyByName(dst.Elem(), src.Elem())
		}
	case dst.Kind() == reflect.Slice && src.Kind() == reflect.Slice:
		if !src.IsNil() {
			dst.Set(reflect.MakeSlice(dst.Type(), src.Len(), src.Len()))
			for i := 0; i < src.Len(); i++ {
				copyByName(dst.Index(i), src.Index(i))
			}
		}
	}
}

func FuzzUnmarshal(f *testing.F) {
	for _, fx := range fixtures() {
		b, err := Marshal(fx.msg)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Add([]byte{})
	f.Add([]byte{0xc1})
	f.Add([]byte{0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x81, 0xa1, 'p', 0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x81, 0xa5, 'v', 'o', 't', 'e', 's', 0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Add(append([]byte{0x81, 0xa1, 'x'}, bytes.Repeat([]byte{0x91}, 5000)...))
	f.Add([]byte{0x93, 0x01, 0xa1, 't', 0x02})
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, schema := range schemaNames() {
			v, _ := SchemaFor(schema)
			err := Unmarshal(data, v)
			if err == nil {
				if _, err := Marshal(v); err != nil {
					t.Fatalf("%s: decoded %x but cannot encode it again: %v", schema, data, err)
				}
				continue
			}
			if !errors.Is(err, ErrDecode) {
				t.Fatalf("%s: Unmarshal(%x): error %v does not wrap ErrDecode", schema, data, err)
			}
			if strings.Contains(err.Error(), ": panic: ") {
				t.Fatalf("%s: Unmarshal(%x): the decoder panicked (recovered): %v", schema, data, err)
			}
		}
	})
}

func TestUnmarshalErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"truncated", []byte{0x82, 0xa1, 'v', 0x01}},
		{"not_a_map", []byte{0xa3, 'a', 'b', 'c'}},
		{"wrong_type", []byte{0x81, 0xa1, 'v', 0xa1, 'x'}},
		{"huge_map", []byte{0xdf, 0xff, 0xff, 0xff, 0xff}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r ProbeResult
			if err := Unmarshal(tt.in, &r); !errors.Is(err, ErrDecode) {
				t.Errorf("Unmarshal(%x) = %v; want an error wrapping ErrDecode", tt.in, err)
			}
		})
	}
	t.Run("marshal_error", func(t *testing.T) {
		if _, err := Marshal(make(chan int)); err == nil || !strings.HasPrefix(err.Error(), "event: encode chan int") {
			t.Errorf("Marshal(chan) = %v; want an error naming the type", err)
		}
	})
}

func TestHeaders(t *testing.T) {
	pr := fixtures()[0].msg.(*ProbeResult)
	var tr, ar, audit, auditNoObj any
	for _, f := range fixtures() {
		switch f.file() {
		case "transition.v1.backend_down":
			tr = f.msg
		case "action_result.v1.kernel_route_error":
			ar = f.msg
		case "audit_record.v1.pause":
			audit = f.msg
		case "audit_record.v1.config_reload_rejected":
			auditNoObj = f.msg
		}
	}
	base := func(schema string, kv ...string) nats.Header {
		h := nats.Header{HdrContentType: {ContentType}, HdrSchema: {schema}}
		for i := 0; i < len(kv); i += 2 {
			h[kv[i]] = []string{kv[i+1]}
		}
		return h
	}
	tests := []struct {
		name string
		got  nats.Header
		want nats.Header
	}{
		{"probe_result", pr.Header(), nats.Header{"Hm-Schema": {SchemaProbeResult}, "Hm-State": {"up"}, "Hm-Reason": {"L4OK"}}},
		{"transition", tr.(*Transition).Header(), base(SchemaTransition,
			"Nats-Msg-Id", "backend/198.51.100.1-TCP-80/192.0.2.10-TCP-8080/4/"+string(tr.(*Transition).From)+"-"+string(tr.(*Transition).To), "Hm-Kind", "backend",
			"Hm-Object", "192.0.2.10-TCP-8080", "Hm-From", "up", "Hm-To", "down", "Hm-Reason", "L4CON",
			"Hm-Term", "3")},
		{"action_result", ar.(*ActionResult).Header(), base(SchemaActionResult,
			"Hm-Kind", "va", "Hm-Object", "2001:db8::1", "Hm-Node", "lb2", "Hm-Ok", "false")},
		{"audit_record", audit.(*AuditRecord).Header(), base(SchemaAudit,
			"Hm-Verb", "pause", "Hm-Who", "alice@ops1",
			"Hm-Object", "198.51.100.1-TCP-80/192.0.2.10-TCP-8080", "Hm-Ok", "true")},
		{"audit_record_no_object", auditNoObj.(*AuditRecord).Header(), base(SchemaAudit,
			"Hm-Verb", "config-reload", "Hm-Who", "signal:SIGHUP", "Hm-Ok", "false")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !reflect.DeepEqual(tt.got, tt.want) {
				t.Errorf("headers:\n got %v\nwant %v", tt.got, tt.want)
			}
		})
	}

	msgIDs := []struct {
		name, got, want string
	}{
		{"probe_result", pr.MsgID(), "prober-a1/1042"},
		{"transition", tr.(*Transition).MsgID(), "backend/198.51.100.1-TCP-80/192.0.2.10-TCP-8080/4/" + string(tr.(*Transition).From) + "-" + string(tr.(*Transition).To)},
		{"transition_va", (&Transition{Kind: KindVA, Object: "2001:db8::1", Gen: 6, Term: 9, From: Up, To: Down}).MsgID(), "va//2001:db8::1/6/up-down"},
	}
	for _, tt := range msgIDs {
		t.Run("msg_id_"+tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("MsgID() = %q, want %q", tt.got, tt.want)
			}
		})
	}
	t.Run("msg_id_ignores_term", func(t *testing.T) {
		a := Transition{Kind: KindBackend, VS: "vs", Object: "b", Gen: 2, Term: 1}
		b := a
		b.Term = 2
		if a.MsgID() != b.MsgID() {
			t.Errorf("MsgID depends on the leader term: %q vs %q; a new leader's repeat would not be deduplicated", a.MsgID(), b.MsgID())
		}
	})
}

func TestState(t *testing.T) {
	tests := []struct {
		s     State
		dpvs  string
		valid bool
	}{
		{Up, "Healthy", true},
		{Down, "Unhealthy", true},
		{Unknown, "Unknown", true},
		{"", "Unknown", false},
		{"UP", "Unknown", false},
	}
	for _, tt := range tests {
		name := string(tt.s)
		if name == "" || name == "UP" {
			name = "invalid_" + strings.ToLower(name)
		}
		t.Run(name, func(t *testing.T) {
			if got := tt.s.DPVS(); got != tt.dpvs {
				t.Errorf("DPVS() = %q, want %q", got, tt.dpvs)
			}
			if got := tt.s.Valid(); got != tt.valid {
				t.Errorf("Valid() = %v, want %v", got, tt.valid)
			}
		})
	}
}
