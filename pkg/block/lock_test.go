package block

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	writeLockText       = `Failed to get "write" lock`
	sharedWriteLockText = `Failed to get shared "write" lock`
)

func wantLockError(t *testing.T, err error, text string) {
	t.Helper()
	var le *LockError
	if !errors.As(err, &le) {
		t.Fatalf("error %v is not a *LockError", err)
	}
	if err.Error() != text {
		t.Fatalf("error text %q, want exactly %q", err.Error(), text)
	}
}

func TestLockTwoDrivesOneProcess(t *testing.T) {
	ctx := testCtx(t)
	img := tempImage(t, 1<<20)
	a := openDrive(t, "file="+img+",id=a", OpenOptions{})
	b := openDrive(t, "file="+img+",id=b", OpenOptions{Inactive: true})
	wantLockError(t, b.Activate(ctx), writeLockText)
	if b.Active() {
		t.Fatal("b active after a failed activation")
	}
	// The gate reports it with the drive's name in front.
	g := NewGate(b)
	err := g.ReactivateAll(ctx)
	if err == nil || !strings.Contains(err.Error(), "activate b: "+writeLockText) {
		t.Fatalf("gate: %v", err)
	}

	if err := a.Inactivate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Activate(ctx); err != nil {
		t.Fatalf("activate after the holder inactivated: %v", err)
	}
	wantLockError(t, a.Activate(ctx), writeLockText)

	// Opening active fails as activation does, with the drive named.
	s, _ := ParseDriveSpec("file=" + img + ",id=c")
	_, err = OpenDrive(ctx, s, OpenOptions{})
	if err == nil || err.Error() != "drive c: "+writeLockText {
		t.Fatalf("OpenDrive on a held image: %v", err)
	}
}

func TestLockReadOnly(t *testing.T) {
	ctx := testCtx(t)
	img := tempImage(t, 1<<20)
	rw := openDrive(t, "file="+img+",id=rw", OpenOptions{})
	ro := openDrive(t, "file="+img+",id=ro,readonly=on", OpenOptions{Inactive: true})
	// A reader refuses to share write, so it cannot join an active writer.
	wantLockError(t, ro.Activate(ctx), sharedWriteLockText)
	if err := rw.Inactivate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ro.Activate(ctx); err != nil {
		t.Fatal(err)
	}
	// Readers share with readers, and keep writers out.
	ro2 := openDrive(t, "file="+img+",id=ro2,readonly=on", OpenOptions{})
	wantLockError(t, rw.Activate(ctx), writeLockText)
	for _, d := range []*Drive{ro, ro2} {
		if err := d.Inactivate(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := rw.Activate(ctx); err != nil {
		t.Fatal(err)
	}
}

// lockHelperEnv carries a drive spec to the helper process.
const lockHelperEnv = "VMMD_BLOCK_LOCK_HELPER_SPEC"

// lockHelper is the child side of TestLockAcrossProcesses: it opens the
// drive active, reports "active" or "error: ...", then obeys "inactivate"
// and "activate" lines on stdin until EOF.
func lockHelper(spec string) int {
	ctx := context.Background()
	s, err := ParseDriveSpec(spec)
	if err != nil {
		fmt.Println("error:", err)
		return 2
	}
	d, err := OpenDrive(ctx, s, OpenOptions{})
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Println("active")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch in.Text() {
		case "inactivate":
			if err := d.Inactivate(ctx); err != nil {
				fmt.Println("error:", err)
				continue
			}
			fmt.Println("inactive")
		case "activate":
			if err := d.Activate(ctx); err != nil {
				fmt.Println("error:", err)
				continue
			}
			fmt.Println("active")
		}
	}
	if err := d.Close(ctx); err != nil {
		fmt.Println("error:", err)
		return 1
	}
	return 0
}

type helperProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines *bufio.Scanner
}

