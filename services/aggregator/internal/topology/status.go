package topology

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/healthmesh/healthmesh/services/aggregator/internal/checker"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/subject"
)

// VAStatus is a VA in the status tree.
type VAStatus struct {
	VIP        netip.Addr
	State      event.State
	Since      time.Time
	For        time.Duration // in this state at `now`, truncated to seconds
	Gen        uint64
	DownPolicy int
	Counts     event.Counts  // its VSs
	Stats      checker.Stats // DPVS VA counters: transitions up/down, VS notices; failures are the actioner's
	VSs        []VSStatus
}

// VSStatus is a VS in the status tree.
type VSStatus struct {
	ID              subject.VSID
	State           event.State
	Since           time.Time
	For             time.Duration
	Gen             uint64
	Counts          event.Counts  // its backends (paused ones as down)
	Stats           checker.Stats // DPVS VS counters: transitions up/down, backend notices
	Unchecked       bool
	UncheckedReason string
	Guards          Guards
	Backends        []BackendStatus
}

// BackendStatus is a backend in the status tree.
type BackendStatus struct {
	ID     subject.BackendID
	Target string
	State  event.State // its real health, paused or not
	Since  time.Time
	For    time.Duration
	Gen    uint64
	Reason event.Reason
	Detail string
	// Weight is the user weight; AppliedWeight and Inhibited are what was
	// applied last, or what DPVS reported while nothing has been (Applied false).
	Weight        uint16
	AppliedWeight uint16
	Inhibited     bool
	Applied       bool
	Held          bool // down, kept up by a guard
	Paused        bool
	PausedBy      string
	PausedWhy     string
	PausedAt      time.Time
	Votes         []event.Vote  // at the target's last verdict
	Quorum        *event.Quorum // idem
	Stats         checker.Stats // probe counters: zero here, filled by the caller from its checker.Target
}

// Tree returns the status of every object, VAs in VIP order, VSs and
// backends in ID order.
func (m *Model) Tree(now time.Time) []VAStatus {
	tree := make([]VAStatus, 0, len(m.vas))
	for _, vip := range slices.SortedFunc(maps.Keys(m.vas), netip.Addr.Compare) {
		a := m.vas[vip]
		as := VAStatus{
			VIP: vip, State: a.obj.state, Since: a.obj.start(), For: age(a.obj.start(), now), Gen: a.obj.gen,
			DownPolicy: a.spec.DownPolicy, Counts: a.counts(), Stats: a.stats,
		}
		if as.DownPolicy == 0 {
			as.DownPolicy = DownPolicyAllOf
		}
		for _, v := range a.vss {
			vs := VSStatus{
				ID: v.id, State: v.obj.state, Since: v.obj.start(), For: age(v.obj.start(), now), Gen: v.obj.gen,
				Counts: v.counts(), Stats: v.stats, Unchecked: v.spec.Unchecked,
				UncheckedReason: v.spec.UncheckedReason, Guards: v.spec.Guards,
			}
			for _, b := range v.backends {
				bs := BackendStatus{
					ID: b.id, Target: b.spec.Target, State: b.obj.state, Since: b.obj.start(),
					For: age(b.obj.start(), now), Gen: b.obj.gen, Reason: b.obj.reason, Detail: b.obj.detail,
					Weight: b.spec.Weight, Held: b.held, Applied: b.applied != appliedNone,
				}
				switch b.applied {
				case appliedUp:
					bs.AppliedWeight = b.spec.Weight
				case appliedDown:
					bs.Inhibited = true
				default:
					bs.Inhibited = b.spec.Inhibited
					if !bs.Inhibited {
						bs.AppliedWeight = b.spec.Weight
					}
				}
				if p := b.pause; p != nil {
					bs.Paused, bs.PausedBy, bs.PausedWhy, bs.PausedAt = true, p.who, p.why, p.at
				}
				if b.target != nil {
					bs.Votes, bs.Quorum = b.target.votes, b.target.quorum
				}
				vs.Backends = append(vs.Backends, bs)
			}
			as.VSs = append(as.VSs, vs)
		}
		tree = append(tree, as)
	}
	return tree
}

