package subject_test

import (
	"strconv"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/healthmesh/healthmesh/shared/subject"
)

// TestPartitionMatchesServer checks the claim in Partition's doc: the
// prober's partition is the one nats-server's partition() mapping would
// compute, so a server-side mapping or stream transform agrees with it.
func TestPartitionMatchesServer(t *testing.T) {
	tests := []struct {
		name string
		tok  string
	}{
		{"ipv4_http", "10_0_0_1-TCP-80-http-0123abcd"},
		{"ipv4_tcp", "192_168_88_1-TCP-80-tcp-00000000"},
		{"ipv6_udp", "2001-db8--1-UDP-53-udp-deadbeef"},
		{"ipv6_unspecified", "---TCP-0-none-00000000"},
	}
	for _, n := range []int{8, subject.Partitions, 256} {
		tr, err := server.NewSubjectTransform("x.*", "p.{{partition("+strconv.Itoa(n)+",1)}}")
		if err != nil {
			t.Fatalf("partition(%d) transform: %v", n, err)
		}
		for _, tt := range tests {
			t.Run(tt.name+"_"+strconv.Itoa(n), func(t *testing.T) {
				got, err := tr.Match("x." + tt.tok)
				if err != nil {
					t.Fatalf("server transform of %q: %v", tt.tok, err)
				}
				want := "p." + strconv.Itoa(subject.Partition(tt.tok, n))
				if got != want {
					t.Errorf("server maps %q to %q, Partition gives %q", tt.tok, got, want)
				}
			})
		}
	}
}
