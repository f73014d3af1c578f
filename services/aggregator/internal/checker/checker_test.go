package checker

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/healthmesh/healthmesh/shared/event"
)

const (
	up      = event.Up
	down    = event.Down
	unknown = event.Unknown
)

var t0 = time.Date(2025, 6, 23, 12, 0, 0, 0, time.UTC)

// at is t0 plus n seconds.
func at(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }

func params(upRetry, downRetry int) Params {
	return Params{UpRetry: upRetry, DownRetry: downRetry, Interval: 3 * time.Second}
}

// step is one input to a Target and what must follow from it.
type step struct {
	obs    string       // observer of a result (default "p1")
	st     event.State  // result state; "" for an Expire or SetParams step
	reason event.Reason // result reason (default L4OK / L4CON)
	sec    int          // result time or `now`, seconds after t0
	seq    uint64       // result Seq (default: running counter)
	expire bool         // call Expire(at(sec))
	params *Params      // call SetParams(*params, at(sec))

	change     bool         // a Change is expected
	want       event.State  // verdict after the step
	wantReason event.Reason // reason of the Change, when change
}

func r(obs string, st event.State, sec int) step { return step{obs: obs, st: st, sec: sec} }

func (s step) then(want event.State) step          { s.want = want; return s }
func (s step) changes(want event.State) step       { s.want, s.change = want, true; return s }
func (s step) because(reason event.Reason) step    { s.wantReason = reason; return s }
func (s step) withReason(reason event.Reason) step { s.reason = reason; return s }
func (s step) withSeq(seq uint64) step             { s.seq = seq; return s }
func expireAt(sec int) step                        { return step{expire: true, sec: sec} }
func setParamsAt(sec int, p Params) step           { return step{params: &p, sec: sec} }

// run feeds steps into tg and checks each outcome.
func run(t *testing.T, tg *Target, steps []step) {
	t.Helper()
	seq := map[string]uint64{}
	for i, s := range steps {
		var ch Change
		var ok bool
		switch {
		case s.expire:
			ch, ok = tg.Expire(at(s.sec))
		case s.params != nil:
			var err error
			ch, ok, err = tg.SetParams(*s.params, at(s.sec))
			if err != nil {
				t.Fatalf("step %d: SetParams: %v", i, err)
			}
		default:
			obs := s.obs
			if obs == "" {
				obs = "p1"
			}
			seq[obs]++
			n := seq[obs]
			if s.seq != 0 {
				n = s.seq
			}
			reason := s.reason
			if reason == "" {
				reason = map[event.State]event.Reason{up: event.ReasonL4OK, down: event.ReasonL4CON, unknown: event.ReasonPROCERR}[s.st]
			}
			ch, ok = tg.Observe(Result{Observer: obs, State: s.st, Reason: reason, Detail: string(reason), TS: at(s.sec), Seq: n})
		}
		if ok != s.change {
			t.Fatalf("step %d (%+v): change=%v (%+v), want change=%v", i, s, ok, ch, s.change)
		}
		if ok {
			if ch.To != s.want || ch.To != tg.Verdict() {
				t.Fatalf("step %d: change to %q (verdict %q), want %q", i, ch.To, tg.Verdict(), s.want)
			}
			if s.wantReason != "" && ch.Reason != s.wantReason {
				t.Fatalf("step %d: change reason %q, want %q", i, ch.Reason, s.wantReason)
			}
			if !ch.At.Equal(tg.Since()) {
				t.Fatalf("step %d: change at %v, Since %v", i, ch.At, tg.Since())
			}
		}
		if s.want != "" && tg.Verdict() != s.want {
			t.Fatalf("step %d: verdict %q, want %q", i, tg.Verdict(), s.want)
		}
	}
}