func startLockHelper(t *testing.T, spec string) *helperProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), lockHelperEnv+"="+spec)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helperProc{cmd: cmd, stdin: stdin, lines: bufio.NewScanner(stdout)}
	t.Cleanup(func() {
		_ = stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	return h
}

// expect reads the helper's next line and checks it.
func (h *helperProc) expect(t *testing.T, want string) {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		if h.lines.Scan() {
			got <- h.lines.Text()
			return
		}
		got <- "<helper exited>"
	}()
	select {
	case line := <-got:
		if line != want {
			t.Fatalf("helper said %q, want %q", line, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("helper silent, want %q", want)
	}
}

func (h *helperProc) send(t *testing.T, cmd string) {
	t.Helper()
	if _, err := io.WriteString(h.stdin, cmd+"\n"); err != nil {
		t.Fatal(err)
	}
}

func TestLockAcrossProcesses(t *testing.T) {
	ctx := testCtx(t)
	img := tempImage(t, 1<<20)
	h := startLockHelper(t, "file="+img+",id=peer")
	h.expect(t, "active")

	d := openDrive(t, "file="+img+",id=disk0", OpenOptions{Inactive: true})
	wantLockError(t, d.Activate(ctx), writeLockText)

	h.send(t, "inactivate")
	h.expect(t, "inactive")
	if err := d.Activate(ctx); err != nil {
		t.Fatalf("activate after the other process inactivated: %v", err)
	}
	h.send(t, "activate")
	h.expect(t, "error: "+writeLockText)

	// Handing back and forth works both ways.
	if err := d.Inactivate(ctx); err != nil {
		t.Fatal(err)
	}
	h.send(t, "activate")
	h.expect(t, "active")
	wantLockError(t, d.Activate(ctx), writeLockText)

	// A holder that dies releases its locks with its descriptors.
	if err := h.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = h.cmd.Wait()
	if err := d.Activate(ctx); err != nil {
		t.Fatalf("activate after the holder was killed: %v", err)
	}
}

// TestLockQEMUInterop checks that the lock bytes are QEMU's: qemu-io cannot
// write to an image an active drive holds, and a drive cannot activate an
// image qemu-io holds.
func TestLockQEMUInterop(t *testing.T) {
	qemuIO, err := exec.LookPath("qemu-io")
	if err != nil {
		t.Skip("qemu-io not installed; QEMU lock interoperability not checked")
	}
	ctx := testCtx(t)
	img := tempImage(t, 1<<20)
	d := openDrive(t, "file="+img+",id=disk0", OpenOptions{})
	out, err := exec.CommandContext(ctx, qemuIO, "-f", "raw", "-c", "write 0 512", img).CombinedOutput()
	if err == nil || !strings.Contains(string(out), writeLockText) {
		t.Fatalf("qemu-io write on a held image: err=%v output=%s", err, out)
	}
	if err := d.Inactivate(ctx); err != nil {
		t.Fatal(err)
	}
	// A read-only guest disk does not share write either (QEMU's devices
	// without share-rw=on behave the same).
	ro := openDrive(t, "file="+img+",id=ro,readonly=on", OpenOptions{})
	out, err = exec.CommandContext(ctx, qemuIO, "-f", "raw", "-c", "write 0 512", img).CombinedOutput()
	if err == nil || !strings.Contains(string(out), writeLockText) {
		t.Fatalf("qemu-io write on an image a read-only drive holds: err=%v output=%s", err, out)
	}
	if err := ro.Inactivate(ctx); err != nil {
		t.Fatal(err)
	}
	out, err = exec.CommandContext(ctx, qemuIO, "-f", "raw", "-c", "write -P 0xab 0 512", img).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-io write after inactivation: %v: %s", err, out)
	}

	// qemu-io holding the image for a while: our activation must fail.
	cmd := exec.CommandContext(ctx, qemuIO, "-f", "raw", "-c", "sleep 20000", img)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	// Wait, without taking any lock ourselves (qemu-io would fail to
	// open), until qemu-io holds the write permission byte.
	probe, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	deadline := time.Now().Add(15 * time.Second)
	for {
		busy, err := lockBusy(int(probe.Fd()), lockPermBase+permWrite)
		if err != nil {
			t.Fatal(err)
		}
		if busy {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("qemu-io never took the image lock")
		}
		time.Sleep(10 * time.Millisecond)
	}
	err = d.Activate(ctx)
	// qemu-io holds write but shares it, so QEMU itself would report the
	// shared variant here; which one depends on the holder's share-rw, and
	// both are QEMU's text.
	if err == nil || err.Error() != writeLockText {
		wantLockError(t, err, sharedWriteLockText)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if err := d.Activate(ctx); err != nil {
		t.Fatalf("activate after qemu-io exited: %v", err)
	}
	buf := make([]byte, 512)
	if err := d.ReadAt(ctx, buf, 0); err != nil {
		t.Fatal(err)
	}
	if buf[0] != 0xab || buf[511] != 0xab {
		t.Fatalf("qemu-io's write not seen: %x", buf[:4])
	}
}
