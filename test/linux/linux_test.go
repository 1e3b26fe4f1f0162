// Package linux_test runs the nested Linux harness (run-l1.sh: Debian's
// kernel on vmmd on kvm-amd inside a QEMU TCG VM) and turns the scenario
// lines L1 prints into Go test results, one subtest per scenario.
package linux_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmmd/vmmd/internal/nested"
)

// enableEnv must be 1 for the harness to run: it takes minutes and needs
// build-l1.sh's output (make test-linux sets both up).
const enableEnv = "VMMD_TEST_LINUX"

// defaultSuite is what the default scenario groups must all pass; qemu-ref
// is informational and may be skipped.
var defaultSuite = []string{"smp1", "disk-write", "smp2", "reboot", "qmp", "pvh", "migrate", "migrate-back"}

func TestNestedLinux(t *testing.T) {
	if os.Getenv(enableEnv) != "1" {
		t.Skipf("the nested Linux harness takes minutes; run it with make test-linux (%s=1)", enableEnv)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Minute)
	defer cancel()
	log, err := filepath.Abs("../../build/linux/l1.log")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(log); err != nil && !os.IsNotExist(err) {
		t.Fatalf("remove the last run's log: %v", err)
	}
	cmd := exec.CommandContext(ctx, "./run-l1.sh")
	cmd.Env = append(os.Environ(), "LOG="+log)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	runErr := cmd.Run()

	f, err := os.Open(log)
	if err != nil {
		t.Fatalf("run-l1.sh (%v) left no log: %v", runErr, err)
	}
	defer f.Close()
	rep, err := nested.Parse(f)
	if err != nil {
		t.Fatalf("run-l1.sh (%v): %v", runErr, err)
	}
	for _, s := range rep.Scenarios {
		t.Run(s.Name, func(t *testing.T) {
			switch s.Status {
			case nested.Fail:
				t.Errorf("failed: %s", s.Detail)
			case nested.Skip:
				t.Skipf("skipped: %s", s.Detail)
			default:
				t.Logf("passed: %s", s.Detail)
			}
		})
	}
	if r := rep.Metrics["vmmd_over_qemu"]; r != "" {
		t.Logf("L2 boot time, vmmd over QEMU in the same L1: %s (vmmd %ss, QEMU %ss)", r, rep.Metrics["vmmd_l2_boot_s"], rep.Metrics["qemu_l2_boot_s"])
	}
	// A run with its own scenario groups (EXTRA=l2groups=...) only has to
	// pass what it ran.
	want := defaultSuite
	if strings.Contains(os.Getenv("EXTRA"), "l2groups=") {
		want = nil
	}
	if err := rep.Check(want); err != nil {
		t.Error(err)
	}
	if runErr != nil && !t.Failed() {
		t.Errorf("run-l1.sh failed (%v) though every scenario passed", runErr)
	}
}
