package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/subject"
)

// defaultInterval is the probe interval assumed when no result says it
// (DPVS's default).
const defaultInterval = 3 * time.Second

// widenings bounds how often the window of results is doubled when it holds
// too few: 2^4 = 16 times the first guess.
const widenings = 4

// resultReader reads the raw probe results behind backend transitions from
// the results stream.
type resultReader struct {
	js     jetstream.JetStream
	stream jetstream.Stream
	sp     subject.Space
	last   int // results per observer
}

// behind returns, in stream order, the last rs.last results of each observer
// of t's target up to t.ResultSeq (the result that decided t, or for an
// operator or configuration transition the stream position it was decided
// at), and a note when there are none or some have aged out.
func (rs *resultReader) behind(ctx context.Context, t *event.Transition) ([]*record, string, error) {
	if t.Target == "" || t.ResultSeq == 0 {
		return nil, fmt.Sprintf("none: this transition (%s) was not decided by a probe result", t.Reason), nil
	}
	if _, err := subject.ParseTargetToken(t.Target); err != nil {
		return nil, fmt.Sprintf("none: target %q is not a target token", t.Target), nil
	}
	name := rs.sp.StreamResults()
	pattern := rs.sp.ResultsPartition(subject.Partition(t.Target, subject.Partitions))
	pattern = pattern[:len(pattern)-1] + t.Target + ".*" // hm.result.<part>.<target>.*

	at, err := rs.stream.GetMsg(ctx, t.ResultSeq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		first := ""
		if info, ierr := rs.stream.Info(ctx); ierr == nil {
			first = fmt.Sprintf("; it now starts at #%d", info.State.FirstSeq)
		}
		return nil, fmt.Sprintf("AGED OUT of %s: result #%d is gone%s", name, t.ResultSeq, first), nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("%s: get #%d: %w", name, t.ResultSeq, err)
	}
	// Results of one target come an interval apart: start far enough back
	// for rs.last of them per observer, and widen while some observer has
	// fewer and the stream reaches further back.
	iv := defaultInterval
	var pr event.ProbeResult
	if subjectMatch(pattern, at.Subject) && event.Unmarshal(at.Data, &pr) == nil && pr.Interval > 0 {
		iv = time.Duration(pr.Interval)
	}
	info, err := rs.stream.Info(ctx)
	if err != nil {
		return nil, "", fmt.Errorf("%s: info: %w", name, err)
	}
	window := 2 * time.Duration(rs.last+1) * iv
	for try := 0; ; try++ {
		start := at.Time.Add(-window)
		per, err := rs.read(ctx, pattern, start, t.ResultSeq)
		if err != nil {
			return nil, "", err
		}
		short := len(per) == 0
		for _, list := range per {
			short = short || len(list) < rs.last
		}
		reachesBack := !info.State.FirstTime.After(start)
		if !short || !reachesBack || try == widenings {
			var out []*record
			for _, list := range per {
				out = append(out, list...)
			}
			slices.SortFunc(out, func(a, b *record) int { return cmp.Compare(a.seq, b.seq) })
			note := ""
			if short && !reachesBack && info.State.FirstSeq > 1 {
				note = fmt.Sprintf("older results AGED OUT of %s (it now starts at %s)", name, info.State.FirstTime.Local().Format(timeLayout))
			}
			if len(out) == 0 && note == "" {
				note = fmt.Sprintf("none of target %s in %s up to #%d", t.Target, name, t.ResultSeq)
			}
			return out, note, nil
		}
		window *= 2
	}
}

// read returns the results on pattern stored from start up to seq, the
// last rs.last of each observer.
func (rs *resultReader) read(ctx context.Context, pattern string, start time.Time, seq uint64) (map[string][]*record, error) {
	name := rs.sp.StreamResults()
	cons, err := rs.js.OrderedConsumer(ctx, name, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{pattern},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		OptStartTime:   &start,
	})
	if err != nil {
		return nil, fmt.Errorf("%s: replay %s: %w", name, pattern, err)
	}
	per := map[string][]*record{}
	err = replay(ctx, cons, func(m jetstream.Msg, md *jetstream.MsgMetadata) (bool, error) {
		if md.Sequence.Stream > seq {
			return true, nil
		}
		// A malformed result is skipped: the others still show what was seen.
		var p event.ProbeResult
		if event.Unmarshal(m.Data(), &p) == nil {
			r := &record{subject: m.Subject(), seq: md.Sequence.Stream, time: md.Timestamp, data: m.Data(), msg: &p}
			per[p.Observer] = append(per[p.Observer], r)
			if len(per[p.Observer]) > rs.last {
				per[p.Observer] = per[p.Observer][1:]
			}
		}
		return md.Sequence.Stream == seq, nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: replay %s: %w", name, pattern, err)
	}
	return per, nil
}
