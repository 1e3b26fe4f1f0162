package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// environment holds the resolved paths and facts about the host.
type environment struct {
	root        string
	vmmd        string
	qemu        string
	kernel      string
	qemuVersion string
	hostKernel  string
}

// hostInfo is the host description stored in the JSON results.
type hostInfo struct {
	Kernel      string `json:"kernel"`
	CPUs        int    `json:"cpus"`
	QEMUVersion string `json:"qemu_version"`
	Root        string `json:"repo_root"`
	VMMD        string `json:"vmmd"`
	QEMU        string `json:"qemu"`
	GuestKernel string `json:"guest_kernel"`
}

func (e environment) host() hostInfo {
	return hostInfo{Kernel: e.hostKernel, CPUs: runtime.NumCPU(), QEMUVersion: e.qemuVersion,
		Root: e.root, VMMD: e.vmmd, QEMU: e.qemu, GuestKernel: e.kernel}
}

// preflight resolves every path and checks that both VMMs can run, so that
// a benchmark that could not compare fails before printing anything.
func preflight(ctx context.Context, o options) (environment, error) {
	var env environment
	if o.vmmd == "" || o.kernel == "" {
		cwd, err := os.Getwd()
		if err != nil {
			return env, fmt.Errorf("find repo root: %w", err)
		}
		root, err := findRepoRoot(cwd)
		if err != nil {
			return env, fmt.Errorf("%w (or pass -vmmd and -kernel)", err)
		}
		env.root = root
	}
	env.vmmd = orDefault(o.vmmd, filepath.Join(env.root, "bin", "vmmd"))
	env.kernel = orDefault(o.kernel, filepath.Join(env.root, "build", "guest", "vmmd-testguest.elf"))
	var err error
	if env.vmmd, err = checkFile(env.vmmd, "vmmd binary", true, "run `make build`"); err != nil {
		return env, err
	}
	if env.kernel, err = checkFile(env.kernel, "guest kernel", false, "run `make guest`"); err != nil {
		return env, err
	}
	if err := checkKVM(); err != nil {
		return env, err
	}
	if env.qemu, err = exec.LookPath(o.qemu); err != nil {
		return env, fmt.Errorf("QEMU %q not found (install qemu-system-x86 or pass -qemu): %w; without QEMU there is nothing to compare with", o.qemu, err)
	}
	if env.qemu, err = filepath.Abs(env.qemu); err != nil {
		return env, fmt.Errorf("resolve QEMU path: %w", err)
	}
	if env.qemuVersion, err = qemuVersion(ctx, env.qemu); err != nil {
		return env, err
	}
	if rel, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		env.hostKernel = strings.TrimSpace(string(rel))
	}
	return env, nil
}

func orDefault(v, def string) string {
	if v != "" {
		return v
	}
	return def
}

// findRepoRoot walks up from dir to the first directory holding go.mod.
func findRepoRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("find repo root: %w", err)
	}
	for {
		if st, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil && st.Mode().IsRegular() {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("find repo root: no go.mod in the working directory or above")
		}
		dir = parent
	}
}

// checkFile makes path absolute and checks that it is a regular file (and
// executable, if exe is set); hint says how to produce it.
func checkFile(path, what string, exe bool, hint string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("resolve %s path %q: %w", what, path, err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("%s: %w (%s)", what, err, hint)
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("%s %s is not a regular file", what, abs)
	}
	if exe && st.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("%s %s is not executable", what, abs)
	}
	return abs, nil
}

// checkKVM opens /dev/kvm the way both VMMs will, so a missing module or a
// permission problem shows up here rather than as failed runs.
func checkKVM() error {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open /dev/kvm: %w; both VMMs need KVM, so nothing can be compared", err)
	}
	return f.Close()
}

func qemuVersion(ctx context.Context, qemu string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, qemu, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("run %s --version: %w", qemu, err)
	}
	line, _, _ := bytes.Cut(out, []byte("\n"))
	return strings.TrimSpace(string(line)), nil
}
