package block

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"
)

// TestFilePoolReuse checks that concurrent operations are served by
// goroutines that stay around between operations and leave on Close.
func TestFilePoolReuse(t *testing.T) {
	ctx := testCtx(t)
	base := runtime.NumGoroutine()
	fb, err := OpenFile(ctx, tempImage(t, 1<<20), BackendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const workers = 8
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			buf := make([]byte, 4096)
			for j := range 200 {
				if err := fb.ReadAt(ctx, buf, int64((i*200+j)%256)*4096); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	// Goroutines stay between operations, within the bound, rather than
	// one per call.
	if n := runtime.NumGoroutine() - base; n < 1 || n > maxIOGoroutines {
		t.Fatalf("%d goroutines left between operations, want 1..%d", n, maxIOGoroutines)
	}
	if err := fb.Close(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base {
		t.Fatalf("%d goroutines after Close, %d before Open", n, base)
	}
}

// TestFileRunLateFinish checks a call that finishes after its caller gave
// up: it is counted stuck until then, and its goroutine serves again.
func TestFileRunLateFinish(t *testing.T) {
	ctx := testCtx(t)
	fb, err := OpenFile(ctx, tempImage(t, 4096), BackendOptions{Timeout: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close(ctx)
	cctx, cancel := context.WithCancel(ctx)
	release := make(chan struct{})
	go func() { time.Sleep(5 * time.Millisecond); cancel() }()
	if err := fb.run(cctx, "read", func() error { <-release; return nil }); err == nil {
		t.Fatal("cancelled call succeeded")
	}
	if fb.Err() == nil {
		t.Fatal("Err() = nil while the abandoned call runs")
	}
	close(release)
	deadline := time.Now().Add(5 * time.Second)
	for fb.Err() != nil && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if err := fb.Err(); err != nil {
		t.Fatalf("after the abandoned call returned: %v", err)
	}
	for range 100 {
		if err := fb.ReadAt(ctx, make([]byte, 512), 0); err != nil {
			t.Fatal(err)
		}
	}
}
