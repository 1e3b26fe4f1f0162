package kvmtest

import (
	"fmt"
	"strings"
	"testing"
)

// recorder stands in for testing.TB and records Skip/Fatal instead of
// stopping the goroutine.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper()           {}
func (r *recorder) Skip(args ...any)  { r.skipped = strings.TrimSpace(sprint(args)) }
func (r *recorder) Fatal(args ...any) { r.failed = strings.TrimSpace(sprint(args)) }
func sprint(args []any) string        { return fmt.Sprint(args...) }

func TestRequireMissing(t *testing.T) {
	r := &recorder{TB: t}
	require(r, "/nonexistent/kvm", false)
	if r.failed != "" || !strings.Contains(r.skipped, "/nonexistent/kvm") || !strings.Contains(r.skipped, RequireEnv) {
		t.Errorf("missing device without %s: skipped %q failed %q", RequireEnv, r.skipped, r.failed)
	}
	r = &recorder{TB: t}
	require(r, "/nonexistent/kvm", true)
	if r.skipped != "" || !strings.Contains(r.failed, "no such file") {
		t.Errorf("missing device with %s=1: skipped %q failed %q", RequireEnv, r.skipped, r.failed)
	}
}

func TestRequirePresent(t *testing.T) {
	r := &recorder{TB: t}
	require(r, "/dev/null", true)
	if r.skipped != "" || r.failed != "" {
		t.Errorf("openable device: skipped %q failed %q", r.skipped, r.failed)
	}
}
