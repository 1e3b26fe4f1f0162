package blk

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"syscall"
	"testing"
	"time"
)

func policyOf(a Action) envOpt {
	return func(c *Config) { c.Policy = func(Op, error) Action { return a } }
}

func TestPolicyReport(t *testing.T) {
	disk := newDisk(1 << 20)
	e := newEnv(t, disk) // nil policy: report
	e.up(layout())
	disk.failNext(OpRead, 1, syscall.EIO)
	if st, n := e.do(TypeIn, 0, vbuf{Addr: dataArea, Len: 512, Write: true}); st != StatusIOErr || n != 1 {
		t.Errorf("failed read: status %d len %d", st, n)
	}
	if st, _ := e.do(TypeIn, 0, vbuf{Addr: dataArea, Len: 512, Write: true}); st != StatusOK {
		t.Errorf("read after the failure: status %d", st)
	}
	if s := e.dev.Stats(); s.BackendErrors != 1 || s.Reads != 1 {
		t.Errorf("stats %+v", s)
	}
	if e.stops.count() != 0 || e.dev.Paused() {
		t.Error("report stopped the device")
	}
}

func TestPolicyIgnore(t *testing.T) {
	disk := newDisk(1 << 20)
	var mu sync.Mutex
	var seen []Op
	e := newEnv(t, disk, func(c *Config) {
		c.Policy = func(op Op, err error) Action {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, op)
			if !errors.Is(err, syscall.ENOSPC) {
				t.Errorf("policy got %v, want ENOSPC in the chain", err)
			}
			return ActionIgnore
		}
	})
	e.up(layout())
	disk.failNext(OpWrite, 1, syscall.ENOSPC)
	if st, _ := e.do(TypeOut, 0, vbuf{Addr: dataArea, Len: 512}); st != StatusOK {
		t.Errorf("ignored write failure: status %d", st)
	}
	disk.failNext(OpFlush, 1, syscall.ENOSPC)
	if st, _ := e.do(TypeFlush, 0); st != StatusOK {
		t.Errorf("ignored flush failure: status %d", st)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 || seen[0] != OpWrite || seen[1] != OpFlush {
		t.Errorf("policy saw %v", seen)
	}
}

func TestPolicyUnknownActionReports(t *testing.T) {
	disk := newDisk(1 << 20)
	e := newEnv(t, disk, policyOf(Action(99)))
	e.up(layout())
	disk.failNext(OpFlush, 1, syscall.EIO)
	if st, _ := e.do(TypeFlush, 0); st != StatusIOErr {
		t.Errorf("status %d", st)
	}
}

// TestPolicyStop: the failed request stays pending, the device stops
// taking requests and tells the machine; Resume retries the request first
// and then takes the ones that queued up.
func TestPolicyStop(t *testing.T) {
	disk := newDisk(1 << 20)
	e := newEnv(t, disk, policyOf(ActionStop))
	e.up(layout())
	want := pattern(1024, 7)
	e.write(dataArea, want)
	disk.failNext(OpWrite, -1, syscall.EIO)
	_, st1 := e.request(TypeOut, 8, vbuf{Addr: dataArea, Len: 1024})
	eventually(t, "OnStop", func() bool { return e.stops.count() == 1 })
	e.stops.mu.Lock()
	op, err := e.stops.ops[0], e.stops.errs[0]
	e.stops.mu.Unlock()
	if op != OpWrite || !errors.Is(err, syscall.EIO) {
		t.Errorf("OnStop(%v, %v)", op, err)
	}
	if !e.dev.Paused() || e.dev.Pending() != 1 {
		t.Errorf("paused %v pending %d", e.dev.Paused(), e.dev.Pending())
	}
	if e.statusAt(st1) != 0xff || e.drv.UsedIdx() != 0 {
		t.Fatal("stopped request completed")
	}
	// The machine pauses the VM; nothing is in flight, so Pause returns.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := e.dev.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	// A request queued meanwhile is not taken.
	_, st2 := e.request(TypeFlush, 0)
	time.Sleep(20 * time.Millisecond)
	if e.statusAt(st2) != 0xff || len(disk.callLog()) != 1 {
		t.Fatalf("request taken while stopped (calls %v)", disk.callLog())
	}
	// Storage comes back; cont resumes.
	disk.failNext(OpWrite, 0, nil)
	e.dev.Resume()
	e.wait(2)
	if e.statusAt(st1) != StatusOK || e.statusAt(st2) != StatusOK {
		t.Errorf("statuses %d, %d", e.statusAt(st1), e.statusAt(st2))
	}
	// The retry and the queued flush run concurrently, in either order.
	if calls := disk.callLog(); len(calls) != 3 || calls[1].op == calls[2].op {
		t.Errorf("backend calls %v, want write, then the retried write and the flush", calls)
	}
	if !bytes.Equal(disk.bytes(8*512, 1024), want) {
		t.Error("retried write lost")
	}
	if e.dev.Paused() || e.dev.Pending() != 0 {
		t.Error("still stopped after Resume")
	}
}

