package block

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestDriveIdempotent(t *testing.T) {
	ctx := testCtx(t)
	img := tempImage(t, 1<<20)
	d := openDrive(t, "file="+img+",id=disk0", OpenOptions{})
	for i := 0; i < 2; i++ {
		if err := d.Activate(ctx); err != nil || !d.Active() {
			t.Fatalf("activate #%d: %v, active=%v", i, err, d.Active())
		}
	}
	for i := 0; i < 3; i++ {
		if err := d.Inactivate(ctx); err != nil || d.Active() {
			t.Fatalf("inactivate #%d: %v, active=%v", i, err, d.Active())
		}
	}
	if err := d.Activate(ctx); err != nil || !d.Active() {
		t.Fatalf("reactivate: %v", err)
	}
}

func TestDriveInactiveRefusesIO(t *testing.T) {
	ctx := testCtx(t)
	d := openDrive(t, "file="+tempImage(t, 1<<20)+",id=disk0", OpenOptions{Inactive: true})
	if d.Active() {
		t.Fatal("opened inactive but Active() = true")
	}
	err := d.WriteAt(ctx, make([]byte, 512), 0, 0)
	if !errors.Is(err, ErrInactive) || err.Error() != "Permission 'write' unavailable on inactive node" {
		t.Fatalf("write to an inactive drive: %v", err)
	}
	if err := d.ReadAt(ctx, make([]byte, 512), 0); !errors.Is(err, ErrInactive) || errors.Is(err, ErrIO) {
		t.Fatalf("read from an inactive drive: %v", err)
	}
	if err := d.Flush(ctx); err != nil {
		t.Fatalf("flush of an inactive drive: %v", err)
	}
	info := d.Info()
	if info.Active || info.Healthy || info.Device != "disk0" || info.Driver != "file" || info.Size != 1<<20 || info.IOStatus != IOStatusOK {
		t.Fatalf("Info() = %+v", info)
	}
}

// TestDriveOpenedInactiveHoldsNoLock is the --incoming case: the source
// still owns the image, and activation re-reads the size.
func TestDriveOpenedInactiveHoldsNoLock(t *testing.T) {
	ctx := testCtx(t)
	img := tempImage(t, 1<<20)
	src := openDrive(t, "file="+img+",id=disk0", OpenOptions{})
	dst := openDrive(t, "file="+img+",id=disk0", OpenOptions{Inactive: true})
	if err := os.Truncate(img, 2<<20); err != nil {
		t.Fatal(err)
	}
	if err := src.Inactivate(ctx); err != nil {
		t.Fatal(err)
	}
	if dst.Size() != 1<<20 {
		t.Fatalf("size changed before activation: %d", dst.Size())
	}
	if err := dst.Activate(ctx); err != nil {
		t.Fatal(err)
	}
	if dst.Size() != 2<<20 {
		t.Fatalf("size after activation = %d, want %d", dst.Size(), 2<<20)
	}
	if err := dst.WriteAt(ctx, make([]byte, 512), 2<<20-512, 0); err != nil {
		t.Fatalf("write in the grown part: %v", err)
	}
}

func TestDriveInjectedFlushFailureReachesGate(t *testing.T) {
	ctx := testCtx(t)
	img := tempImage(t, 1<<20)
	d := openDrive(t, "file="+img+",id=disk0", OpenOptions{})
	other := openDrive(t, "file="+tempImage(t, 1<<20)+",id=disk1", OpenOptions{})
	g := NewGate(d, other)
	rule, err := ParseFaultRule("op=flush,errno=EIO,count=1,delay-ms=0")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Inject(rule); err != nil {
		t.Fatal(err)
	}
	err = g.InactivateAll(ctx)
	want := "inactivate disk0: flush: input/output error (EIO, injected)"
	if err == nil || err.Error() != want {
		t.Fatalf("InactivateAll = %v, want %q", err, want)
	}
	if !errors.Is(err, syscall.EIO) {
		t.Fatal("the gate's error does not wrap EIO")
	}
	if !d.Active() || other.Active() || !g.MayBeInactive() {
		t.Fatalf("after a failed flush: disk0 active=%v disk1 active=%v mayBeInactive=%v", d.Active(), other.Active(), g.MayBeInactive())
	}
	// The drive still holds its image and serves requests.
	if err := d.WriteAt(ctx, make([]byte, 512), 0, 0); err != nil {
		t.Fatalf("write after a failed inactivation: %v", err)
	}
	s, _ := ParseDriveSpec("file=" + img + ",id=peer")
	if _, err := OpenDrive(ctx, s, OpenOptions{}); err == nil || !strings.HasSuffix(err.Error(), writeLockText) {
		t.Fatalf("the lock must still be held: %v", err)
	}
	// count=1: the second attempt goes through.
	if err := g.InactivateAll(ctx); err != nil {
		t.Fatal(err)
	}
	if d.Active() {
		t.Fatal("disk0 still active")
	}
	if err := g.ReactivateAll(ctx); err != nil || g.MayBeInactive() {
		t.Fatalf("ReactivateAll: %v", err)
	}
}

