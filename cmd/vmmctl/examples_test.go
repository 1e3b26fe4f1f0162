package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmmd/vmmd/internal/kvmtest"
	"github.com/vmmd/vmmd/internal/nbdkittest"
	"github.com/vmmd/vmmd/internal/testguest"
)

// TestExamples runs the orchestration scripts in examples/ end to end with
// freshly built binaries; each must exit 0 and print its OK line.
func TestExamples(t *testing.T) {
	kvmtest.Require(t)
	kernel := testguest.Path(t, "vmmd-testguest.elf")
	nbdkittest.Require(t)
	if _, err := exec.LookPath("jq"); err != nil {
		msg := "jq not installed (Debian package jq): examples not run"
		if os.Getenv(kvmtest.RequireEnv) == "1" {
			t.Fatal(msg + " (and " + kvmtest.RequireEnv + "=1)")
		}
		t.Skip(msg)
	}
	bin := t.TempDir()
	env := append(os.Environ(),
		"VMMD="+buildBinary(t, bin, "vmmd", "./cmd/vmmd"),
		"VMMCTL="+buildBinary(t, bin, "vmmctl", "./cmd/vmmctl"),
		"KERNEL="+kernel)
	scripts, err := filepath.Glob(filepath.Join(testguest.RepoRoot(), "examples", "*.sh"))
	if err != nil || len(scripts) < 3 {
		t.Fatalf("examples/*.sh: %v %v, want at least 3 scripts", scripts, err)
	}
	for _, script := range scripts {
		name := filepath.Base(script)
		t.Run(strings.TrimSuffix(name, ".sh"), func(t *testing.T) {
			ctx, cancel := testguest.Deadline(t, 3*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, script)
			cmd.Env = env
			// Short: unix socket paths are limited to 107 bytes.
			cmd.Env = append(cmd.Env, "TMPDIR="+shortDir(t))
			// The script and everything it starts share a process group:
			// a timeout sends SIGTERM to all of them (the script's trap
			// then cleans up), and nothing outlives the test.
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
			cmd.WaitDelay = 10 * time.Second
			var out bytes.Buffer
			cmd.Stdout = &out
			cmd.Stderr = &out
			err := cmd.Run()
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			if err != nil || !strings.Contains(out.String(), name+": OK") {
				t.Fatalf("%s: %v (%v)\n%s", name, err, context.Cause(ctx), out.String())
			}
		})
	}
}