// age is DPVS's duration column: time in the state, truncated to seconds.
func age(since, now time.Time) time.Duration {
	d := now.Sub(since).Truncate(time.Second)
	if since.IsZero() || d < 0 {
		return 0
	}
	return d
}

// RenderText writes tree in the layout of DPVS's /metrics object table
// (reference §7.1): 32-character object, state and statistics columns
// separated by 4 spaces, VSs indented by 4, backends by "    -> ", states as
// "Healthy 17m0s", then the statistics legend. Rows are in address order
// (DPVS sorts strings). The extra column says what DPVS's cannot: policy,
// counts, guards, applied weight, pause and votes.
func RenderText(tree []VAStatus, now time.Time) string {
	const sep = "    "
	var sb strings.Builder
	fmt.Fprintf(&sb, "%-32s%s%-32s%s%-32s%s%s\n", "object", sep, "state", sep, "statistics", sep, "extra(optional)")
	sb.WriteString(strings.Repeat("-", 123) + "\n")
	row := func(indent, object string, st event.State, since time.Time, stats checker.Stats, extra []string) {
		state := fmt.Sprintf("%s %v", st.DPVS(), age(since, now))
		fmt.Fprintf(&sb, "%s%-32s%s%-32s%s%-32s", indent, object, sep, state, sep, stats.String())
		if len(extra) > 0 {
			sb.WriteString(sep + strings.Join(extra, " "))
		}
		sb.WriteString("\n")
	}
	for _, a := range tree {
		row("", a.VIP.String(), a.State, a.Since, a.Stats, []string{
			policyName(a.DownPolicy),
			fmt.Sprintf("vs(up,down,unknown,unchecked)=%d,%d,%d,%d", a.Counts.Up, a.Counts.Down, a.Counts.Unknown, a.Counts.Unchecked),
		})
		for _, v := range a.VSs {
			extra := []string{fmt.Sprintf("backends(up,down,unknown)=%d,%d,%d", v.Counts.Up, v.Counts.Down, v.Counts.Unknown)}
			if v.Unchecked {
				extra = append(extra, "unchecked("+v.UncheckedReason+")")
			}
			if v.Guards.MinUp > 0 {
				extra = append(extra, fmt.Sprintf("min-up=%d", v.Guards.MinUp))
			}
			if f := v.Guards.MaxDownFraction; f > 0 && f < 1 {
				extra = append(extra, fmt.Sprintf("max-down-fraction=%g", f))
			}
			object := v.ID.Proto.String() + " " + netip.AddrPortFrom(v.ID.Addr, v.ID.Port).String()
			row(sep, object, v.State, v.Since, v.Stats, extra)
			for _, b := range v.Backends {
				row(sep+"-> ", netip.AddrPortFrom(b.ID.Addr, b.ID.Port).String(), b.State, b.Since, b.Stats, backendExtra(b))
			}
		}
	}
	sb.WriteString("Notes:\n  statistics denotation: up,down,up_notices,down_notices,fail(up,timeout),fail(down,error)\n")
	return sb.String()
}

func backendExtra(b BackendStatus) []string {
	extra := []string{fmt.Sprintf("weight=%d/%d", b.AppliedWeight, b.Weight)}
	if b.Inhibited {
		extra = append(extra, "inhibited")
	}
	if b.Held {
		extra = append(extra, "guard-held")
	}
	if b.Paused {
		p := "paused(" + b.PausedBy
		if b.PausedWhy != "" {
			p += ": " + b.PausedWhy
		}
		extra = append(extra, p+")")
	}
	if q := b.Quorum; q != nil && len(b.Votes) > 1 {
		extra = append(extra, fmt.Sprintf("votes(up,down,live,need)=%d,%d,%d,%d", q.Up, q.Down, q.Live, q.Need))
	}
	if b.Reason != "" && b.State != event.Unknown {
		extra = append(extra, string(b.Reason))
	}
	return extra
}
