package event

import (
	"strconv"

	"github.com/nats-io/nats.go"
)

func baseHeader(schema string) nats.Header {
	h := nats.Header{}
	h.Set(HdrContentType, ContentType)
	h.Set(HdrSchema, schema)
	return h
}

// Header returns the NATS headers of a probe result: its schema, state and
// reason. Results are the one high-volume message, and every header costs
// each result about 0.3 µs of CPU to write, route and parse again in the
// aggregator, so they carry only what their subject does not say: the
// target and observer are its last two tokens, and the schema names the
// codec (docs/design-notes.md).
func (r *ProbeResult) Header() nats.Header {
	return nats.Header{HdrSchema: {SchemaProbeResult}, HdrState: {string(r.State)}, HdrReason: {string(r.Reason)}}
}

// MsgID is the result's Nats-Msg-Id: observer and its sequence.
func (r *ProbeResult) MsgID() string {
	return r.Observer + "/" + strconv.FormatUint(r.Seq, 10)
}

// MsgID is the transition's Nats-Msg-Id. It names the object, its
// generation and the states, not the leader term, so a new leader repeating
// an event that the old one already stored is deduplicated by the stream;
// a different transition that happens to reuse a generation (a replay that
// decided otherwise) is a different message and is kept, never lost.
func (t *Transition) MsgID() string {
	return string(t.Kind) + "/" + t.VS + "/" + t.Object + "/" + strconv.FormatUint(t.Gen, 10) + "/" + string(t.From) + "-" + string(t.To)
}

// Header returns the NATS headers of a transition.
func (t *Transition) Header() nats.Header {
	h := baseHeader(SchemaTransition)
	h.Set(HdrMsgID, t.MsgID())
	h.Set(HdrKind, string(t.Kind))
	h.Set(HdrObject, t.Object)
	h.Set(HdrFrom, string(t.From))
	h.Set(HdrTo, string(t.To))
	h.Set(HdrReason, string(t.Reason))
	h.Set(HdrTerm, strconv.FormatUint(t.Term, 10))
	return h
}

// Header returns the NATS headers of an action result.
func (a *ActionResult) Header() nats.Header {
	h := baseHeader(SchemaActionResult)
	h.Set(HdrKind, string(a.Kind))
	h.Set(HdrObject, a.Object)
	h.Set(HdrNode, a.Node)
	h.Set(HdrOK, strconv.FormatBool(a.OK))
	return h
}

// Header returns the NATS headers of an audit record.
func (a *AuditRecord) Header() nats.Header {
	h := baseHeader(SchemaAudit)
	h.Set(HdrVerb, a.Verb)
	h.Set(HdrWho, a.Who)
	if a.Object != "" {
		h.Set(HdrObject, a.Object)
	}
	h.Set(HdrOK, strconv.FormatBool(a.OK))
	return h
}
