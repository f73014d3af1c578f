package action

import (
	"testing"

	"go.uber.org/goleak"
)

// Script runs start goroutines (output reader, deadline watcher) that must
// be gone when Apply returns.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
