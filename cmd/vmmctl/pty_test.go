package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal pair with a 200x50 window. Linux's
// /dev/ptmx needs only three ioctls, so this needs no pty library.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	t.Cleanup(func() { _ = master.Close() })
	fd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("TIOCSPTLCK: %v", err)
	}
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("TIOCGPTN: %v", err)
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open pty slave: %v", err)
	}
	t.Cleanup(func() { _ = slave.Close() })
	if err := unix.IoctlSetWinsize(int(slave.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 50, Col: 200}); err != nil {
		t.Fatalf("TIOCSWINSZ: %v", err)
	}
	return master, slave
}

// TestMigrateProgressBar runs migrate --wait with its stdout on a
// pseudo-terminal and checks that the bar is drawn in place and the summary
// follows.
func TestMigrateProgressBar(t *testing.T) { forEachBackend(t, testMigrateProgressBar) }

func testMigrateProgressBar(t *testing.T, b backend) {
	p := startPair(t, b, false)
	bin := buildVmmctl(t)
	master, slave := openPTY(t)

	cmd := exec.Command(bin, "--socket", p.src, "migrate", p.uri, "--wait", "--interval", "100ms", "--max-bandwidth", "300K")
	cmd.Stdout = slave
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start vmmctl: %v", err)
	}
	// Only the child may hold the slave now, so that reading the master
	// ends (EIO) when the child exits.
	_ = slave.Close()
	read := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(master)
		read <- b
	}()
	err := cmd.Wait()
	out := string(<-read)
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("vmmctl: %v", err)
	}
	if err != nil {
		t.Fatalf("migrate --wait on a terminal: %v, stderr %q, output %q", err, stderr.String(), out)
	}

	if strings.Contains(out, "progress status=") {
		t.Errorf("plain progress lines on a terminal: %q", out)
	}
	redraws := strings.Count(out, "\x1b[K")
	if redraws < 3 || strings.Count(out, "\r") < redraws {
		t.Errorf("bar drawn %d times (want at least 3, each after a carriage return): %q", redraws, out)
	}
	if !strings.Contains(out, "active ") || !strings.Contains(out, "% [#") && !strings.Contains(out, "% [-") {
		t.Errorf("no bar for the active migration: %q", out)
	}
	if !strings.Contains(out, "100.0% ["+strings.Repeat("#", barCells)+"]") {
		t.Errorf("no full bar at the end: %q", out)
	}
	if !strings.Contains(out, " of 128.") || !strings.Contains(out, "Mbit/s") || !strings.Contains(out, "pass ") || !strings.Contains(out, "exp. downtime") {
		t.Errorf("bar lacks transferred/total, rate, pass or expected downtime: %q", out)
	}
	i := strings.LastIndex(out, "\x1b[K")
	tail := out[i+len("\x1b[K"):]
	// The terminal turns "\n" into "\r\n".
	if !strings.HasPrefix(tail, "\r\nMigration completed in ") || !strings.Contains(tail, "transferred") {
		t.Errorf("no summary on its own line after the bar: %q", tail)
	}
}
