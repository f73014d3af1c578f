package event

import (
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Identity names the actioner s asks for: its name and parameters. Two
// specs with the same identity drive the same actioner instance.
func (s ActionSpec) Identity() string {
	var b strings.Builder
	b.WriteString(s.Actioner)
	for _, k := range slices.Sorted(maps.Keys(s.Params)) {
		b.WriteString("\x00")
		b.WriteString(k)
		b.WriteString("=")
		b.WriteString(s.Params[k])
	}
	return b.String()
}

// Key is a stable identity of the whole spec (name, parameters, timeout,
// sync time): equal keys mean equal specs.
func (s ActionSpec) Key() string {
	return s.Identity() + "\x00" + strconv.FormatInt(s.Timeout, 10) + "\x00" + strconv.FormatInt(s.SyncTime, 10)
}
