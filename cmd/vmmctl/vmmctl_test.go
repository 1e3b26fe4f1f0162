package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmmd/vmmd/internal/kvmtest"
	"github.com/vmmd/vmmd/internal/testguest"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// harness holds the built binaries and a running vmmd.
type harness struct {
	vmmctl string
	socket string
	dir    string
}

// buildBinary compiles pkg (relative to the repo root) into dir.
func buildBinary(t *testing.T, dir, name, pkg string) string {
	t.Helper()
	out := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = testguest.RepoRoot()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// buildVmmctl builds only vmmctl, for tests that need no daemon.
func buildVmmctl(t *testing.T) string {
	t.Helper()
	return buildBinary(t, t.TempDir(), "vmmctl", "./cmd/vmmctl")
}

// startVmmd builds both binaries and starts vmmd on the test guest with a
// 1 MiB disk "disk.img" (relative, so table output has no temp paths).
func startVmmd(t *testing.T) *harness {
	t.Helper()
	kvmtest.Require(t)
	guest := testguest.Path(t, "vmmd-testguest.elf")
	bin := t.TempDir()
	h := &harness{
		vmmctl: buildBinary(t, bin, "vmmctl", "./cmd/vmmctl"),
		dir:    t.TempDir(),
	}
	vmmd := buildBinary(t, bin, "vmmd", "./cmd/vmmd")
	h.socket = filepath.Join(h.dir, "qmp.sock")
	if err := os.WriteFile(filepath.Join(h.dir, "disk.img"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(vmmd, "--kernel", guest, "--memory", "64M", "--serial", "none",
		"--qmp", "unix:"+h.socket, "--drive", "file=disk.img,id=disk0")
	cmd.Dir = h.dir
	startUntilSocket(t, cmd, "vmmd", h.socket)
	return h
}

// result is one vmmctl run.
type result struct {
	stdout, stderr string
	code           int
}

// runCtl runs the vmmctl binary with args and returns its output and exit
// code.
func runCtl(t *testing.T, bin string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("run vmmctl %v: %v", args, err)
	}
	return r
}

// ctl runs vmmctl against the harness's socket.
func (h *harness) ctl(t *testing.T, args ...string) result {
	t.Helper()
	return runCtl(t, h.vmmctl, nil, append([]string{"--socket", h.socket}, args...)...)
}

// ok runs vmmctl and fails the test unless it exits 0.
func (h *harness) ok(t *testing.T, args ...string) string {
	t.Helper()
	r := h.ctl(t, args...)
	if r.code != 0 {
		t.Fatalf("vmmctl %v: exit %d, stderr %q", args, r.code, r.stderr)
	}
	return r.stdout
}

// normalise strips the temporary directory from output, in case the
// daemon reports the image path made absolute.
func (h *harness) normalise(s string) string {
	return strings.ReplaceAll(s, h.dir+string(filepath.Separator), "")
}

// golden compares got with testdata/name, rewriting it under -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("read golden file: %v", err)
	}
	if got != string(want) {
		t.Errorf("%s mismatch:\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

func statusOf(t *testing.T, h *harness) statusInfo {
	t.Helper()
	var s statusInfo
	out := h.ok(t, "status", "-o", "json")
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("status -o json: %v in %q", err, out)
	}
	return s
}

func blocksOf(t *testing.T, h *harness) []blockInfo {
	t.Helper()
	var b []blockInfo
	out := h.ok(t, "block", "list", "-o", "json")
	if err := json.Unmarshal([]byte(out), &b); err != nil {
		t.Fatalf("block list -o json: %v in %q", err, out)
	}
	if len(b) != 1 || b[0].Device != "disk0" {
		t.Fatalf("block list: want one device disk0, got %+v", b)
	}
	return b
}

func TestAgainstVmmd(t *testing.T) {
	h := startVmmd(t)

	golden(t, "status.golden", h.normalise(h.ok(t, "status")))
	if s := statusOf(t, h); s.Status != "running" || !s.Running {
		t.Fatalf("status at start: %+v, want running", s)
	}
	golden(t, "block-list.golden", h.normalise(h.ok(t, "block", "list")))
	if b := blocksOf(t, h); !b[0].Active || b[0].File != "disk.img" || b[0].NodeName != "disk0" {
		t.Fatalf("block list at start: %+v, want disk0 active on disk.img", b[0])
	}

	r := h.ctl(t, "block", "set-active", "false")
	if r.code != exitQMP || !strings.HasPrefix(r.stderr, "error: ") || !strings.Contains(r.stderr, "stop") {
		t.Fatalf("set-active false while running: exit %d stderr %q, want exit 1 with the server's error", r.code, r.stderr)
	}

	h.ok(t, "stop")
	if s := statusOf(t, h); s.Status != "paused" || s.Running {
		t.Fatalf("status after stop: %+v, want paused", s)
	}
	h.ok(t, "block", "set-active", "false")
	if b := blocksOf(t, h); b[0].Active {
		t.Fatalf("block list after set-active false: %+v, want inactive", b[0])
	}
	h.ok(t, "cont")
	if s := statusOf(t, h); s.Status != "running" || !s.Running {
		t.Fatalf("status after cont: %+v, want running", s)
	}
	if b := blocksOf(t, h); !b[0].Active {
		t.Fatalf("block list after cont: %+v, want active again", b[0])
	}

	var kvm struct {
		Enabled *bool `json:"enabled"`
		Present *bool `json:"present"`
	}
	out := h.ok(t, "qmp", `{"execute":"query-kvm"}`)
	if err := json.Unmarshal([]byte(out), &kvm); err != nil || kvm.Enabled == nil || kvm.Present == nil {
		t.Fatalf("qmp query-kvm: %q (%v), want enabled and present", out, err)
	}

	r = h.ctl(t, "qmp", `{"execute":"no-such-command"}`)
	if r.code != exitQMP || !strings.HasPrefix(r.stderr, "error: ") {
		t.Fatalf("unknown QMP command: exit %d stderr %q, want exit 1 and error:", r.code, r.stderr)
	}

	var v versionInfo
	out = h.ok(t, "version", "-o", "json")
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Server == nil || v.Client.Version != clientVersion {
		t.Fatalf("version -o json: %q (%v)", out, err)
	}
	if !strings.Contains(v.Server.Package, "vmmd") {
		t.Errorf("server package %q does not name vmmd", v.Server.Package)
	}

	h.ok(t, "block", "inject", "disk0", "read", "--errno", "EIO", "--count", "1")
	h.ok(t, "block", "clear-injections", "disk0")
	h.ok(t, "block", "clear-injections")
	r = h.ctl(t, "block", "inject", "nodisk", "read", "--errno", "EIO")
	if r.code != exitQMP || !strings.HasPrefix(r.stderr, "error: ") {
		t.Fatalf("inject on a missing device: exit %d stderr %q, want exit 1", r.code, r.stderr)
	}

	golden(t, "migrate-status-none.golden", h.ok(t, "migrate-status"))
	if s := h.migrateStatus(t); s.Status != statusNone || s.RAM != nil {
		t.Errorf("migrate-status before any migration: %+v", s)
	}
	checkMigrateSet(t, h)

	testEvents(t, h)

	h.ok(t, "quit")
}

// testEvents runs `vmmctl events` and pauses and resumes the guest until a
// STOP event line shows up; the repetition covers the moment before the
// event stream is subscribed, which vmmctl does not announce.
func testEvents(t *testing.T, h *harness) {
	t.Helper()
	cmd := exec.Command(h.vmmctl, "--socket", h.socket, "events")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start vmmctl events: %v", err)
	}
	// On an early failure the process must not outlive the test; after a
	// clean Wait this Kill is a harmless no-op.
	defer func() { _ = cmd.Process.Kill() }()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	deadline := time.After(20 * time.Second)
	var got []string
	found := false
	for !found {
		h.ok(t, "stop")
		h.ok(t, "cont")
	drain:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("vmmctl events ended early; lines %q, stderr %q", got, stderr.String())
				}
				got = append(got, l)
				var ev struct {
					Event     string `json:"event"`
					Timestamp *struct {
						Seconds int64 `json:"seconds"`
					} `json:"timestamp"`
				}
				if err := json.Unmarshal([]byte(l), &ev); err != nil || ev.Timestamp == nil {
					t.Fatalf("event line %q is not an event object: %v", l, err)
				}
				found = found || ev.Event == "STOP"
			case <-time.After(200 * time.Millisecond):
				break drain
			case <-deadline:
				t.Fatalf("no STOP event from vmmctl events; lines %q, stderr %q", got, stderr.String())
			}
		}
	}
	// vmmctl must end cleanly (exit 0) on an interrupt.
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatalf("interrupt vmmctl events: %v", err)
	}
	for range lines {
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("vmmctl events after interrupt: %v, stderr %q", err, stderr.String())
	}
}

