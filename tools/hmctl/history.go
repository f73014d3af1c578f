package main

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/healthmesh/healthmesh/shared/event"
)

func (c *cli) history(args []string) error {
	fs, g := c.newFlags("history")
	since := fs.String("since", "1h", "start: a duration back from now (2h, 30m, 7d) or an RFC 3339 time")
	until := fs.String("until", "", "end: a duration back from now or an RFC 3339 time (default: the end of the stream)")
	var objects, kinds stringList
	fs.Var(&objects, "object", "only this object: an address, VIP-PROTO-PORT, VS/BACKEND or a subject (repeatable)")
	fs.Var(&kinds, "kind", "only this kind: backend, vs or va (repeatable)")
	asJSON := fs.Bool("json", false, "print JSON lines: the message as JSON with its subject, sequence and time")
	withResults := fs.Bool("results", false, "print the raw probe results behind each backend transition")
	perObserver := fs.Int("results-last", 5, "with --results: results per observer, up to the deciding one")
	all := fs.Bool("all", false, "also print action results and audit records")
	sp, err := g.parseNoArgs(fs, args, " (use --object and --kind)")
	if err != nil {
		return err
	}
	now := c.now()
	from, err := parseWhen(*since, now)
	if err != nil {
		return usagef("--since: %v", err)
	}
	var to time.Time
	if *until != "" {
		if to, err = parseWhen(*until, now); err != nil {
			return usagef("--until: %v", err)
		}
		if to.Before(from) {
			return usagef("--until %s is before --since %s", to.Format(time.RFC3339), from.Format(time.RFC3339))
		}
	}
	if *perObserver < 1 {
		return usagef("--results-last must be at least 1")
	}
	sel, err := newSelector(sp, kinds, objects, *all)
	if err != nil {
		return usagef("%v", err)
	}
	nc, js, err := g.jetStream(c.ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx := c.ctx
	if _, err := g.stream(ctx, js, sp.StreamEvents()); err != nil {
		return err
	}
	var rs *resultReader
	if *withResults {
		// HM_EVENTS exists (checked above), so a missing results stream
		// is the core mode, not a missing installation.
		s, err := js.Stream(ctx, sp.StreamResults())
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("--results: no raw results are kept: stream %s does not exist "+
				"(the aggregator runs with bus.results: core)", sp.StreamResults())
		}
		if err != nil {
			return fmt.Errorf("--results: stream %s: %w", sp.StreamResults(), err)
		}
		rs = &resultReader{js: js, stream: s, sp: sp, last: *perObserver}
	}
	cons, err := js.OrderedConsumer(ctx, sp.StreamEvents(), jetstream.OrderedConsumerConfig{
		FilterSubjects: sel.subjects(),
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		OptStartTime:   &from,
	})
	if err != nil {
		return fmt.Errorf("replay %s: %w", sp.StreamEvents(), err)
	}
	err = replay(ctx, cons, func(m jetstream.Msg, md *jetstream.MsgMetadata) (bool, error) {
		if !to.IsZero() && md.Timestamp.After(to) {
			return true, nil
		}
		rec, err := decodeRecord(sp, m.Subject(), m.Headers(), m.Data())
		if err != nil {
			fmt.Fprintf(c.stderr, "hmctl: skipped undecodable message #%d: %v\n", md.Sequence.Stream, err)
			return false, nil
		}
		rec.seq, rec.time = md.Sequence.Stream, md.Timestamp
		if !sel.match(rec) {
			return false, nil
		}
		return false, c.printHistory(ctx, rec, *asJSON, rs)
	})
	if err != nil {
		return fmt.Errorf("replay %s: %w", sp.StreamEvents(), err)
	}
	return nil
}

// printHistory prints one replayed record and, with rs, the raw results
// behind a backend transition.
func (c *cli) printHistory(ctx context.Context, rec *record, asJSON bool, rs *resultReader) error {
	t, ok := rec.msg.(*event.Transition)
	if rs == nil || !ok || t.Kind != event.KindBackend {
		return c.printRecord(rec, asJSON, true)
	}
	results, note, err := rs.behind(ctx, t)
	if err != nil {
		return err
	}
	if asJSON {
		j, err := rec.jsonRecord()
		if err != nil {
			return err
		}
		j.ResultsNote = note
		for _, r := range results {
			b, err := event.ToJSON(r.data)
			if err != nil {
				return err
			}
			j.Results = append(j.Results, jsonResult{Subject: r.subject, Seq: r.seq, Time: r.time.UTC(), Deciding: r.seq == t.ResultSeq, Result: b})
		}
		return writeJSON(c, j)
	}
	if _, err := fmt.Fprintln(c.stdout, rec.text(true)); err != nil {
		return err
	}
	if len(results) > 0 {
		if _, err := fmt.Fprintf(c.stdout, "    results of target %s, the last %d per observer up to #%d:\n", t.Target, rs.last, t.ResultSeq); err != nil {
			return err
		}
	}
	for _, r := range results {
		mark := ""
		if r.seq == t.ResultSeq {
			mark = "  <- deciding result"
		}
		if _, err := fmt.Fprintf(c.stdout, "    result #%-7d %s  %s%s\n", r.seq, r.when().Local().Format(timeLayout),
			resultText(r.msg.(*event.ProbeResult)), mark); err != nil {
			return err
		}
	}
	if note != "" {
		_, err = fmt.Fprintf(c.stdout, "    results: %s\n", note)
	}
	return err
}

var daysRE = regexp.MustCompile(`^(\d+)d(.*)$`)

// parseWhen reads a time: a duration back from now ("2h", "30m", "7d",
// "1d12h") or an RFC 3339 time, or a date (local midnight).
func parseWhen(s string, now time.Time) (time.Time, error) {
	d, err := parseAgo(s)
	if err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("%q: a duration back from now must not be negative", s)
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation(time.DateOnly, s, time.Local); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q: want a duration such as 2h, 30m or 7d, or an RFC 3339 time such as 2026-11-20T10:00:00Z", s)
}

func parseAgo(s string) (time.Duration, error) {
	m := daysRE.FindStringSubmatch(s)
	if m == nil {
		return time.ParseDuration(s)
	}
	days, err := strconv.Atoi(m[1])
	if err != nil || days > 100000 {
		return 0, fmt.Errorf("days %q", m[1])
	}
	var rest time.Duration
	if m[2] != "" {
		if rest, err = time.ParseDuration(m[2]); err != nil {
			return 0, err
		}
	}
	return time.Duration(days)*24*time.Hour + rest, nil
}
