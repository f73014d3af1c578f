package engine

import (
	"hash/maphash"
	"reflect"
	"testing"

	"github.com/healthmesh/healthmesh/shared/event"
)

// Every field of a target definition changes its hash, and a definition
// read back from its bytes hashes as it did before it was written.
func TestTargetHash(t *testing.T) {
	e := &engine{seed: maphash.MakeSeed()}
	base := event.Target{V: event.Version, ID: "127_0_0_1-TCP-80-tcp-00000000", Addr: "127.0.0.1", Port: 80, Proto: "TCP",
		Method: "tcp", Interval: 1e9, Timeout: 5e8, Observers: 1, Rev: 2}
	h0 := e.targetHash(&base, base.V)
	typ := reflect.TypeOf(base)
	for i := range typ.NumField() {
		v := base
		f := reflect.ValueOf(&v).Elem().Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString(f.String() + "x")
		case reflect.Int, reflect.Int64:
			f.SetInt(f.Int() + 1)
		case reflect.Uint16, reflect.Uint64:
			f.SetUint(f.Uint() + 1)
		case reflect.Float64:
			f.SetFloat(f.Float() + 0.25)
		case reflect.Map:
			f.Set(reflect.ValueOf(map[string]string{"send": "x"}))
		case reflect.Slice:
			f.Set(reflect.ValueOf([]string{"vs/backend"}))
		default:
			t.Fatalf("field %s: kind %s not covered by this test", typ.Field(i).Name, f.Kind())
		}
		if e.targetHash(&v, v.V) == h0 {
			t.Errorf("changing %s leaves the hash: targetHash does not cover it", typ.Field(i).Name)
		}
	}

	// ("a","bc") and ("ab","c") are different definitions.
	a, b := base, base
	a.Source, a.Netns = "a", "bc"
	b.Source, b.Netns = "ab", "c"
	if e.targetHash(&a, a.V) == e.targetHash(&b, b.V) {
		t.Error("adjacent strings run together")
	}

	// What loadWrittenTargets reads back hashes like what writeTargets
	// wrote, params in any order, empty lists and maps as nil.
	w := base
	w.Params, w.UsedBy = map[string]string{"b": "2", "a": "1"}, []string{}
	data, err := event.Marshal(&w)
	if err != nil {
		t.Fatal(err)
	}
	var r event.Target
	if err := event.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	if e.targetHash(&r, r.V) != e.targetHash(&w, w.V) {
		t.Errorf("read back %+v hashes differently from written %+v", r, w)
	}
	w.Params = map[string]string{}
	n := base
	if e.targetHash(&w, w.V) != e.targetHash(&n, n.V) {
		t.Error("an empty params map hashes unlike none")
	}
}