func TestExitCodes(t *testing.T) {
	bin := buildVmmctl(t)
	missing := filepath.Join(t.TempDir(), "missing.sock")

	r := runCtl(t, bin, nil, "--socket", missing, "status")
	want := "vmmctl: cannot reach vmmd at " + missing + ": connect: no such file or directory"
	if r.code != exitConnect || strings.TrimSpace(r.stderr) != want {
		t.Errorf("missing socket: exit %d stderr %q, want exit 3 and %q", r.code, r.stderr, want)
	}
	r = runCtl(t, bin, []string{socketEnv + "=" + missing}, "block", "list")
	if r.code != exitConnect || !strings.Contains(r.stderr, missing) {
		t.Errorf("missing socket from %s: exit %d stderr %q, want exit 3 naming it", socketEnv, r.code, r.stderr)
	}

	for _, args := range [][]string{
		{"--socket", missing, "--bogus", "status"},
		{"--socket", missing, "status", "extra"},
		{"--socket", missing, "nope"},
		{"--socket", missing, "-o", "yaml", "status"},
		{"--socket", missing, "block", "set-active", "maybe"},
		{"--socket", missing, "block", "inject", "disk0", "explode"},
		{"--socket", missing, "qmp", "not json"},
	} {
		r := runCtl(t, bin, nil, args...)
		if r.code != exitUsage || r.stderr == "" {
			t.Errorf("vmmctl %v: exit %d stderr %q, want exit 2 with a message", args, r.code, r.stderr)
		}
	}

	r = runCtl(t, bin, []string{socketEnv + "="}, "status")
	if r.code != exitUsage || !strings.Contains(r.stderr, "--socket") {
		t.Errorf("no socket: exit %d stderr %q, want exit 2 naming --socket", r.code, r.stderr)
	}

	r = runCtl(t, bin, nil, "completion", "bash")
	if r.code != 0 || !strings.Contains(r.stdout, "vmmctl") {
		t.Errorf("completion bash: exit %d, stdout %d bytes", r.code, len(r.stdout))
	}
}