func TestDriveInjectedActivateAndInactivate(t *testing.T) {
	ctx := testCtx(t)
	img := tempImage(t, 1<<20)
	d := openDrive(t, "file="+img+",id=disk0", OpenOptions{Inactive: true})
	g := NewGate()
	g.Add(d)
	if err := d.Inject(FaultRule{Op: OpActivate, Errno: syscall.EPERM, Count: 1}); err != nil {
		t.Fatal(err)
	}
	err := g.ReactivateAll(ctx)
	if err == nil || !strings.Contains(err.Error(), "activate disk0: operation not permitted (EPERM, injected)") || !errors.Is(err, ErrNotAllActive) {
		t.Fatalf("ReactivateAll = %v", err)
	}
	if d.Active() {
		t.Fatal("active after an injected activation failure")
	}
	if err := g.ReactivateAll(ctx); err != nil {
		t.Fatal(err)
	}
	// An active, healthy drive is not touched by activation at all, so an
	// activate rule waits for a real activation.
	if err := d.Inject(FaultRule{Op: OpActivate, Errno: syscall.EIO, Count: 1}); err != nil {
		t.Fatal(err)
	}
	if err := g.ReactivateAll(ctx); err != nil {
		t.Fatalf("reactivating an active drive consulted the rule: %v", err)
	}
	d.ClearInjections()
	if len(d.Injections()) != 0 {
		t.Fatal("rules left after ClearInjections")
	}

	if err := d.Inject(FaultRule{Op: OpInactivate, Errno: syscall.EBUSY, Count: 1}); err != nil {
		t.Fatal(err)
	}
	err = g.InactivateAll(ctx)
	if err == nil || err.Error() != "inactivate disk0: release image: device or resource busy (EBUSY, injected)" {
		t.Fatalf("InactivateAll = %v", err)
	}
	if !d.Active() {
		t.Fatal("inactive after a failed release")
	}
	if err := d.Inject(FaultRule{Op: "trim", Errno: syscall.EIO}); err == nil {
		t.Fatal("Inject accepted a bad rule")
	}
}

func TestDriveInjectedIOErrors(t *testing.T) {
	ctx := testCtx(t)
	d := openDrive(t, "file="+tempImage(t, 1<<20)+",id=disk0,werror=stop,rerror=ignore", OpenOptions{})
	if err := d.Inject(FaultRule{Op: OpWrite, Errno: syscall.ENOSPC, Count: 1}); err != nil {
		t.Fatal(err)
	}
	err := d.WriteAt(ctx, make([]byte, 4096), 8192, 0)
	var ioe *IOError
	if !errors.As(err, &ioe) || ioe.Op != OpWrite || ioe.Off != 8192 || ioe.Len != 4096 {
		t.Fatalf("write error = %v", err)
	}
	if !errors.Is(err, ErrIO) || !errors.Is(err, syscall.ENOSPC) || IOStatusOf(err) != IOStatusNoSpace {
		t.Fatalf("write error %v does not wrap ErrIO and ENOSPC", err)
	}
	if d.PolicyFor(ioe.Op) != ActionStop || d.PolicyFor(OpRead) != ActionIgnore {
		t.Fatal("policy not taken from the spec")
	}
	d.SetIOStatus(IOStatusOf(err))
	if d.Info().IOStatus != IOStatusNoSpace {
		t.Fatal("io-status not recorded")
	}
	if err := d.Inject(FaultRule{Op: OpRead, Errno: syscall.EIO, Count: 1}); err != nil {
		t.Fatal(err)
	}
	if err := d.ReadAt(ctx, make([]byte, 512), 0); !errors.Is(err, syscall.EIO) {
		t.Fatalf("read: %v", err)
	}
	if err := d.Inject(FaultRule{Op: OpFlush, Errno: syscall.EIO, Count: 1}); err != nil {
		t.Fatal(err)
	}
	if err := d.Flush(ctx); !errors.As(err, &ioe) || ioe.Op != OpFlush || err.Error() != "flush: input/output error (EIO, injected)" {
		t.Fatalf("flush: %v", err)
	}
	// Rules are used up; everything works again.
	if err := d.WriteAt(ctx, make([]byte, 512), 0, 0); err != nil {
		t.Fatal(err)
	}
}

