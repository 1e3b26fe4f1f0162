package migrate

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/vmmd/vmmd/pkg/machine"
)

// rewrite has the fake guest keep changing one byte in each of pages
// pages until stop closes: the pattern page deltas are for.
func rewrite(vm *fakeVM, pages uint64, stop <-chan struct{}) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := uint64(0); ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if vm.State().Running() {
				vm.touch((i%pages)*pageSize, byte(i/pages)|1)
			}
			if i%64 == 0 {
				time.Sleep(20 * time.Microsecond)
			}
		}
	}()
	return done
}

// migrateRewriting migrates src to dst while the guest rewrites pages,
// and returns both sides' final query-migrate once both completed.
func migrateRewriting(t *testing.T, src, dst side, uri string, pages uint64) (Info, Info) {
	t.Helper()
	fill(src.vm)
	stop := make(chan struct{})
	done := rewrite(src.vm, pages, stop)
	if err := src.mig.Migrate(context.Background(), uri); err != nil {
		t.Fatal(err)
	}
	in := wait(t, src.mig)
	close(stop)
	<-done
	if in.Status != StatusCompleted {
		t.Fatalf("source: %s %q", in.Status, in.ErrorDesc)
	}
	out := wait(t, dst.mig)
	if out.Status != StatusCompleted || out.ErrorDesc != "" {
		t.Fatalf("destination: %s %q", out.Status, out.ErrorDesc)
	}
	sameRAM(t, src.vm, dst.vm)
	return in, out
}

func TestMigrateDeltas(t *testing.T) {
	for _, on := range []bool{true, false} {
		name := map[bool]string{true: "xbzrle on (default)", false: "xbzrle off"}[on]
		t.Run(name, func(t *testing.T) {
			src, dst, uri := pair(t, "disk0")
			if !on {
				if err := src.mig.SetCapabilities([]Capability{{Capability: "xbzrle", State: false}}); err != nil {
					t.Fatal(err)
				}
			}
			in, out := migrateRewriting(t, src, dst, uri, 2048)
			wantState(t, "destination", dst.vm, machine.StateRunning)
			if !on {
				if in.XBZRLECache != nil {
					t.Errorf("xbzrle off, but query-migrate has xbzrle-cache %+v", *in.XBZRLECache)
				}
				return
			}
			x, y := in.XBZRLECache, out.XBZRLECache
			if x == nil || y == nil {
				t.Fatalf("xbzrle-cache missing: source %v destination %v", x, y)
			}
			t.Logf("source %+v, passes %d", *x, in.RAM.DirtySyncCount)
			if x.Pages == 0 || x.Pages != y.Pages || x.Bytes != y.Bytes {
				t.Errorf("deltas: source sent %d pages in %d bytes, destination applied %d in %d", x.Pages, x.Bytes, y.Pages, y.Bytes)
			}
			if x.CacheSize != defaultCacheSize(testRAM) {
				t.Errorf("cache-size %d, want %d", x.CacheSize, defaultCacheSize(testRAM))
			}
			// A delta of one changed byte costs its address word, length,
			// one run header and one word.
			if x.Bytes > x.Pages*24 {
				t.Errorf("%d delta pages took %d bytes: more than 24 a page", x.Pages, x.Bytes)
			}
		})
	}
}

// A cache too small for the pages being rewritten sends the rest whole and
// says so; the guest still arrives intact.
func TestMigrateDeltasSmallCache(t *testing.T) {
	src, dst, uri := pair(t, "disk0")
	if err := src.mig.SetParameters(func(p *Parameters) { p.XBZRLECacheSize = 100 * pageSize }); err != nil {
		t.Fatal(err)
	}
	in, _ := migrateRewriting(t, src, dst, uri, 1024)
	x := in.XBZRLECache
	if x == nil || x.CacheMiss == 0 || x.CacheMissRate <= 0 {
		t.Errorf("a 100-page cache for 1024 rewritten pages reports no misses: %+v", x)
	}
}

func TestCacheSizeParameter(t *testing.T) {
	src, _, _ := pair(t)
	for _, bad := range []uint64{4097, 65 << 30} {
		if err := src.mig.SetParameters(func(p *Parameters) { p.XBZRLECacheSize = bad }); err == nil {
			t.Errorf("xbzrle-cache-size %d accepted", bad)
		}
	}
	for ram, want := range map[uint64]uint64{32 << 20: 32 << 20, 256 << 20: 64 << 20, 1 << 30: 256 << 20, 16 << 30: 1 << 30} {
		if got := defaultCacheSize(ram); got != want {
			t.Errorf("default cache for %d MiB: %d MiB, want %d MiB", ram>>20, got>>20, want>>20)
		}
	}
}

// A destination skips zero pages no stream has written (its RAM starts
// zero), but a page a failed earlier attempt wrote must be cleared when
// the retry sends it as zero.
func TestIncomingRetryClearsPagesOfFailedAttempt(t *testing.T) {
	dvm := newFakeVM(testRAM, machine.StateInMigrate)
	dst := newSide(t, dvm, true)
	dvm.failLoad = errors.New("injected load failure")
	uri := "unix:" + filepath.Join(sockDir(t), "m.sock")
	first := newSide(t, newFakeVM(testRAM, machine.StatePaused), false)
	fill(first.vm)
	if err := dst.mig.Incoming(context.Background(), uri); err != nil {
		t.Fatal(err)
	}
	if err := first.mig.Migrate(context.Background(), uri); err != nil {
		t.Fatal(err)
	}
	if in := wait(t, first.mig); in.Status != StatusFailed {
		t.Fatalf("first attempt: %s, want failed", in.Status)
	}
	if out := wait(t, dst.mig); out.Status != StatusFailed {
		t.Fatalf("destination after the first attempt: %s", out.Status)
	}
	dvm.mu.Lock()
	dvm.failLoad = nil
	dvm.mu.Unlock()
	// The second source's RAM is all zero but for one page.
	second := newSide(t, newFakeVM(testRAM, machine.StatePaused), false)
	second.vm.touch(5*pageSize, 7)
	if err := dst.mig.Incoming(context.Background(), uri); err != nil {
		t.Fatal(err)
	}
	if err := second.mig.Migrate(context.Background(), uri); err != nil {
		t.Fatal(err)
	}
	if in := wait(t, second.mig); in.Status != StatusCompleted {
		t.Fatalf("retry: %s %q", in.Status, in.ErrorDesc)
	}
	wait(t, dst.mig)
	sameRAM(t, second.vm, dvm)
}
