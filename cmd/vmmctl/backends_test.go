package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/vmmd/vmmd/internal/kvmtest"
	"github.com/vmmd/vmmd/internal/testguest"
)

// The migration tests run against QEMU and against vmmd: vmmctl is meant
// to be a QMP CLI for both, and QEMU shows what the commands must do.

// backend starts one VM on the test guest with a QMP socket at
// dir/name.qmp; incoming is "" for a running VM, else the --incoming value.
type backend struct {
	name  string
	start func(t *testing.T, dir, name, incoming string) string
}

func backends() []backend {
	return []backend{{name: "qemu", start: startQEMU}, {name: "vmmd", start: startVmmdVM}}
}

// forEachBackend runs f as a subtest per backend.
func forEachBackend(t *testing.T, f func(t *testing.T, b backend)) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) { f(t, b) })
	}
}

// requireQEMU returns qemu-system-x86_64's path. Without it the test is
// skipped, or fails when VMMD_REQUIRE_KVM=1 (CI must not pass on tests that
// did not run).
func requireQEMU(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		msg := "qemu-system-x86_64 not installed (apt-get install qemu-system-x86): " + err.Error()
		if os.Getenv(kvmtest.RequireEnv) == "1" {
			t.Fatal(msg + " (and " + kvmtest.RequireEnv + "=1)")
		}
		t.Skip(msg)
	}
	return p
}

// shortDir is a temporary directory with a short path: unix socket paths
// are limited to 107 bytes and t.TempDir embeds the test name.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "vmc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// startUntilSocket starts cmd, stops it when the test ends (printing its
// output if the test failed) and waits until it has created sock.
func startUntilSocket(t *testing.T, cmd *exec.Cmd, what, sock string) {
	t.Helper()
	var logs bytes.Buffer
	cmd.Stdout = &logs
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", what, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() && logs.Len() > 0 {
			t.Logf("%s output:\n%s", what, logs.String())
		}
	})
	ctx, cancel := testguest.Deadline(t, 20*time.Second)
	defer cancel()
	for {
		if _, err := os.Stat(sock); err == nil {
			return
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("%s exited before creating %s: %v\n%s", what, sock, err, logs.String())
		case <-ctx.Done():
			t.Fatalf("%s did not create %s: %v", what, sock, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// startQEMU runs QEMU on the test guest (128 MiB microvm). -accel kvm falls
// back to TCG when KVM cannot take another VM.
func startQEMU(t *testing.T, dir, name, incoming string) string {
	t.Helper()
	kvmtest.Require(t)
	qemu := requireQEMU(t)
	kernel := testguest.Path(t, "vmmd-testguest.elf")
	sock := filepath.Join(dir, name+".qmp")
	args := []string{"-accel", "kvm", "-accel", "tcg", "-M", "microvm", "-cpu", "max,-arch-capabilities",
		"-m", "128", "-nodefaults", "-no-user-config", "-display", "none", "-serial", "none",
		"-kernel", kernel, "-qmp", "unix:" + sock + ",server=on,wait=off"}
	if incoming != "" {
		args = append(args, "-incoming", incoming)
	}
	startUntilSocket(t, exec.Command(qemu, args...), "QEMU "+name, sock)
	return sock
}

// startVmmdVM runs a freshly built vmmd on the test guest with 128 MiB.
func startVmmdVM(t *testing.T, dir, name, incoming string) string {
	t.Helper()
	kvmtest.Require(t)
	kernel := testguest.Path(t, "vmmd-testguest.elf")
	vmmd := buildBinary(t, t.TempDir(), "vmmd", "./cmd/vmmd")
	sock := filepath.Join(dir, name+".qmp")
	args := []string{"--kernel", kernel, "--memory", "128M", "--serial", "none", "--name", name, "--qmp", "unix:" + sock}
	if incoming != "" {
		args = append(args, "--incoming", incoming)
	}
	startUntilSocket(t, exec.Command(vmmd, args...), "vmmd "+name, sock)
	return sock
}

// vmPair is a source VM running the test guest and a destination waiting
// for it, each with a QMP socket.
type vmPair struct {
	src, dst string // QMP sockets
	uri      string // migration URI the destination listens on
	dir      string
}

// startPair starts a source and a destination on backend b; the destination
// is started with incoming "defer" when deferred is set, otherwise it
// listens on the pair's URI at once.
func startPair(t *testing.T, b backend, deferred bool) *vmPair {
	t.Helper()
	p := &vmPair{dir: shortDir(t)}
	p.uri = "unix:" + filepath.Join(p.dir, "mig.sock")
	incoming := p.uri
	if deferred {
		incoming = "defer"
	}
	p.src = b.start(t, p.dir, "src", "")
	p.dst = b.start(t, p.dir, "dst", incoming)
	return p
}
