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

// TestLockHelperEnvIsPrivate guards the re-exec trick: the variable that
// turns the test binary into a lock helper must not leak into the real
// test run, or every test would silently become a helper.
func TestLockHelperEnvIsPrivate(t *testing.T) {
	if os.Getenv(lockHelperEnv) != "" {
		t.Fatalf("%s is set in the test run itself", lockHelperEnv)
	}
}
