// Package nbdkittest starts nbdkit, the NBD server from Debian, for tests
// that need real shared storage, and plays the storage server that stops
// answering (SIGSTOP) or dies (SIGKILL).
package nbdkittest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/vmmd/vmmd/internal/kvmtest"
)

// Require returns nbdkit's path. Without nbdkit the test is skipped
// with the reason, unless VMMD_REQUIRE_KVM=1 (CI), where it fails: CI is
// meant to have every tool the tests need.
func Require(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("nbdkit")
	if err == nil {
		return path
	}
	msg := "nbdkit not installed (Debian package nbdkit): NBD test not run"
	if os.Getenv(kvmtest.RequireEnv) == "1" {
		t.Fatal(msg + " (and " + kvmtest.RequireEnv + "=1)")
	}
	t.Skip(msg + " (set " + kvmtest.RequireEnv + "=1 to make this a failure)")
	return ""
}

// Server is an nbdkit process serving on a unix socket (or TCP).
type Server struct {
	// Cmd is the nbdkit process.
	Cmd *exec.Cmd
	// Sock is the unix socket path; URI the NBD URI QEMU-style.
	Sock, URI string
	// Stderr collects nbdkit's messages.
	Stderr *bytes.Buffer
}

// ShortDir returns a temporary directory with a short path: unix socket
// paths are limited to 107 bytes, and t.TempDir embeds the test name.
func ShortDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "nbd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// Start runs nbdkit -f --exit-with-parent -U SOCKET ARGS... and waits
// until it accepts connections. ARGS are filters, the plugin and its
// parameters.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	sock := filepath.Join(ShortDir(t), "nbd.sock")
	return StartAt(t, sock, args...)
}

// StartAt is Start on a given socket path (to restart a server in place).
func StartAt(t testing.TB, sock string, args ...string) *Server {
	t.Helper()
	bin := Require(t)
	s := &Server{Sock: sock, URI: "nbd+unix:///?socket=" + sock, Stderr: &bytes.Buffer{}}
	s.Cmd = exec.Command(bin, append([]string{"-f", "--exit-with-parent", "-U", sock}, args...)...)
	s.Cmd.Stderr = s.Stderr
	if err := s.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = s.Cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = s.Cmd.Process.Signal(syscall.SIGCONT)
		_ = s.Cmd.Process.Kill()
		<-exited
		if t.Failed() && s.Stderr.Len() > 0 {
			t.Logf("nbdkit stderr:\n%s", s.Stderr)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("nbdkit %v exited: %s", args, s.Stderr)
		default:
		}
		if c, err := net.Dial("unix", sock); err == nil {
			_ = c.Close()
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("nbdkit %v not listening on %s after 10s", args, sock)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// StartTCP serves on 127.0.0.1 on a free port.
func StartTCP(t testing.TB, args ...string) (uri string) {
	t.Helper()
	bin := Require(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	var stderr bytes.Buffer
	cmd := exec.Command(bin, append([]string{"-f", "--exit-with-parent", "-i", "127.0.0.1", "-p", strconv.Itoa(port)}, args...)...)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			_ = c.Close()
			return "nbd://" + addr + "/"
		}
		if time.Now().After(deadline) {
			t.Fatalf("nbdkit not listening on %s: %s", addr, stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Signal sends sig to nbdkit. For SIGSTOP it also waits until every thread
// has stopped: kill returns before the stop takes effect, and a request
// sent in between would still be served.
func (s *Server) Signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := s.Cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal nbdkit: %v", err)
	}
	if sig != syscall.SIGSTOP {
		return
	}
	deadline := time.Now().Add(5 * time.Second)
	for !allThreadsStopped(s.Cmd.Process.Pid) {
		if time.Now().After(deadline) {
			t.Fatal("nbdkit did not stop within 5s of SIGSTOP")
		}
		time.Sleep(time.Millisecond)
	}
}

// allThreadsStopped reports whether every thread of pid is in state T.
func allThreadsStopped(pid int) bool {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil || len(tasks) == 0 {
		return false
	}
	for _, p := range tasks {
		b, err := os.ReadFile(p)
		if err != nil {
			return false
		}
		// The state follows the parenthesised command name.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 || i+2 >= len(b) || b[i+2] != 'T' {
			return false
		}
	}
	return true
}
