package kvm_test

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmmd/vmmd/internal/kvmtest"
	"github.com/vmmd/vmmd/pkg/kvm"
)

// openSystem opens /dev/kvm or skips (see kvmtest.Require).
func openSystem(t *testing.T) *kvm.System {
	t.Helper()
	kvmtest.Require(t)
	s, err := kvm.Open(kvm.DefaultPath)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("System.Close: %v", err)
		}
	})
	return s
}

// guestMem maps n bytes of anonymous memory for a memory slot.
func guestMem(t *testing.T, n int) []byte {
	t.Helper()
	mem, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		t.Fatalf("mmap guest memory: %v", err)
	}
	t.Cleanup(func() { _ = unix.Munmap(mem) })
	return mem
}

func newVM(t *testing.T, s *kvm.System) *kvm.VM {
	t.Helper()
	vm, err := s.CreateVM()
	if err != nil {
		t.Fatalf("CreateVM: %v", err)
	}
	t.Cleanup(func() {
		if err := vm.Close(); err != nil {
			t.Errorf("VM.Close: %v", err)
		}
	})
	return vm
}

func newVCPU(t *testing.T, s *kvm.System, vm *kvm.VM, id int) *kvm.VCPU {
	t.Helper()
	size, err := s.VCPUMmapSize()
	if err != nil {
		t.Fatalf("VCPUMmapSize: %v", err)
	}
	c, err := vm.CreateVCPU(id, size)
	if err != nil {
		t.Fatalf("CreateVCPU: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("VCPU.Close: %v", err)
		}
	})
	cpuid, err := s.SupportedCPUID()
	if err != nil {
		t.Fatalf("SupportedCPUID: %v", err)
	}
	if err := c.SetCPUID2(cpuid); err != nil {
		t.Fatalf("SetCPUID2: %v", err)
	}
	return c
}

func TestOpenMissing(t *testing.T) {
	_, err := kvm.Open("/nonexistent/kvm")
	if !errors.Is(err, unix.ENOENT) {
		t.Fatalf("Open of a missing path: got %v, want ENOENT", err)
	}
	if want := "KVM device missing"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
}

func TestSystem(t *testing.T) {
	s := openSystem(t)
	v, err := s.APIVersion()
	if err != nil || v != 12 {
		t.Fatalf("APIVersion = %d, %v; want 12", v, err)
	}
	for _, c := range []kvm.Cap{kvm.CapUserMemory, kvm.CapIRQChip, kvm.CapNrVCPUs, kvm.CapMaxVCPUs} {
		n, err := s.CheckExtension(c)
		if err != nil {
			t.Fatalf("CheckExtension(%v): %v", c, err)
		}
		if n <= 0 {
			t.Errorf("CheckExtension(%v) = %d, want > 0", c, n)
		}
	}
	size, err := s.VCPUMmapSize()
	if err != nil || size < 4096 {
		t.Fatalf("VCPUMmapSize = %d, %v", size, err)
	}
	cpuid, err := s.SupportedCPUID()
	if err != nil {
		t.Fatalf("SupportedCPUID: %v", err)
	}
	if len(cpuid.Entries) == 0 {
		t.Fatal("SupportedCPUID returned no entries")
	}
	if e := cpuid.Find(0, 0); e == nil || e.EAX == 0 {
		t.Errorf("CPUID leaf 0 missing or max leaf 0: %+v", e)
	}
	if cpuid.Find(0xdeadbeef, 0) != nil {
		t.Error("Find of an absent leaf returned an entry")
	}
	msrs, err := s.MSRIndexList()
	if err != nil {
		t.Fatalf("MSRIndexList: %v", err)
	}
	if len(msrs) == 0 {
		t.Error("MSRIndexList is empty")
	}
	t.Logf("vcpu mmap size %d, %d CPUID entries, %d MSRs", size, len(cpuid.Entries), len(msrs))
}

func TestCloseIdempotent(t *testing.T) {
	s := openSystem(t)
	vm, err := s.CreateVM()
	if err != nil {
		t.Fatalf("CreateVM: %v", err)
	}
	c := newVCPU(t, s, vm, 0)
	for i := 0; i < 2; i++ {
		if err := c.Close(); err != nil {
			t.Fatalf("VCPU.Close #%d: %v", i, err)
		}
		if err := vm.Close(); err != nil {
			t.Fatalf("VM.Close #%d: %v", i, err)
		}
	}
	if _, err := c.Run(); !errors.Is(err, kvm.ErrClosed) {
		t.Errorf("Run after Close: %v, want ErrClosed", err)
	}
	if _, err := c.GetRegs(); !errors.Is(err, kvm.ErrClosed) {
		t.Errorf("GetRegs after Close: %v, want ErrClosed", err)
	}
	if err := vm.CreateIRQChip(); !errors.Is(err, kvm.ErrClosed) {
		t.Errorf("CreateIRQChip after Close: %v, want ErrClosed", err)
	}
	c.SetImmediateExit(true) // must not fault on the unmapped page
	if c.FD() != -1 || vm.FD() != -1 {
		t.Errorf("FD after Close = %d, %d; want -1", c.FD(), vm.FD())
	}
}

