package event

import "testing"

func TestActionSpec_Key_and_Identity(t *testing.T) {
	a := ActionSpec{Actioner: "Script", Params: map[string]string{"up": "/bin/up", "down": "/bin/down"}, Timeout: 1, SyncTime: 2}
	b := ActionSpec{Actioner: "Script", Params: map[string]string{"down": "/bin/down", "up": "/bin/up"}, Timeout: 1, SyncTime: 2}
	if a.Key() != b.Key() || a.Identity() != b.Identity() {
		t.Errorf("equal specs, different keys: %q %q", a.Key(), b.Key())
	}
	for name, c := range map[string]ActionSpec{
		"actioner": {Actioner: "Other", Params: a.Params, Timeout: 1, SyncTime: 2},
		"param":    {Actioner: "Script", Params: map[string]string{"up": "/bin/up", "down": "/bin/x"}, Timeout: 1, SyncTime: 2},
		"split":    {Actioner: "Script", Params: map[string]string{"up": "/bin/up\x00down=/bin/down"}, Timeout: 1, SyncTime: 2},
		"timeout":  {Actioner: "Script", Params: a.Params, Timeout: 3, SyncTime: 2},
		"sync":     {Actioner: "Script", Params: a.Params, Timeout: 1, SyncTime: 3},
	} {
		if c.Key() == a.Key() {
			t.Errorf("%s differs but the key is the same: %q", name, c.Key())
		}
	}
	if c := (ActionSpec{Actioner: "Script", Params: a.Params, Timeout: 9}); c.Identity() != a.Identity() {
		t.Errorf("identity depends on the timeout: %q vs %q", c.Identity(), a.Identity())
	}
}
