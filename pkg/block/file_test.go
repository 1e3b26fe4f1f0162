package block

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func TestFileRoundTrip(t *testing.T) {
	for _, cache := range []string{"writeback", "none"} {
		t.Run(cache, func(t *testing.T) {
			ctx := testCtx(t)
			img := tempImage(t, 8<<20)
			d := openDrive(t, "file="+img+",id=disk0,cache="+cache, OpenOptions{})
			if d.Size() != 8<<20 || d.BlockSize() != 512 {
				t.Fatalf("size %d, block size %d", d.Size(), d.BlockSize())
			}
			want, err := os.ReadFile(img)
			if err != nil {
				t.Fatal(err)
			}
			// Aligned and unaligned buffers, small and larger than a bounce
			// buffer, plain and FUA.
			writes := []struct {
				off   int64
				n     int
				unal  bool
				flags WriteFlags
			}{
				{0, 512, false, 0},
				{4096, 4096, true, 0},
				{1 << 20, 3<<20 + 512, true, WriteFUA},
				{7 << 20, 64 << 10, false, WriteFUA},
				{8<<20 - 512, 512, true, 0},
			}
			for i, w := range writes {
				buf := make([]byte, w.n)
				if w.unal {
					buf = unaligned(w.n)
				}
				copy(buf, pattern(w.n, uint64(i)))
				if err := d.WriteAt(ctx, buf, w.off, w.flags); err != nil {
					t.Fatalf("write %d: %v", i, err)
				}
				copy(want[w.off:], buf)
			}
			if err := d.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			for i, w := range writes {
				buf := unaligned(w.n)
				if err := d.ReadAt(ctx, buf, w.off); err != nil {
					t.Fatalf("read %d: %v", i, err)
				}
				mustEqual(t, "read back", buf, want[w.off:w.off+int64(w.n)])
			}
			got, err := os.ReadFile(img)
			if err != nil {
				t.Fatal(err)
			}
			mustEqual(t, "file content", got, want)
			whole := unaligned(len(want))
			if err := d.ReadAt(ctx, whole, 0); err != nil {
				t.Fatal(err)
			}
			mustEqual(t, "whole disk", whole, want)
		})
	}
}

func TestFileBadRequests(t *testing.T) {
	ctx := testCtx(t)
	d := openDrive(t, "file="+tempImage(t, 1<<20)+",id=disk0", OpenOptions{})
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"unaligned offset", d.ReadAt(ctx, make([]byte, 512), 100)},
		{"unaligned length", d.WriteAt(ctx, make([]byte, 100), 0, 0)},
		{"past the end", d.ReadAt(ctx, make([]byte, 1024), 1<<20-512)},
		{"negative", d.WriteAt(ctx, make([]byte, 512), -512, 0)},
	} {
		if !errors.Is(tc.err, ErrInvalidRequest) || errors.Is(tc.err, ErrIO) {
			t.Errorf("%s: %v, want ErrInvalidRequest and no ErrIO", tc.name, tc.err)
		}
	}
}

func TestFileReadOnly(t *testing.T) {
	ctx := testCtx(t)
	img := tempImage(t, 1<<20)
	if err := os.WriteFile(img, pattern(1<<20, 7), 0o644); err != nil {
		t.Fatal(err)
	}
	d := openDrive(t, "file="+img+",id=disk0,readonly=on", OpenOptions{})
	if !d.ReadOnly() {
		t.Fatal("ReadOnly() = false")
	}
	err := d.WriteAt(ctx, make([]byte, 512), 0, 0)
	if !errors.Is(err, ErrReadOnly) {
		t.Fatalf("write to a read-only drive: %v", err)
	}
	if err := d.Flush(ctx); err != nil {
		t.Fatalf("flush of a read-only drive: %v", err)
	}
	buf := make([]byte, 4096)
	if err := d.ReadAt(ctx, buf, 4096); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "read-only read", buf, pattern(1<<20, 7)[4096:8192])

	// The backend itself is opened O_RDONLY: even bypassing the drive's
	// check, the kernel refuses.
	fb, err := OpenFile(ctx, img, BackendOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close(ctx)
	fb.opts.ReadOnly = false
	if err := fb.WriteAt(ctx, make([]byte, 512), 0, 0); err == nil {
		t.Fatal("write through an O_RDONLY descriptor succeeded")
	}
}

func TestFileReadPastEOFIsZero(t *testing.T) {
	ctx := testCtx(t)
	img := tempImage(t, 4096)
	if err := os.WriteFile(img, pattern(4096, 1), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, direct := range []bool{false, true} {
		fb, err := OpenFile(ctx, img, BackendOptions{Direct: direct})
		if err != nil {
			t.Fatal(err)
		}
		buf := unaligned(8192)
		for i := range buf {
			buf[i] = 0xff
		}
		if err := fb.ReadAt(ctx, buf, 0); err != nil {
			t.Fatal(err)
		}
		mustEqual(t, "data part", buf[:4096], pattern(4096, 1))
		mustEqual(t, "zero part", buf[4096:], make([]byte, 4096))
		if err := fb.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if err := fb.ReadAt(ctx, buf, 0); !errors.Is(err, ErrClosed) {
			t.Fatalf("read after close: %v", err)
		}
	}
}

func TestFileOpenErrors(t *testing.T) {
	ctx := testCtx(t)
	if _, err := OpenFile(ctx, "/nonexistent/disk.img", BackendOptions{}); err == nil || !strings.Contains(err.Error(), "open /nonexistent/disk.img") {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := OpenFile(ctx, t.TempDir(), BackendOptions{ReadOnly: true}); err == nil || !strings.Contains(err.Error(), "neither a regular file nor a block device") {
		t.Fatalf("directory: %v", err)
	}
	if _, err := OpenFile(ctx, "/dev/null", BackendOptions{}); err == nil || !strings.Contains(err.Error(), "character device") {
		t.Fatalf("character device: %v", err)
	}
}

// TestFileStuckCall checks the timeout machinery with a call that blocks
// like a system call on a hung NFS server would.
func TestFileStuckCall(t *testing.T) {
	ctx := testCtx(t)
	fb, err := OpenFile(ctx, tempImage(t, 4096), BackendOptions{Timeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close(ctx)
	release := make(chan struct{})
	start := time.Now()
	err = fb.run(ctx, "read", func() error { <-release; return nil })
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, ErrIO) {
		t.Fatalf("stuck call gave %v, want a timeout", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("timeout took %s", d)
	}
	// While the call is stuck, new requests fail at once.
	start = time.Now()
	if err := fb.ReadAt(ctx, make([]byte, 512), 0); !errors.Is(err, ErrIO) || !strings.Contains(err.Error(), "still stuck") {
		t.Fatalf("request during a stuck call: %v", err)
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Fatalf("fail-fast took %s", d)
	}
	if fb.Err() == nil {
		t.Fatal("Err() = nil while a call is stuck")
	}
	close(release)
	deadline := time.Now().Add(5 * time.Second)
	for fb.Err() != nil && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if err := fb.ReadAt(ctx, make([]byte, 512), 0); err != nil {
		t.Fatalf("after the stuck call returned: %v", err)
	}
	// A cancelled context also ends the wait.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := fb.run(cctx, "flush", func() error { time.Sleep(20 * time.Millisecond); return nil }); !errors.Is(err, context.Canceled) || !errors.Is(err, ErrIO) {
		t.Fatalf("cancelled: %v", err)
	}
}