// realModeProgram writes 'A' to port 0x3f8, stores 0x55 at 0x3000 and halts:
//
//	mov $0x3f8, %dx ; mov $'A', %al ; out %al, (%dx) ; movb $0x55, 0x3000 ; hlt
var realModeProgram = []byte{0xba, 0xf8, 0x03, 0xb0, 'A', 0xee, 0xc6, 0x06, 0x00, 0x30, 0x55, 0xf4}

// realModeVCPU sets up the program at 0x1000 (slot 0) and two dirty-logged
// data pages at 0x2000 (slot 1), and points a vCPU at it.
func realModeVCPU(t *testing.T, s *kvm.System, vm *kvm.VM) (*kvm.VCPU, []byte) {
	t.Helper()
	code := guestMem(t, 4096)
	copy(code, realModeProgram)
	data := guestMem(t, 2*4096)
	if err := vm.SetUserMemoryRegion(kvm.UserMemoryRegion{Slot: 0, GuestPhysAddr: 0x1000, MemorySize: 4096, UserspaceAddr: kvm.HostAddr(code)}); err != nil {
		t.Fatalf("SetUserMemoryRegion code: %v", err)
	}
	if err := vm.SetUserMemoryRegion(kvm.UserMemoryRegion{Slot: 1, Flags: kvm.MemLogDirtyPages, GuestPhysAddr: 0x2000, MemorySize: 2 * 4096, UserspaceAddr: kvm.HostAddr(data)}); err != nil {
		t.Fatalf("SetUserMemoryRegion data: %v", err)
	}
	c := newVCPU(t, s, vm, 0)
	sregs, err := c.GetSregs()
	if err != nil {
		t.Fatalf("GetSregs: %v", err)
	}
	sregs.CS.Base, sregs.CS.Selector = 0, 0
	sregs.DS.Base, sregs.DS.Selector = 0, 0
	if err := c.SetSregs(sregs); err != nil {
		t.Fatalf("SetSregs: %v", err)
	}
	if err := c.SetRegs(kvm.Regs{RIP: 0x1000, RFLAGS: 2}); err != nil {
		t.Fatalf("SetRegs: %v", err)
	}
	return c, data
}

// runUntil runs the vCPU, skipping ExitIntr, and returns the first other exit.
func runUntil(t *testing.T, c *kvm.VCPU) kvm.ExitReason {
	t.Helper()
	for i := 0; i < 100; i++ {
		r, err := c.Run()
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		if r != kvm.ExitIntr {
			return r
		}
	}
	t.Fatal("Run: 100 ExitIntr in a row")
	return 0
}