// TestPolicyStopRetryFailsAgain: a retry that fails again stops again.
func TestPolicyStopRetryFailsAgain(t *testing.T) {
	disk := newDisk(1 << 20)
	e := newEnv(t, disk, policyOf(ActionStop))
	e.up(layout())
	disk.failNext(OpRead, -1, syscall.EIO)
	e.request(TypeIn, 0, vbuf{Addr: dataArea, Len: 512, Write: true})
	eventually(t, "first stop", func() bool { return e.stops.count() == 1 })
	e.dev.Resume()
	eventually(t, "second stop", func() bool { return e.stops.count() == 2 })
	if e.dev.Pending() != 1 || e.drv.UsedIdx() != 0 {
		t.Errorf("pending %d used %d", e.dev.Pending(), e.drv.UsedIdx())
	}
}

// TestStopThenReset: a guest reset drops stopped requests.
func TestStopThenReset(t *testing.T) {
	disk := newDisk(1 << 20)
	e := newEnv(t, disk, policyOf(ActionStop))
	e.up(layout())
	disk.failNext(OpFlush, 1, syscall.EIO)
	e.request(TypeFlush, 0)
	eventually(t, "stop", func() bool { return e.stops.count() == 1 })
	e.dev.Transport().Reset()
	if e.dev.Pending() != 0 {
		t.Error("stopped request survived reset")
	}
	e.dev.Resume()
	e.up(layout())
	if st, _ := e.do(TypeFlush, 0); st != StatusOK {
		t.Errorf("flush after reset: %d", st)
	}
}

// TestStopAfterResetDropped: a request that fails after the guest reset
// the device is dropped without stopping the VM.
func TestStopAfterResetDropped(t *testing.T) {
	disk := newDisk(1 << 20)
	e := newEnv(t, disk, policyOf(ActionStop))
	e.up(layout())
	disk.hold()
	disk.failNext(OpFlush, 1, syscall.EIO)
	e.request(TypeFlush, 0)
	waitStarted(t, disk, 1)
	e.drv.Write32(0x070, 0)
	disk.release()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.dev.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	if e.stops.count() != 0 || e.dev.Pending() != 0 {
		t.Errorf("stale failure stopped the device: stops %d pending %d", e.stops.count(), e.dev.Pending())
	}
}

// shortDisk returns one byte less than asked, without an error.
type shortDisk struct{ *fakeDisk }

func (s shortDisk) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	n, err := s.fakeDisk.ReadAt(ctx, p, off)
	return n - 1, err
}

func TestShortReadIsAnError(t *testing.T) {
	disk := newDisk(1 << 20)
	var got error
	var mu sync.Mutex
	mem := newEnv(t, disk).mem
	e := newEnvMem(t, mem, disk, func(c *Config) {
		c.Backend = shortDisk{disk}
		c.Policy = func(op Op, err error) Action {
			mu.Lock()
			defer mu.Unlock()
			got = err
			return ActionReport
		}
	})
	e.up(layout())
	if st, n := e.do(TypeIn, 0, vbuf{Addr: dataArea, Len: 512, Write: true}); st != StatusIOErr || n != 1 {
		t.Errorf("short read: status %d len %d", st, n)
	}
	mu.Lock()
	defer mu.Unlock()
	if !errors.Is(got, io.ErrUnexpectedEOF) {
		t.Errorf("policy saw %v", got)
	}
}

func TestActionString(t *testing.T) {
	for a, want := range map[Action]string{ActionReport: "report", ActionIgnore: "ignore", ActionStop: "stop", Action(7): "unknown"} {
		if a.String() != want {
			t.Errorf("%d.String() = %q", a, a.String())
		}
	}
}
