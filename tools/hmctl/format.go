package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/subject"
)

// timeLayout writes times to the millisecond, with the zone.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// record is one decoded message of the events or results stream.
type record struct {
	subject string
	seq     uint64    // stream sequence; 0 for a message seen live
	time    time.Time // stored at (history) or received at (watch)
	data    []byte
	msg     any // *event.Transition, *event.ActionResult, *event.AuditRecord, *event.ProbeResult …
}

// decodeRecord decodes a message by its Hm-Schema header, or by its subject
// when the header is missing or names a schema this hmctl does not know.
func decodeRecord(sp subject.Space, subj string, hdr nats.Header, data []byte) (*record, error) {
	var v any
	if name := hdr.Get(event.HdrSchema); name != "" {
		v, _ = event.SchemaFor(name)
	}
	if v == nil {
		v = messageFor(sp, subj)
	}
	if v == nil {
		return nil, fmt.Errorf("%s: no %s header and not a healthmesh subject", subj, event.HdrSchema)
	}
	if err := event.Unmarshal(data, v); err != nil {
		return nil, fmt.Errorf("%s: %w", subj, err)
	}
	return &record{subject: subj, data: data, msg: v}, nil
}

func messageFor(sp subject.Space, subj string) any {
	under := func(all string) bool { return strings.HasPrefix(subj, strings.TrimSuffix(all, ">")) }
	switch {
	case under(sp.EventsAll()):
		return new(event.Transition)
	case under(sp.ActionsAll()):
		return new(event.ActionResult)
	case under(sp.AuditAll()):
		return new(event.AuditRecord)
	case under(sp.ResultsAll()):
		return new(event.ProbeResult)
	}
	return nil
}

// when is the time a message is about: when it was decided or done, else
// when it was stored or seen.
func (r *record) when() time.Time {
	var ts int64
	switch m := r.msg.(type) {
	case *event.Transition:
		ts = m.TS
	case *event.ActionResult:
		ts = m.TS
	case *event.AuditRecord:
		ts = m.TS
	case *event.ProbeResult:
		ts = m.TS
	}
	if ts > 0 {
		return time.Unix(0, ts)
	}
	return r.time
}

// text is the one-line form of a record; withSeq adds the stream sequence.
func (r *record) text(withSeq bool) string {
	var b strings.Builder
	b.WriteString(r.when().Local().Format(timeLayout))
	if withSeq {
		fmt.Fprintf(&b, "  #%-7d", r.seq)
	}
	field := func(kind, object, what string) {
		fmt.Fprintf(&b, "  %-7s  %-40s  %s", kind, object, what)
	}
	switch m := r.msg.(type) {
	case *event.Transition:
		field(string(m.Kind), transitionObject(m), fmt.Sprintf("%-7s → %-7s  %s", m.From, m.To, reasonText(m.Reason, m.Detail)))
		for _, x := range transitionExtras(m) {
			b.WriteString("  " + x)
		}
	case *event.ActionResult:
		field("action", m.Object, fmt.Sprintf("%s %s %s  node=%s attempt=%d %v", m.Actioner, m.Op, okText(m.OK, m.Error),
			m.Node, m.Attempt, time.Duration(m.Duration).Round(time.Microsecond)))
		if m.Items > 0 {
			fmt.Fprintf(&b, " items=%d", m.Items)
		}
	case *event.AuditRecord:
		what := fmt.Sprintf("%s %s  by %s", m.Verb, okText(m.OK, m.Error), m.Who)
		if m.Why != "" {
			what += fmt.Sprintf(": %q", m.Why)
		}
		if m.Detail != "" {
			what += "  " + m.Detail
		}
		field("audit", m.Object, what)
	case *event.ProbeResult:
		field("result", m.Target, resultText(m))
	default:
		field("?", r.subject, fmt.Sprintf("%T", m))
	}
	return b.String()
}

func transitionObject(t *event.Transition) string {
	if t.Kind == event.KindBackend && t.VS != "" {
		return t.VS + "/" + t.Object
	}
	return t.Object
}

func reasonText(r event.Reason, detail string) string {
	if detail == "" {
		return string(r)
	}
	return fmt.Sprintf("%s %q", r, detail)
}

func okText(ok bool, err string) string {
	switch {
	case ok:
		return "ok"
	case err != "":
		return "FAILED: " + err
	}
	return "FAILED"
}

// transitionExtras summarise what a transition carries besides its states:
// the votes behind a backend verdict, the counts behind a VS or VA, what the
// load balancer is asked to apply.
func transitionExtras(t *event.Transition) []string {
	var out []string
	if t.Paused {
		out = append(out, "paused")
	}
	if len(t.Votes) > 0 {
		vs := make([]string, len(t.Votes))
		for i, v := range t.Votes {
			vs[i] = v.Observer + "=" + string(v.State)
			if v.Stale {
				vs[i] += "(stale)"
			}
		}
		out = append(out, "votes "+strings.Join(vs, " "))
	}
	if q := t.Quorum; q != nil {
		out = append(out, fmt.Sprintf("quorum up=%d down=%d live=%d need=%d", q.Up, q.Down, q.Live, q.Need))
	}
	if c := t.Counts; c != nil {
		of := "backends"
		if t.Kind == event.KindVA {
			of = "vs"
		}
		s := fmt.Sprintf("%s up=%d down=%d unknown=%d total=%d", of, c.Up, c.Down, c.Unknown, c.Total)
		if c.Unchecked > 0 {
			s += fmt.Sprintf(" unchecked=%d", c.Unchecked)
		}
		out = append(out, s)
	}
	if a := t.Apply; a != nil {
		s := fmt.Sprintf("apply weight=%d", a.Weight)
		if a.Inhibited {
			s += " inhibited"
		}
		out = append(out, s)
	}
	return out
}

func resultText(p *event.ProbeResult) string {
	obs := p.Observer
	if p.Node != "" {
		obs += "@" + p.Node
	}
	s := fmt.Sprintf("%-7s %-8s %s  rtt=%v", p.State, p.Reason, obs, time.Duration(p.RTT).Round(time.Microsecond))
	if p.Detail != "" {
		s += fmt.Sprintf("  %q", p.Detail)
	}
	return s
}

// jsonRecord is the JSON-lines form of a record: the message as
// event.ToJSON writes it, with where and when it was found.
type jsonRecord struct {
	Subject string          `json:"subject"`
	Seq     uint64          `json:"seq,omitempty"`
	Time    time.Time       `json:"time"`
	Event   json.RawMessage `json:"event"`
	// Results are the raw probe results behind a backend transition
	// (history --results); ResultsNote says why there are none or few.
	Results     []jsonResult `json:"results,omitempty"`
	ResultsNote string       `json:"results_note,omitempty"`
}

type jsonResult struct {
	Subject  string          `json:"subject"`
	Seq      uint64          `json:"seq"`
	Time     time.Time       `json:"time"`
	Deciding bool            `json:"deciding,omitempty"`
	Result   json.RawMessage `json:"result"`
}

func (r *record) jsonRecord() (jsonRecord, error) {
	b, err := event.ToJSON(r.data)
	if err != nil {
		return jsonRecord{}, err
	}
	return jsonRecord{Subject: r.subject, Seq: r.seq, Time: r.time.UTC(), Event: b}, nil
}

// writeJSON writes one JSON line.
func writeJSON(c *cli, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("json: %w", err)
	}
	b = append(b, '\n')
	_, err = c.stdout.Write(b)
	return err
}