func TestRealModeIOAndHLT(t *testing.T) {
	s := openSystem(t)
	vm := newVM(t, s)
	c, data := realModeVCPU(t, s, vm)

	// Clear the log: pages are reported dirty from slot creation on some
	// kernels.
	bitmap := make([]uint64, kvm.DirtyBitmapWords(2*4096))
	if err := vm.GetDirtyLog(1, bitmap); err != nil {
		t.Fatalf("GetDirtyLog before run: %v", err)
	}

	r := runUntil(t, c)
	if r != kvm.ExitIO {
		t.Fatalf("first exit %v, want IO (internal error data: %v)", r, func() []uint64 { _, d := c.InternalError(); return d }())
	}
	io, err := c.IO()
	if err != nil {
		t.Fatalf("IO: %v", err)
	}
	if !io.Out || io.Port != 0x3f8 || io.Size != 1 || io.Count != 1 || !bytes.Equal(io.Data, []byte{'A'}) {
		t.Fatalf("IO exit %+v, want out of 'A' to 0x3f8", io)
	}
	if _, err := c.MMIO(); err == nil {
		t.Error("MMIO() after an IO exit did not fail")
	}
	if r := runUntil(t, c); r != kvm.ExitHLT {
		t.Fatalf("second exit %v, want HLT", r)
	}
	if data[0x1000] != 0x55 {
		t.Errorf("guest store missing: data page 1 byte 0 = %#x", data[0x1000])
	}
	regs, err := c.GetRegs()
	if err != nil {
		t.Fatalf("GetRegs: %v", err)
	}
	if regs.RIP != 0x1000+uint64(len(realModeProgram)) || regs.RAX&0xff != 'A' || regs.RDX&0xffff != 0x3f8 {
		t.Errorf("regs after HLT: RIP %#x RAX %#x RDX %#x", regs.RIP, regs.RAX, regs.RDX)
	}

	if err := vm.GetDirtyLog(1, bitmap); err != nil {
		t.Fatalf("GetDirtyLog: %v", err)
	}
	if bitmap[0]&2 == 0 {
		t.Errorf("dirty bitmap %#x: page 1 (written by the guest) not dirty", bitmap[0])
	}
	if bitmap[0]&1 != 0 {
		t.Errorf("dirty bitmap %#x: page 0 (untouched) dirty", bitmap[0])
	}
	if err := vm.GetDirtyLog(1, nil); err == nil {
		t.Error("GetDirtyLog with an empty bitmap did not fail")
	}
	if err := vm.GetDirtyLog(7, bitmap); err == nil {
		t.Error("GetDirtyLog of an unknown slot did not fail")
	}
}

func TestImmediateExit(t *testing.T) {
	s := openSystem(t)
	if n, _ := s.CheckExtension(kvm.CapImmediateExit); n == 0 {
		t.Skip("no KVM_CAP_IMMEDIATE_EXIT")
	}
	vm := newVM(t, s)
	c, _ := realModeVCPU(t, s, vm)
	c.SetImmediateExit(true)
	r, err := c.Run()
	if err != nil || r != kvm.ExitIntr {
		t.Fatalf("Run with immediate_exit: %v, %v; want INTR", r, err)
	}
	c.SetImmediateExit(false)
	if r := runUntil(t, c); r != kvm.ExitIO {
		t.Fatalf("Run after clearing immediate_exit: %v, want IO", r)
	}
}

// TestKick stops a vCPU spinning in an endless loop from another goroutine.
func TestKick(t *testing.T) {
	s := openSystem(t)
	vm := newVM(t, s)
	code := guestMem(t, 4096)
	copy(code, []byte{0xeb, 0xfe}) // jmp .
	if err := vm.SetUserMemoryRegion(kvm.UserMemoryRegion{GuestPhysAddr: 0x1000, MemorySize: 4096, UserspaceAddr: kvm.HostAddr(code)}); err != nil {
		t.Fatalf("SetUserMemoryRegion: %v", err)
	}
	c := newVCPU(t, s, vm, 0)
	sregs, err := c.GetSregs()
	if err != nil {
		t.Fatalf("GetSregs: %v", err)
	}
	sregs.CS.Base, sregs.CS.Selector = 0, 0
	if err := c.SetSregs(sregs); err != nil {
		t.Fatalf("SetSregs: %v", err)
	}
	if err := c.SetRegs(kvm.Regs{RIP: 0x1000, RFLAGS: 2}); err != nil {
		t.Fatalf("SetRegs: %v", err)
	}

	type result struct {
		r     kvm.ExitReason
		err   error
		spins int
	}
	var kicked atomic.Bool
	done := make(chan result, 1)
	started := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		close(started)
		var res result
		// Stray ExitIntr (runtime preemption signals) are possible, so
		// loop until the kick's immediate_exit is seen by KVM.
		for {
			res.r, res.err = c.Run()
			res.spins++
			if res.err != nil || res.r != kvm.ExitIntr {
				break
			}
			if regs, _ := c.GetRegs(); regs.RIP != 0x1000 {
				res.err = fmt.Errorf("RIP %#x", regs.RIP)
				break
			}
			if kicked.Load() {
				break
			}
		}
		done <- res
	}()
	<-started
	time.Sleep(100 * time.Millisecond)
	// The guest never exits by itself and a goroutine blocked in a
	// syscall gets no preemption signal, so only Kick's signal can end
	// the KVM_RUN in progress.
	if err := c.Kick(); err != nil {
		t.Fatalf("Kick: %v", err)
	}
	kicked.Store(true)
	select {
	case res := <-done:
		if res.err != nil || res.r != kvm.ExitIntr {
			t.Fatalf("Run after Kick: %v, %v; want INTR", res.r, res.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10 s of Kick")
	}
	c.SetImmediateExit(false)
}