func mustNew(t testing.TB, p Params) *Target {
	t.Helper()
	tg, err := New("10_0_0_1-TCP-80-tcp-00000000", p)
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

func TestDPVSStateMachine(t *testing.T) {
	tests := []struct {
		name  string
		p     Params
		steps []step
	}{
		{"default_retry_needs_two_results", params(1, 1), []step{
			r("", up, 3).then(unknown), r("", up, 6).changes(up).because(event.ReasonL4OK),
			r("", up, 9).then(up), r("", down, 12).then(up), r("", down, 15).changes(down).because(event.ReasonL4CON),
		}},
		{"dpvs_999999_passed_as_zero_first_result_decides", params(0, 0), []step{
			r("", down, 3).changes(down), r("", up, 6).changes(up), r("", down, 9).changes(down),
		}},
		{"retry_three_needs_four", params(3, 3), []step{
			r("", down, 3), r("", down, 6), r("", down, 9).then(unknown), r("", down, 12).changes(down),
			r("", up, 15), r("", up, 18), r("", up, 21).then(down), r("", up, 24).changes(up),
		}},
		{"asymmetric_retries", params(2, 0), []step{
			r("", up, 3), r("", up, 6).then(unknown), r("", up, 9).changes(up), r("", down, 12).changes(down),
		}},
		{"alternating_never_changes", params(1, 1), []step{
			r("", up, 3), r("", down, 6), r("", up, 9), r("", down, 12), r("", up, 15), r("", down, 18).then(unknown),
		}},
		{"alternating_after_up_keeps_up", params(1, 1), []step{
			r("", up, 3), r("", up, 6).changes(up), r("", down, 9), r("", up, 12), r("", down, 15), r("", up, 18).then(up),
		}},
		{"unknown_results_neither_change_nor_break_streak", params(1, 1), []step{
			r("", up, 3), r("", unknown, 6), r("", unknown, 9).then(unknown), r("", up, 12).changes(up),
			r("", down, 15), r("", unknown, 18), r("", down, 21).changes(down),
		}},
		{"only_unknown_results_stay_unknown", params(0, 0), []step{
			r("", unknown, 3), r("", unknown, 6), r("", unknown, 9).then(unknown),
		}},
		{"initial_state_up", Params{UpRetry: 1, DownRetry: 1, Interval: 3 * time.Second, InitialState: up}, []step{
			r("", up, 3).then(up), r("", up, 6).then(up), r("", down, 9).then(up), r("", down, 12).changes(down),
		}},
		{"initial_state_down", Params{UpRetry: 1, DownRetry: 1, Interval: 3 * time.Second, InitialState: down}, []step{
			r("", down, 3).then(down), r("", up, 6).then(down), r("", up, 9).changes(up),
		}},
		{"redelivered_result_is_ignored", params(1, 1), []step{
			r("", down, 3).withSeq(7), r("", down, 3).withSeq(7).then(unknown), r("", down, 2).withSeq(6).then(unknown),
			r("", down, 6).withSeq(8).changes(down),
		}},
		{"restarted_prober_with_lower_seq_is_accepted", params(1, 1), []step{
			r("", down, 3).withSeq(100), r("", down, 6).withSeq(1).changes(down),
		}},
		{"retry_lowered_and_streak_satisfies_it_changes_now", params(3, 3), []step{
			r("", down, 3), r("", down, 6).then(unknown),
			setParamsAt(7, params(3, 1)).changes(down).because(event.ReasonL4CON),
			r("", down, 9).then(down),
		}},
		{"retry_lowered_but_streak_short_waits", params(3, 3), []step{
			r("", down, 3), setParamsAt(4, params(3, 1)).then(unknown), r("", down, 6).changes(down),
		}},
		{"retry_lowered_to_zero_up", params(5, 5), []step{
			r("", up, 3).then(unknown), setParamsAt(4, params(0, 5)).changes(up),
		}},
		{"retry_raised_keeps_state", params(1, 1), []step{
			r("", up, 3), r("", up, 6).changes(up), setParamsAt(7, params(5, 5)).then(up),
			r("", down, 9), r("", down, 12), r("", down, 15).then(up),
		}},
		{"retry_change_does_not_resend_unchanged_state", params(1, 1), []step{
			r("", up, 3), r("", up, 6).changes(up), setParamsAt(7, params(0, 0)).then(up),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run(t, mustNew(t, tt.p), tt.steps)
		})
	}
}

func TestQuorum(t *testing.T) {
	full := func(quorum int) Params {
		return Params{UpRetry: 0, DownRetry: 0, Interval: 3 * time.Second, Quorum: quorum, Observers: 3}
	}
	tests := []struct {
		name  string
		p     Params
		steps []step
	}{
		{"split_two_one_majority_down", full(0), []step{
			r("a", down, 3).changes(down), r("b", up, 3).then(down), r("c", down, 3).then(down),
		}},
		{"split_two_one_majority_up", full(0), []step{
			r("a", up, 3).changes(up), r("b", down, 3).then(up), r("c", up, 3).then(up),
			r("b", down, 6).then(up), r("a", up, 6).then(up), r("c", up, 6).then(up),
		}},
		{"one_bad_observer_is_out_voted", full(0), []step{
			r("a", up, 3).changes(up), r("b", up, 3), r("c", up, 3).then(up),
			r("c", down, 6).withReason(event.ReasonL4TOUT), r("a", up, 6), r("b", up, 6),
			r("c", down, 9), r("a", up, 9), r("b", up, 9).then(up),
		}},
		{"majority_turns_down", full(0), []step{
			r("a", up, 3).changes(up), r("b", up, 3), r("c", up, 3).then(up),
			r("a", down, 6).then(up), r("b", down, 6).changes(down).because(event.ReasonL4CON),
		}},
		{"contested_tie_holds_previous", full(0), []step{
			r("a", up, 3).changes(up), r("b", down, 3).then(up), r("b", down, 6).then(up), r("a", up, 6).then(up),
		}},
		{"first_observer_decides_then_tie_holds", full(0), []step{
			r("a", down, 3).changes(down), r("b", up, 3).then(down),
		}},
		{"explicit_quorum_two_needs_two", full(2), []step{
			r("a", down, 3).then(unknown), r("b", up, 3).then(unknown), r("b", up, 4).then(unknown),
			r("c", up, 4).changes(up), r("a", down, 6).then(up), r("c", down, 6).changes(down), r("b", down, 6).then(down),
		}},
		{"explicit_quorum_one_conflict_holds", full(1), []step{
			r("a", up, 3).changes(up), r("b", down, 3).then(up),
		}},
		{"stale_observers_do_not_vote", full(0), []step{
			r("a", up, 3).changes(up), r("b", up, 3), r("c", down, 3).then(up),
			// a and b go silent; at 13 s they are more than 9 s old: only c votes.
			r("c", down, 6).then(up), r("c", down, 9).then(up), r("c", down, 13).changes(down),
		}},
		{"stale_observers_never_count_as_down", full(0), []step{
			r("a", down, 3).changes(down), r("b", down, 3), r("c", up, 3).then(down),
			r("c", up, 13).changes(up),
		}},
		{"all_stale_is_unknown_with_reason_stale", full(0), []step{
			r("a", up, 3).changes(up), r("b", up, 4),
			expireAt(12).then(up), expireAt(13).then(up), expireAt(14).changes(unknown).because(event.ReasonStale),
			r("a", up, 15).changes(up),
		}},
		{"single_observer_stale_then_back", params(1, 1), []step{
			r("", down, 3), r("", down, 6).changes(down), expireAt(15).then(down),
			expireAt(16).changes(unknown).because(event.ReasonStale), r("", down, 18).changes(down),
		}},
		{"unknown_results_keep_an_observer_live", params(1, 1), []step{
			r("", up, 3), r("", up, 6).changes(up), r("", unknown, 12), expireAt(20).then(up),
			expireAt(22).changes(unknown),
		}},
		{"delayed_result_does_not_rewind_the_clock", full(0), []step{
			r("a", up, 3).changes(up), r("b", down, 20).changes(down), r("c", up, 4).then(down),
		}},
		{"quorum_change_rejudges", full(3), []step{
			r("a", down, 3), r("b", down, 3), r("c", up, 3).then(unknown),
			setParamsAt(4, full(0)).changes(down),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run(t, mustNew(t, tt.p), tt.steps)
		})
	}
}

func TestVotesAndQuorumRecord(t *testing.T) {
	tg := mustNew(t, Params{Interval: 3 * time.Second, Observers: event.ObserversAll})
	runIgnoringChanges(t, tg, []step{r("b", up, 1), r("a", down, 3).withReason(event.ReasonL7STS), r("c", up, 10), r("c", up, 11)})
	now := at(11)
	votes := tg.Votes(now)
	want := []event.Vote{
		{Observer: "a", State: down, Last: down, Count: 1, TS: at(3).UnixNano(), Reason: event.ReasonL7STS},
		{Observer: "b", State: up, Last: up, Count: 1, TS: at(1).UnixNano(), Reason: event.ReasonL4OK, Stale: true},
		{Observer: "c", State: up, Last: up, Count: 2, TS: at(11).UnixNano(), Reason: event.ReasonL4OK},
	}
	if len(votes) != len(want) {
		t.Fatalf("votes %+v, want %+v", votes, want)
	}
	for i := range want {
		if votes[i] != want[i] {
			t.Errorf("vote %d = %+v, want %+v", i, votes[i], want[i])
		}
	}
	q := tg.Quorum(now)
	if wantQ := (event.Quorum{Need: 2, Observers: event.ObserversAll, Live: 2, Up: 1, Down: 1}); q != wantQ {
		t.Errorf("quorum %+v, want %+v", q, wantQ)
	}
}

// A prober killed mid-run leaves its targets silent until its membership
// expires and a new owner probes them; MinStale covers that, so a reshard
// never turns a target Unknown. Interval 3 s, 3 intervals (9 s) by default,
// here at least 12 s.
func TestMinStaleCoversAReshard(t *testing.T) {
	p := params(0, 0)
	p.MinStale = 12 * time.Second
	if got := p.StaleWindow(); got != 12*time.Second {
		t.Fatalf("StaleWindow %v, want 12s", got)
	}
	run(t, mustNew(t, p), []step{
		r("dead", up, 0).changes(up),
		expireAt(10).then(up), // past 3 intervals: still voting
		r("new", up, 11).then(up),
	})
	run(t, mustNew(t, p), []step{
		r("dead", up, 0).changes(up),
		expireAt(13).changes(unknown).because(event.ReasonStale), // past MinStale: stale
	})
	p.MinStale = time.Second // shorter than the intervals: no effect
	if got := p.StaleWindow(); got != 9*time.Second {
		t.Fatalf("StaleWindow %v, want 9s", got)
	}
	p.MinStale = -time.Second
	if err := p.Validate(); !errors.Is(err, ErrParams) {
		t.Fatalf("Validate with a negative MinStale: %v", err)
	}
}

func TestForgetSilentObservers(t *testing.T) {
	tg := mustNew(t, params(0, 0))
	run(t, tg, []step{r("old", up, 0).changes(up), r("new", up, 10)})
	tests := []struct {
		name string
		sec  int
		want []string
	}{
		{"stale_but_remembered", 18, []string{"new", "old"}},
		{"forgotten_after_two_stale_windows", 19, []string{"new"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg.Expire(at(tt.sec))
			var got []string
			for _, v := range tg.Votes(at(tt.sec)) {
				got = append(got, v.Observer)
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("observers %v, want %v", got, tt.want)
			}
		})
	}
	if tg.Verdict() != up {
		t.Errorf("verdict %q after forgetting a silent observer, want up", tg.Verdict())
	}
}

func TestStats(t *testing.T) {
	tests := []struct {
		name  string
		p     Params
		steps []step
		want  Stats
	}{
		{"dpvs_counters", params(1, 1), []step{
			r("", up, 1), r("", up, 2), r("", up, 3), r("", down, 4), r("", down, 5),
			r("", unknown, 6).withReason(event.ReasonPROCERR), r("", unknown, 7).withReason(event.ReasonL4TOUT),
		}, Stats{Up: 3, Down: 2, UpNoticed: 1, DownNoticed: 1, UpFailed: 1, DownFailed: 1}},
		{"notice_counted_once_per_streak_even_without_change", params(1, 1), []step{
			r("", up, 1), r("", up, 2), r("", down, 3), r("", up, 4), r("", up, 5),
		}, Stats{Up: 4, Down: 1, UpNoticed: 2}},
		{"retry_change_notice", params(3, 3), []step{
			r("", down, 1), r("", down, 2), setParamsAt(3, params(3, 1)),
		}, Stats{Down: 2, DownNoticed: 1}},
		{"summed_over_observers", params(0, 0), []step{r("a", up, 1), r("b", down, 1)},
			Stats{Up: 1, Down: 1, UpNoticed: 1, DownNoticed: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := mustNew(t, tt.p)
			runIgnoringChanges(t, tg, tt.steps)
			if got := tg.Stats(); got != tt.want {
				t.Errorf("stats %+v, want %+v", got, tt.want)
			}
		})
	}
	if s := (Stats{1, 2, 3, 4, 5, 6}).String(); s != "1,2,3,4,5,6" {
		t.Errorf("String() = %q", s)
	}
}

// runIgnoringChanges feeds steps without checking their outcome.
func runIgnoringChanges(t *testing.T, tg *Target, steps []step) {
	t.Helper()
	for i, s := range steps {
		switch {
		case s.expire:
			tg.Expire(at(s.sec))
		case s.params != nil:
			if _, _, err := tg.SetParams(*s.params, at(s.sec)); err != nil {
				t.Fatal(err)
			}
		default:
			reason := s.reason
			if reason == "" {
				reason = event.ReasonL4OK
			}
			tg.Observe(Result{Observer: s.obs, State: s.st, Reason: reason, TS: at(s.sec), Seq: uint64(i + 1)})
		}
	}
}

func TestSetParamsInitialState(t *testing.T) {
	tests := []struct {
		name       string
		observe    bool
		wantChange bool
		want       event.State
	}{
		{"no_result_yet_follows_new_initial_state", false, true, up},
		{"with_results_initial_state_only_for_new_observers", true, false, unknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := mustNew(t, params(1, 1))
			if tt.observe {
				tg.Observe(Result{Observer: "p1", State: up, TS: at(1), Seq: 1})
			}
			p := params(1, 1)
			p.InitialState = up
			ch, ok, err := tg.SetParams(p, at(2))
			if err != nil {
				t.Fatal(err)
			}
			if ok != tt.wantChange || tg.Verdict() != tt.want {
				t.Fatalf("change=%v %+v verdict %q; want change=%v verdict %q", ok, ch, tg.Verdict(), tt.wantChange, tt.want)
			}
			if ok && ch.Reason != event.ReasonConfig {
				t.Errorf("reason %q, want CONFIG", ch.Reason)
			}
		})
	}
}

