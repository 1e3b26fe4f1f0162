package block

import (
	"os"
	"testing"
)

// TestMain lets the test binary double as the helper process of the
// cross-process lock tests (see lockHelper).
func TestMain(m *testing.M) {
	if spec := os.Getenv(lockHelperEnv); spec != "" {
		os.Exit(lockHelper(spec))
	}
	os.Exit(m.Run())
}
