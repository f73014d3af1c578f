package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/subject"
)

// memberInfo is one prober in members' output.
type memberInfo struct {
	ID           string            `json:"id"`
	Node         string            `json:"node"`
	Zone         string            `json:"zone,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
	Owned        int               `json:"owned"`
	Version      string            `json:"version,omitempty"`
	Leaving      bool              `json:"leaving,omitempty"`
	Started      time.Time         `json:"started"`
	Heartbeat    time.Time         `json:"heartbeat"`
	HeartbeatAge string            `json:"heartbeat_age"`
}

// leaderInfo is the aggregator lease in members' output.
type leaderInfo struct {
	ID       string    `json:"id"`
	Revision uint64    `json:"revision"`
	Renewed  time.Time `json:"renewed"`
	Age      string    `json:"age"`
}

type membersReport struct {
	Members []memberInfo `json:"members"`
	Leader  *leaderInfo  `json:"leader"` // null when no aggregator holds the lease
}

func (c *cli) members(args []string) error {
	fs, g := c.newFlags("members")
	asJSON := fs.Bool("json", false, "print JSON")
	sp, err := g.parseNoArgs(fs, args, "")
	if err != nil {
		return err
	}
	nc, js, err := g.jetStream(c.ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(c.ctx, g.timeout)
	defer cancel()
	rep, err := readMembers(ctx, g, js, sp, c.now())
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(c, rep)
	}
	return c.printMembers(rep)
}

func readMembers(ctx context.Context, g *globals, js jetstream.JetStream, sp subject.Space, now time.Time) (membersReport, error) {
	rep := membersReport{Members: []memberInfo{}}
	kv, err := g.bucket(ctx, js, sp.BucketMembers())
	if err != nil {
		return rep, err
	}
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return rep, fmt.Errorf("bucket %s: list: %w", sp.BucketMembers(), err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	for _, k := range keys {
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // expired since the listing
		}
		if err != nil {
			return rep, fmt.Errorf("bucket %s: key %s: %w", sp.BucketMembers(), k, err)
		}
		var m event.Member
		if err := event.Unmarshal(e.Value(), &m); err != nil {
			return rep, fmt.Errorf("bucket %s: key %s: %w", sp.BucketMembers(), k, err)
		}
		hb := time.Unix(0, m.Heartbeat)
		if m.Heartbeat == 0 {
			hb = e.Created()
		}
		rep.Members = append(rep.Members, memberInfo{ID: m.ID, Node: m.Node, Zone: m.Zone, Labels: m.Labels, Owned: m.Owned,
			Version: m.Version, Leaving: m.Leaving, Started: time.Unix(0, m.Started).UTC(), Heartbeat: hb.UTC(),
			HeartbeatAge: age(now, hb)})
	}
	slices.SortFunc(rep.Members, func(a, b memberInfo) int {
		return strings.Compare(a.Node+"\x00"+a.ID, b.Node+"\x00"+b.ID)
	})

	lkv, err := g.bucket(ctx, js, sp.BucketLeader())
	if err != nil {
		return rep, err
	}
	e, err := lkv.Get(ctx, subject.KeyLeader)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return rep, fmt.Errorf("bucket %s: %w", sp.BucketLeader(), err)
	default:
		rep.Leader = &leaderInfo{ID: string(e.Value()), Revision: e.Revision(), Renewed: e.Created().UTC(), Age: age(now, e.Created())}
	}
	return rep, nil
}

func (c *cli) printMembers(rep membersReport) error {
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROBER\tNODE\tZONE\tOWNED\tHEARTBEAT\tUP\tVERSION\tLABELS")
	for _, m := range rep.Members {
		hb := m.HeartbeatAge + " ago"
		if m.Leaving {
			hb += " (leaving)"
		}
		labels := make([]string, 0, len(m.Labels))
		for _, k := range slices.Sorted(maps.Keys(m.Labels)) {
			labels = append(labels, k+"="+m.Labels[k])
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", m.ID, dash(m.Node), dash(m.Zone), m.Owned, hb,
			age(c.now(), m.Started), dash(m.Version), dash(strings.Join(labels, ",")))
	}
	if len(rep.Members) == 0 {
		fmt.Fprintln(tw, "(no prober is heartbeating)")
	}
	if rep.Leader == nil {
		fmt.Fprintln(tw, "\naggregator lease: vacant (no active aggregator)")
	} else {
		fmt.Fprintf(tw, "\naggregator lease: %s (revision %d, renewed %s ago)\n", rep.Leader.ID, rep.Leader.Revision, rep.Leader.Age)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// age is how long ago t was, rounded for reading.
func age(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case d < 0:
		d = 0
	case d < time.Minute:
		d = d.Round(100 * time.Millisecond)
	default:
		d = d.Round(time.Second)
	}
	return d.String()
}
