package delivery

import (
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/healthmesh/healthmesh/shared/subject"
)

func TestConsumerConfig(t *testing.T) {
	sp, err := subject.NewSpace("lbx")
	if err != nil {
		t.Fatal(err)
	}
	c := ConsumerConfig(sp, "lb1.dc-a", 7*time.Second)
	if c.Durable != "act-lb1_2edc-a" {
		t.Errorf("durable %q", c.Durable)
	}
	if !slices.Equal(c.FilterSubjects, []string{"lbx.event.backend.>", "lbx.event.va.>"}) {
		t.Errorf("filters %q: want backend and va transitions only", c.FilterSubjects)
	}
	if c.AckPolicy != jetstream.AckExplicitPolicy || c.AckWait != 7*time.Second || c.MaxDeliver != -1 || c.MaxAckPending != -1 {
		t.Errorf("config %+v", c)
	}
	if len(c.BackOff) != 0 {
		t.Errorf("BackOff %v: it would stretch every NakWithDelay", c.BackOff)
	}
	if c.DeliverPolicy != jetstream.DeliverNewPolicy {
		t.Errorf("deliver policy %v, want new (the past comes from hm_state)", c.DeliverPolicy)
	}
}

func TestNewerVersion(t *testing.T) {
	tests := []struct {
		name, a, b, want string
	}{
		{name: "empty_first", a: "", b: "1700000000001", want: "1700000000001"},
		{name: "empty_second", a: "1700000000001", b: "", want: "1700000000001"},
		{name: "numeric_not_lexical", a: "999", b: "1000", want: "1000"},
		{name: "older_second", a: "1700000000002", b: "1700000000001", want: "1700000000002"},
		{name: "not_numbers", a: "abc", b: "abd", want: "abd"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := newerVersion(tc.a, tc.b); got != tc.want {
				t.Errorf("newerVersion(%q, %q) = %q, want %q", tc.a, tc.b, got, tc.want)
			}
		})
	}
}

func TestRetryDelay(t *testing.T) {
	d := &deliverer{cfg: Config{}}
	d.cfg.defaults()
	tests := []struct {
		name      string
		delivered int
		want      time.Duration
	}{
		{name: "first_failure", delivered: 1, want: time.Second},
		{name: "second_failure", delivered: 2, want: 2 * time.Second},
		{name: "fifth_failure", delivered: 5, want: 30 * time.Second},
		{name: "last_value_repeats", delivered: 500, want: 30 * time.Second},
		{name: "unknown_count", delivered: 0, want: time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := d.retryDelay(tc.delivered); got != tc.want {
				t.Errorf("retryDelay(%d) = %v, want %v", tc.delivered, got, tc.want)
			}
		})
	}
}
