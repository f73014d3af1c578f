package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/subject"
)

// sp is the subject space of every lab (the default prefix, hm).
var sp = subject.Space{}

// tr is one transition a test expects.
type tr struct {
	kind     event.Kind
	vs       string // backend and vs kinds
	obj      string
	from, to event.State
	reason   event.Reason
}

func (x tr) String() string {
	obj := x.obj
	if x.kind == event.KindBackend {
		obj = x.vs + "/" + x.obj
	}
	return fmt.Sprintf("%s %s %s→%s %s", x.kind, obj, x.from, x.to, x.reason)
}

// histRec is one line of `hmctl history --json`.
type histRec struct {
	Subject string `json:"subject"`
	Seq     uint64 `json:"seq"`
	Event   struct {
		Kind   event.Kind   `json:"k"`
		Object string       `json:"obj"`
		VS     string       `json:"vs"`
		From   event.State  `json:"from"`
		To     event.State  `json:"to"`
		Reason event.Reason `json:"r"`
	} `json:"event"`
	line string
}

func (r histRec) tr() tr {
	return tr{kind: r.Event.Kind, vs: r.Event.VS, obj: r.Event.Object, from: r.Event.From, to: r.Event.To, reason: r.Event.Reason}
}

// hmctl runs hmctl against the bus at natsURL and returns its stdout.
func hmctl(t *testing.T, natsURL string, args ...string) string {
	t.Helper()
	out, err := tryHmctl(t, natsURL, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// tryHmctl is hmctl returning its failure.
func tryHmctl(t *testing.T, natsURL string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin(t, "hmctl"), append(args, "-nats-url", natsURL)...)
	cmd.Env = childEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("hmctl %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return stdout.String(), nil
}

// history is `hmctl history --json`: every transition, oldest first.
func history(t *testing.T, natsURL string) []histRec {
	t.Helper()
	recs, err := tryHistory(t, natsURL)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// tryHistory is history returning its failure (before the streams exist).
func tryHistory(t *testing.T, natsURL string) ([]histRec, error) {
	out, err := tryHmctl(t, natsURL, "history", "--json", "--since", "1h")
	if err != nil {
		return nil, err
	}
	var recs []histRec
	for _, line := range lines(out) {
		var r histRec
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return nil, fmt.Errorf("hmctl history --json: %v in %s", err, line)
		}
		r.line = line
		recs = append(recs, r)
	}
	return recs, nil
}

// lines are the non-empty lines of s.
func lines(s string) []string { return strings.FieldsFunc(s, func(r rune) bool { return r == '\n' }) }

// checkHistory asserts that recs are exactly the transitions of phases:
// those of each phase in any order among themselves, the phases in order,
// nothing else.
func checkHistory(t *testing.T, recs []histRec, phases [][]tr) {
	t.Helper()
	key := func(x tr) string { return x.String() }
	at := 0
	for i, phase := range phases {
		want := make([]string, len(phase))
		for j, x := range phase {
			want[j] = key(x)
		}
		var got []string
		for _, r := range recs[at:min(at+len(phase), len(recs))] {
			got = append(got, key(r.tr()))
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("history step %d (records %d..%d):\n got  %s\n want %s", i, at+1, at+len(phase),
				strings.Join(got, "\n      "), strings.Join(want, "\n      "))
			dumpHistory(t, recs)
			return
		}
		at += len(phase)
	}
	if at != len(recs) {
		t.Errorf("history has %d transitions more than expected", len(recs)-at)
		dumpHistory(t, recs)
	}
}

func dumpHistory(t *testing.T, recs []histRec) {
	t.Helper()
	var b strings.Builder
	for _, r := range recs {
		fmt.Fprintf(&b, "#%d %s\n", r.Seq, r.tr())
	}
	t.Logf("history:\n%s", b.String())
}

// checkHistoryText asserts that the text form of hmctl history lists recs
// in the same order, each line naming the object, the states and the
// reason.
func checkHistoryText(t *testing.T, natsURL string, recs []histRec) {
	t.Helper()
	text := lines(hmctl(t, natsURL, "history", "--since", "1h"))
	if len(text) != len(recs) {
		t.Fatalf("hmctl history prints %d lines, --json %d records:\n%s", len(text), len(recs), strings.Join(text, "\n"))
	}
	for i, r := range recs {
		e := r.Event
		re := regexp.MustCompile(fmt.Sprintf(`#%d\s.*\b%s\b.*%s\s+→\s+%s\s+%s\b`, r.Seq, regexp.QuoteMeta(string(e.Kind)),
			regexp.QuoteMeta(string(e.From)), regexp.QuoteMeta(string(e.To)), regexp.QuoteMeta(string(e.Reason))))
		if !re.MatchString(text[i]) || !strings.Contains(text[i], e.Object) {
			t.Errorf("hmctl history line %d does not show %s (#%d):\n%s", i+1, r.tr(), r.Seq, text[i])
		}
	}
}

// natsConn is a NATS connection of the test's own, to read streams directly.
type natsConn struct {
	nc *nats.Conn
	js jetstream.JetStream
}

func dial(t *testing.T, natsURL string) *natsConn {
	t.Helper()
	nc, err := nats.Connect(natsURL, nats.Name("e2e-test"), nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("connect %s: %v", natsURL, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return &natsConn{nc: nc, js: js}
}

// last returns the newest message on subj in the events stream, decoded.
func (b *natsConn) last(t *testing.T, subj string) (nats.Header, event.Transition) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := b.js.Stream(ctx, sp.StreamEvents())
	if err != nil {
		t.Fatalf("stream %s: %v", sp.StreamEvents(), err)
	}
	m, err := st.GetLastMsgForSubject(ctx, subj)
	if err != nil {
		t.Fatalf("last message on %s: %v", subj, err)
	}
	var x event.Transition
	if err := event.Unmarshal(m.Data, &x); err != nil {
		t.Fatalf("decode %s #%d: %v", subj, m.Sequence, err)
	}
	return m.Header, x
}

// lastSeq is the last sequence of a stream.
func (b *natsConn) lastSeq(t *testing.T, stream string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := b.js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatalf("stream %s info: %v", stream, err)
	}
	return info.State.LastSeq
}

// checkHeaders asserts that the newest transition on subj carries its key
// facts as headers (what `nats sub` shows without a decoder) and that they
// agree with its payload and with want.
func checkHeaders(t *testing.T, b *natsConn, subj string, want tr) {
	t.Helper()
	h, x := b.last(t, subj)
	for _, c := range []struct {
		header, got, want string
	}{
		{event.HdrSchema, h.Get(event.HdrSchema), event.SchemaTransition},
		{event.HdrKind, h.Get(event.HdrKind), string(want.kind)},
		{event.HdrObject, h.Get(event.HdrObject), want.obj},
		{event.HdrFrom, h.Get(event.HdrFrom), string(want.from)},
		{event.HdrTo, h.Get(event.HdrTo), string(want.to)},
		{event.HdrReason, h.Get(event.HdrReason), string(want.reason)},
		{event.HdrMsgID, h.Get(event.HdrMsgID), x.MsgID()},
		{"payload " + event.HdrObject, h.Get(event.HdrObject), x.Object},
		{"payload " + event.HdrFrom, h.Get(event.HdrFrom), string(x.From)},
		{"payload " + event.HdrTo, h.Get(event.HdrTo), string(x.To)},
	} {
		if c.got != c.want {
			t.Errorf("%s: header %s = %q, want %q", subj, c.header, c.got, c.want)
		}
	}
}
