// Package event defines healthmesh's wire messages: msgpack maps with short
// string keys and a version field "v", described field by field in the JSON
// Schemas under schemas/ at the repository root.
//
// Compatibility rules: a key is never renamed or reused; new fields are
// optional; decoders ignore unknown keys, so old and new versions decode each
// other. A breaking change gets a new schema name (and subject).
package event

import (
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// Version is the current wire version written into every message's "v".
const Version = 1

// ErrDecode is wrapped by every decoding error.
var ErrDecode = errors.New("event: decode")

// State is the health of a target, backend, VS or VA.
type State string

// States. Unknown is the initial state and the state of anything with no
// live evidence; it is never treated as Down.
const (
	Unknown State = "unknown"
	Up      State = "up"
	Down    State = "down"
)

// DPVS returns the name DPVS uses in its tree: Healthy, Unhealthy, Unknown.
func (s State) DPVS() string {
	switch s {
	case Up:
		return "Healthy"
	case Down:
		return "Unhealthy"
	}
	return "Unknown"
}

// Valid reports whether s is one of the three states.
func (s State) Valid() bool { return s == Up || s == Down || s == Unknown }

// Reason is a HAProxy-style code classifying a probe result or transition.
type Reason string

// Probe reason codes.
const (
	ReasonNone    Reason = "NONE"     // method none: always up
	ReasonL4OK    Reason = "L4OK"     // layer 4 check passed (connect, or UDP with no error)
	ReasonL4TOUT  Reason = "L4TOUT"   // layer 4 timeout (connect, or no UDP reply when one is required)
	ReasonL4CON   Reason = "L4CON"    // layer 4 connection problem (refused, reset, ICMP port unreachable)
	ReasonL4RSP   Reason = "L4RSP"    // TCP/UDP payload check: wrong reply bytes
	ReasonL6OK    Reason = "L6OK"     // TLS handshake passed
	ReasonL6TOUT  Reason = "L6TOUT"   // TLS handshake timeout
	ReasonL6RSP   Reason = "L6RSP"    // TLS failure (bad certificate, protocol error)
	ReasonL7OK    Reason = "L7OK"     // HTTP check passed
	ReasonL7STS   Reason = "L7STS"    // HTTP status not in response-codes
	ReasonL7RSP   Reason = "L7RSP"    // HTTP body did not match
	ReasonL7TOUT  Reason = "L7TOUT"   // HTTP response timeout
	ReasonICMPOK  Reason = "ICMPOK"   // echo reply received
	ReasonICMPTO  Reason = "ICMPTOUT" // no echo reply in time
	ReasonICMPUNR Reason = "ICMPUNR"  // ICMP destination unreachable received
	ReasonSOCKERR Reason = "SOCKERR"  // local socket error (bind source, netns, permissions)
	ReasonPROCERR Reason = "PROCERR"  // probe could not run (bad params, internal error): not a verdict
)

// Transition reason codes (besides the probe reason that triggered them).
const (
	ReasonStale    Reason = "STALE"    // observers went silent: verdict lost, state Unknown
	ReasonQuorum   Reason = "QUORUM"   // verdict reached by observer quorum
	ReasonAggr     Reason = "AGGR"     // VS/VA re-judged from its children
	ReasonPaused   Reason = "PAUSED"   // operator paused a backend
	ReasonResumed  Reason = "RESUMED"  // operator resumed a backend
	ReasonConfig   Reason = "CONFIG"   // configuration change (object added, removed, guard changed)
	ReasonRemoved  Reason = "REMOVED"  // object removed from the inventory
	ReasonGuard    Reason = "GUARD"    // a VS guard (min-up / max-down-fraction) held a backend up
	ReasonRestored Reason = "RESTORED" // state restored at start-up (never a transition by itself)
)

// Kind is the object tier a transition is about.
type Kind string

// Kinds.
const (
	KindBackend Kind = "backend"
	KindVS      Kind = "vs"
	KindVA      Kind = "va"
)

// ObserversAll in Target.Observers means one observer per node (full mesh).
const ObserversAll = -1

// Schema names, carried in the Hm-Schema header.
const (
	SchemaProbeResult  = "probe_result.v1"
	SchemaTransition   = "transition.v1"
	SchemaActionResult = "action_result.v1"
	SchemaAudit        = "audit_record.v1"
	SchemaTarget       = "target.v1"
	SchemaMember       = "member.v1"
)

// Header names. Every message carries its key facts as headers so that
// `nats sub` is readable without a decoder.
const (
	HdrMsgID       = "Nats-Msg-Id"
	HdrContentType = "Content-Type"
	HdrSchema      = "Hm-Schema"
	HdrKind        = "Hm-Kind"
	HdrObject      = "Hm-Object"
	HdrFrom        = "Hm-From"
	HdrTo          = "Hm-To"
	HdrReason      = "Hm-Reason"
	HdrState       = "Hm-State"
	HdrNode        = "Hm-Node"
	HdrOK          = "Hm-Ok"
	HdrVerb        = "Hm-Verb"
	HdrWho         = "Hm-Who"
	HdrTerm        = "Hm-Term"

	ContentType = "application/msgpack"
)

// Marshal encodes a message as a msgpack map.
func Marshal(v any) ([]byte, error) {
	b, err := msgpack.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("event: encode %T: %w", v, err)
	}
	return b, nil
}

// Unmarshal decodes a msgpack message into v. Unknown keys are ignored.
// Malformed input yields an error wrapping ErrDecode, never a panic; a
// length prefix larger than the message or nesting deeper than MaxDepth is
// rejected before msgpack allocates for it (see scan).
func Unmarshal(data []byte, v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %T: panic: %v", ErrDecode, v, r)
		}
	}()
	if _, err := scan(data, MaxDepth); err != nil {
		return fmt.Errorf("%w: %T: %v", ErrDecode, v, err)
	}
	if err := msgpack.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%w: %T: %v", ErrDecode, v, err)
	}
	return nil
}
