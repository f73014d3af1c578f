package main

import (
	"slices"
	"testing"

	"github.com/healthmesh/healthmesh/shared/subject"
)

func TestSelectorSubjects(t *testing.T) {
	tests := []struct {
		name    string
		kinds   []string
		objects []string
		all     bool
		want    []string
	}{
		{"everything", nil, nil, false, []string{"hm.event.>"}},
		{"everything_all", nil, nil, true, []string{"hm.event.>", "hm.action.>", "hm.audit.>"}},
		{"kinds", []string{"vs", "va"}, nil, false, []string{"hm.event.vs.>", "hm.event.va.>"}},
		{"va_address", []string{"va"}, []string{"2001:db8::1"}, false, []string{"hm.event.va.2001-db8--1"}},
		{"vs_endpoint", []string{"vs"}, []string{vs80, vs443}, false, []string{"hm.event.vs.192_0_2_1-TCP-80", "hm.event.vs.192_0_2_2-TCP-443"}},
		{"pair", nil, []string{vs80 + "/" + be1}, false, []string{"hm.event.backend.192_0_2_1-TCP-80.198_51_100_1-TCP-8080"}},
		{"overlap_collapses", nil, []string{vs80 + "/" + be1, vs443}, false, []string{"hm.event.>"}},
		{"overlap_collapses_to_kinds", []string{"backend"}, []string{vs80 + "/" + be1, vs443}, false, []string{"hm.event.backend.>"}},
		{"raw_subjects", nil, []string{"hm.event.va.>", "hm.result.*.x.*"}, false, []string{"hm.event.va.>", "hm.result.*.x.*"}},
		{"raw_overlap", nil, []string{"hm.event.va.>", "hm.event.*.x"}, false, []string{"hm.event.>", "hm.action.>", "hm.audit.>"}},
		{"raw_and_object", nil, []string{"hm.event.va.>", vs80}, true, []string{"hm.event.>", "hm.action.>", "hm.audit.>"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := newSelector(subject.Space{}, tc.kinds, tc.objects, tc.all)
			if err != nil {
				t.Fatal(err)
			}
			got := s.subjects()
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			for i := range got {
				for j := i + 1; j < len(got); j++ {
					if overlap(got[i], got[j]) {
						t.Fatalf("%q and %q overlap", got[i], got[j])
					}
				}
			}
		})
	}
}

func TestSubjectPatterns(t *testing.T) {
	tests := []struct {
		a, b    string
		overlap bool
		match   bool // b matches pattern a (b is a literal subject)
	}{
		{"hm.event.>", "hm.event.va.x", true, true},
		{"hm.event.>", "hm.event", false, false},
		{"hm.event.*.x", "hm.event.va.x", true, true},
		{"hm.event.*.x", "hm.event.va.y", false, false},
		{"hm.event.va.x", "hm.event.va.x", true, true},
		{"hm.event.va", "hm.event.va.x", false, false},
		{"hm.*", "hm.event.x", false, false},
	}
	for _, tc := range tests {
		t.Run(tc.a+"_"+tc.b, func(t *testing.T) {
			if got := overlap(tc.a, tc.b); got != tc.overlap {
				t.Errorf("overlap = %v, want %v", got, tc.overlap)
			}
			if got := overlap(tc.b, tc.a); got != tc.overlap {
				t.Errorf("overlap reversed = %v, want %v", got, tc.overlap)
			}
			if got := subjectMatch(tc.a, tc.b); got != tc.match {
				t.Errorf("match = %v, want %v", got, tc.match)
			}
		})
	}
}