// TestDriveInactivateDrains starts a slow write (an injected delay), then
// inactivates: inactivation must wait for the write, which must succeed.
func TestDriveInactivateDrains(t *testing.T) {
	ctx := testCtx(t)
	img := tempImage(t, 1<<20)
	fb, err := OpenFile(ctx, img, BackendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rb := &recordingBackend{Backend: fb}
	d, err := NewDrive(ctx, DriveSpec{ID: "disk0", File: img}, rb, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close(ctx)
	// The injected delay sits above the backend, so the backend write
	// happens at the end of the slow request.
	if err := d.Inject(FaultRule{Op: OpWrite, Delay: 300 * time.Millisecond, Count: 1}); err != nil {
		t.Fatal(err)
	}
	data := pattern(4096, 3)
	writeDone := make(chan error, 1)
	go func() { writeDone <- d.WriteAt(ctx, data, 4096, 0) }()
	waitInflight(t, d, 1)
	if err := d.Inactivate(ctx); err != nil {
		t.Fatal(err)
	}
	inactiveAt := time.Now()
	if err := <-writeDone; err != nil {
		t.Fatalf("the in-flight write failed: %v", err)
	}
	rb.mu.Lock()
	writeEnd, releaseAt := rb.writeEnd, rb.releaseAt
	rb.mu.Unlock()
	if writeEnd.IsZero() || releaseAt.Before(writeEnd) || inactiveAt.Before(writeEnd) {
		t.Fatalf("released the image at %v, before the in-flight write ended at %v", releaseAt, writeEnd)
	}
	got, _ := os.ReadFile(img)
	mustEqual(t, "drained write", got[4096:8192], data)
}

// recordingBackend notes when writes end and when the image is released.
type recordingBackend struct {
	Backend
	mu        sync.Mutex
	writeEnd  time.Time
	releaseAt time.Time
}

func (r *recordingBackend) WriteAt(ctx context.Context, p []byte, off int64, flags WriteFlags) error {
	err := r.Backend.WriteAt(ctx, p, off, flags)
	r.mu.Lock()
	r.writeEnd = time.Now()
	r.mu.Unlock()
	return err
}

func (r *recordingBackend) Release(ctx context.Context) error {
	r.mu.Lock()
	r.releaseAt = time.Now()
	r.mu.Unlock()
	return r.Backend.Release(ctx)
}

func TestDriveDrainTimeout(t *testing.T) {
	ctx := testCtx(t)
	d := openDrive(t, "file="+tempImage(t, 1<<20)+",id=disk0", OpenOptions{})
	if err := d.Inject(FaultRule{Op: OpRead, Delay: 500 * time.Millisecond, Count: 1}); err != nil {
		t.Fatal(err)
	}
	readDone := make(chan error, 1)
	go func() { readDone <- d.ReadAt(ctx, make([]byte, 512), 0) }()
	waitInflight(t, d, 1)
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	g := NewGate(d)
	err := g.InactivateAll(short)
	if err == nil || !strings.Contains(err.Error(), "inactivate disk0: drain: 1 request(s) still in flight") || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("InactivateAll = %v", err)
	}
	if !d.Active() {
		t.Fatal("inactive after a failed drain")
	}
	if err := <-readDone; err != nil {
		t.Fatal(err)
	}
	// It admits requests again.
	if err := d.ReadAt(ctx, make([]byte, 512), 0); err != nil {
		t.Fatalf("read after a failed drain: %v", err)
	}
}

func TestDriveClose(t *testing.T) {
	ctx := testCtx(t)
	img := tempImage(t, 1<<20)
	s, _ := ParseDriveSpec("file=" + img + ",id=disk0")
	d, err := OpenDrive(ctx, s, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(ctx); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if err := d.ReadAt(ctx, make([]byte, 512), 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}
	if err := d.Activate(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("activate after close: %v", err)
	}
	// The lock went with it.
	e := openDrive(t, "file="+img+",id=disk1", OpenOptions{})
	if !e.Active() {
		t.Fatal("image still locked after close")
	}
}

// inflightNow returns the number of requests in flight.
func (d *Drive) inflightNow() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.inflight
}

// waitInflight waits until the drive has n requests in flight.
func waitInflight(t *testing.T, d *Drive, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if d.inflightNow() >= n {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("never saw %d requests in flight", n)
}
