package blk

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"
)

func TestPauseWaitsForInFlight(t *testing.T) {
	disk := newDisk(1 << 20)
	e := newEnv(t, disk)
	e.up(layout())
	disk.hold()
	_, st := e.request(TypeIn, 0, vbuf{Addr: dataArea, Len: 512, Write: true})
	waitStarted(t, disk, 1)

	short, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := e.dev.Pause(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Pause with a request in flight = %v, want DeadlineExceeded", err)
	}
	done := make(chan error, 1)
	go func() { done <- e.dev.Pause(context.Background()) }()
	select {
	case err := <-done:
		t.Fatalf("Pause returned %v with a request in flight", err)
	case <-time.After(20 * time.Millisecond):
	}
	disk.release()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Pause did not return after the request finished")
	}
	// The in-flight request completed before Pause returned.
	if e.statusAt(st) != StatusOK || e.drv.UsedIdx() != 1 {
		t.Fatalf("status %d used %d after Pause", e.statusAt(st), e.drv.UsedIdx())
	}
	// Paused: new requests wait.
	_, st2 := e.request(TypeFlush, 0)
	time.Sleep(20 * time.Millisecond)
	if e.statusAt(st2) != 0xff || disk.flushCount() != 0 {
		t.Fatal("request taken while paused")
	}
	if _, err := e.dev.State(); err != nil {
		t.Errorf("State while paused: %v", err)
	}
	e.dev.Resume()
	e.wait(2)
	if e.statusAt(st2) != StatusOK {
		t.Errorf("status %d after Resume", e.statusAt(st2))
	}
	if _, err := e.dev.State(); err == nil {
		t.Error("State of a running device succeeded")
	}
}

// TestConcurrency: requests run in parallel up to MaxInFlight, and may
// complete out of order.
func TestConcurrency(t *testing.T) {
	disk := newDisk(1 << 20)
	e := newEnv(t, disk, func(c *Config) { c.MaxInFlight = 4 })
	e.up(layout())
	disk.hold()
	for i := range 8 {
		e.request(TypeIn, uint64(i), vbuf{Addr: dataArea + uint64(i)*0x1000, Len: 512, Write: true})
	}
	waitStarted(t, disk, 4)
	select {
	case <-disk.started:
		t.Fatal("more than MaxInFlight requests started")
	case <-time.After(20 * time.Millisecond):
	}
	disk.release()
	e.wait(8)
	disk.mu.Lock()
	maxSeen := disk.maxSeen
	disk.mu.Unlock()
	if maxSeen != 4 {
		t.Errorf("at most %d requests ran at once, want 4", maxSeen)
	}
}

// TestResetDropsInFlight: a request still running when the driver resets
// the device completes into nothing.
func TestResetDropsInFlight(t *testing.T) {
	disk := newDisk(1 << 20)
	e := newEnv(t, disk)
	e.up(layout())
	disk.hold()
	_, st := e.request(TypeFlush, 0)
	waitStarted(t, disk, 1)
	e.drv.Write32(0x070, 0) // Status = 0: reset
	disk.release()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.dev.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	if e.statusAt(st) != 0xff || e.drv.UsedIdx() != 0 {
		t.Errorf("request from before the reset completed: status %d used %d", e.statusAt(st), e.drv.UsedIdx())
	}
}

// TestCloseCancelsInFlight: Close does not wait for a hung backend beyond
// its context.
func TestCloseCancelsInFlight(t *testing.T) {
	disk := newDisk(1 << 20)
	e := newEnv(t, disk, policyOf(ActionStop))
	e.up(layout())
	disk.hold()
	e.request(TypeIn, 0, vbuf{Addr: dataArea, Len: 512, Write: true})
	waitStarted(t, disk, 1)
	done := make(chan error, 1)
	go func() { done <- e.dev.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close hung on a held request")
	}
	if e.stops.count() != 0 {
		t.Error("Close stopped the VM")
	}
	if err := e.dev.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	// MMIO after Close is harmless.
	e.drv.Notify()
	e.drv.Read32(0)
}

// TestConcurrentVCPUs hammers the registers from several goroutines while
// requests complete, for the race detector.
func TestConcurrentVCPUs(t *testing.T) {
	disk := newDisk(1 << 20)
	e := newEnv(t, disk)
	e.up(layout())
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var b [4]byte
			for {
				select {
				case <-stop:
					return
				default:
				}
				e.dev.MMIORead(testBase+0x060, b[:])
				e.dev.MMIOWrite(testBase+0x064, b[:])
				e.dev.MMIORead(testBase+0x070, b[:])
				e.dev.MMIORead(testBase+0x100, b[:])
				e.dev.MMIOWrite(testBase+0x050, []byte{0, 0, 0, 0})
				runtime.Gosched() // let the device run with GOMAXPROCS=1
			}
		}()
	}
	for i := range 100 {
		if st, _ := e.do(TypeIn, uint64(i%64), vbuf{Addr: dataArea, Len: 4096, Write: true}); st != StatusOK {
			t.Fatalf("request %d: status %d", i, st)
		}
	}
	close(stop)
	wg.Wait()
}