func TestParamsValidate(t *testing.T) {
	good := params(1, 1)
	tests := []struct {
		name   string
		mutate func(*Params)
		want   string // substring of the error; "" = valid
	}{
		{"valid_defaults", func(*Params) {}, ""},
		{"valid_initial_down", func(p *Params) { p.InitialState = down }, ""},
		{"valid_observers_all", func(p *Params) { p.Observers = event.ObserversAll }, ""},
		{"negative_up_retry", func(p *Params) { p.UpRetry = -1 }, "up-retry -1"},
		{"negative_down_retry", func(p *Params) { p.DownRetry = -2 }, "down-retry -2"},
		{"negative_stale_intervals", func(p *Params) { p.StaleIntervals = -1 }, "stale-intervals"},
		{"negative_quorum", func(p *Params) { p.Quorum = -1 }, "quorum -1"},
		{"bad_observers", func(p *Params) { p.Observers = -5 }, "observers -5"},
		{"zero_interval", func(p *Params) { p.Interval = 0 }, "interval 0s"},
		{"bad_initial_state", func(p *Params) { p.InitialState = "healthy" }, `initial-state "healthy"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := good
			tt.mutate(&p)
			err := p.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrParams) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want ErrParams containing %q", err, tt.want)
			}
			if _, err := New("x", p); err == nil || !strings.Contains(err.Error(), "target x") {
				t.Errorf("New accepted invalid params: %v", err)
			}
			tg := mustNew(t, good)
			if _, _, err := tg.SetParams(p, at(1)); !errors.Is(err, ErrParams) {
				t.Errorf("SetParams accepted invalid params: %v", err)
			}
			if tg.Params() != good {
				t.Errorf("SetParams with invalid params changed them to %+v", tg.Params())
			}
		})
	}
}

func TestObserveDoesNotAllocate(t *testing.T) {
	tg := mustNew(t, Params{Interval: time.Second, UpRetry: 1, DownRetry: 1})
	names := []string{"p1", "p2", "p3"}
	seq := uint64(0)
	ts := t0
	allocs := testing.AllocsPerRun(1000, func() {
		seq++
		ts = ts.Add(time.Millisecond)
		st := up
		if seq%7 == 0 {
			st = down
		}
		tg.Observe(Result{Observer: names[seq%3], State: st, Reason: event.ReasonL4OK, TS: ts, Seq: seq})
	})
	if allocs != 0 {
		t.Errorf("Observe allocates %.1f times per result, want 0", allocs)
	}
}

func BenchmarkObserve(b *testing.B) {
	for _, n := range []int{1, 3, 8} {
		b.Run(map[int]string{1: "observers_1", 3: "observers_3", 8: "observers_8"}[n], func(b *testing.B) {
			tg := mustNew(b, Params{Interval: time.Second, UpRetry: 1, DownRetry: 1})
			names := make([]string, n)
			for i := range names {
				names[i] = "prober-" + string(rune('a'+i))
			}
			ts := t0
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				ts = ts.Add(time.Millisecond)
				st := up
				if i%5 == 0 {
					st = down
				}
				tg.Observe(Result{Observer: names[i%n], State: st, Reason: event.ReasonL4OK, TS: ts, Seq: uint64(i + 1)})
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "results/s")
		})
	}
}
