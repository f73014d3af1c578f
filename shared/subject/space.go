package subject

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// DefaultPrefix is the subject prefix when none is configured.
const DefaultPrefix = "hm"

// Space builds every subject, stream, bucket and key name under one prefix.
// The zero value uses DefaultPrefix.
type Space struct {
	Prefix string // lower-case letters, digits, '-' and '_'; no dots
}

// NewSpace checks the prefix and returns a Space for it ("" = "hm").
func NewSpace(prefix string) (Space, error) {
	if prefix == "" {
		return Space{Prefix: DefaultPrefix}, nil
	}
	for i := 0; i < len(prefix); i++ {
		c := prefix[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return Space{}, fmt.Errorf("%w: subject prefix %q: only a-z 0-9 - _ allowed", ErrToken, prefix)
		}
	}
	return Space{Prefix: prefix}, nil
}

func (s Space) p() string {
	if s.Prefix == "" {
		return DefaultPrefix
	}
	return s.Prefix
}

func (s Space) upper() string { return strings.ToUpper(strings.ReplaceAll(s.p(), "-", "_")) }

// Streams and buckets.

// StreamResults is the raw probe results stream ("HM_RESULTS").
func (s Space) StreamResults() string { return s.upper() + "_RESULTS" }

// StreamEvents is the transitions/actions/audit stream ("HM_EVENTS").
func (s Space) StreamEvents() string { return s.upper() + "_EVENTS" }

// BucketTargets is the KV bucket of desired probe targets ("hm_targets").
func (s Space) BucketTargets() string { return s.bucket("targets") }

// BucketMembers is the KV bucket of prober heartbeats ("hm_members").
func (s Space) BucketMembers() string { return s.bucket("members") }

// BucketLeader is the KV bucket holding the aggregator lease ("hm_leader").
func (s Space) BucketLeader() string { return s.bucket("leader") }

// BucketState is the KV bucket of current object state ("hm_state").
func (s Space) BucketState() string { return s.bucket("state") }

func (s Space) bucket(name string) string {
	return strings.ReplaceAll(s.p(), "-", "_") + "_" + name
}

// Subjects.

// Result is hm.result.<part>.<target>.<observer>.
func (s Space) Result(target TargetID, observer string) string {
	tok := target.Token()
	return s.p() + ".result." + strconv.Itoa(Partition(tok, Partitions)) + "." + tok + "." + NameToken(observer)
}

// ResultsAll matches every result subject.
func (s Space) ResultsAll() string { return s.p() + ".result.>" }

// ResultsPartition matches every result of one partition.
func (s Space) ResultsPartition(part int) string {
	return s.p() + ".result." + strconv.Itoa(part) + ".>"
}

// EventBackend is hm.event.backend.<vs>.<backend>.
func (s Space) EventBackend(vs VSID, backend BackendID) string {
	return s.p() + ".event.backend." + vs.Token() + "." + backend.Token()
}

// EventVS is hm.event.vs.<vs>.
func (s Space) EventVS(vs VSID) string { return s.p() + ".event.vs." + vs.Token() }

// EventVA is hm.event.va.<va>.
func (s Space) EventVA(va netip.Addr) string { return s.p() + ".event.va." + AddrToken(va) }

// EventsAll matches every transition subject (backend, vs, va).
func (s Space) EventsAll() string { return s.p() + ".event.>" }

// EventsBackendAll matches every backend transition.
func (s Space) EventsBackendAll() string { return s.p() + ".event.backend.>" }

// EventsVAAll matches every VA transition.
func (s Space) EventsVAAll() string { return s.p() + ".event.va.>" }

// Action is hm.action.<kind>.<object>; object is already a token
// (Endpoint.Token, AddrToken …).
func (s Space) Action(kind, objectToken string) string {
	return s.p() + ".action." + NameToken(kind) + "." + objectToken
}

// ActionsAll matches every action outcome.
func (s Space) ActionsAll() string { return s.p() + ".action.>" }

// Audit is hm.audit.<verb>.
func (s Space) Audit(verb string) string { return s.p() + ".audit." + NameToken(verb) }

// AuditAll matches every audit record.
func (s Space) AuditAll() string { return s.p() + ".audit.>" }

// API is hm.api.<verb>, request/reply to the active aggregator.
func (s Space) API(verb string) string { return s.p() + ".api." + NameToken(verb) }

// APIAll matches every API subject.
func (s Space) APIAll() string { return s.p() + ".api.>" }

// KV keys. All keys are valid JetStream KV keys ([-/_=.a-zA-Z0-9]).

// KeyTarget is the hm_targets key of a target.
func KeyTarget(t TargetID) string { return t.Token() }

// KeyMember is the hm_members key of a prober.
func KeyMember(memberID string) string { return NameToken(memberID) }

// KeyLeader is the hm_leader key of the aggregator lease.
const KeyLeader = "aggregator"

// KeyBackendState is the hm_state key of a backend within a VS.
func KeyBackendState(vs VSID, backend BackendID) string {
	return "backend." + vs.Token() + "." + backend.Token()
}

// KeyVSState is the hm_state key of a VS.
func KeyVSState(vs VSID) string { return "vs." + vs.Token() }

// KeyVAState is the hm_state key of a VA.
func KeyVAState(va netip.Addr) string { return "va." + AddrToken(va) }

// KeyTargetState is the hm_state key of a target's verdict and its
// per-observer streaks.
func KeyTargetState(t TargetID) string { return "target." + t.Token() }

// KeyMeta is the hm_state key of aggregator bookkeeping (results sequence,
// config revision).
const KeyMeta = "meta.aggregator"
