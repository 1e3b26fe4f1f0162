package kvm

import (
	"encoding/binary"
	"errors"
	"sync"
	"testing"
)

// fakeVCPU is a VCPU over a plain buffer standing in for kvm_run, with no
// descriptor: enough for the accessors, which never make a syscall.
func fakeVCPU(reason ExitReason) *VCPU {
	c := &VCPU{id: 3, run: make([]byte, 4096)}
	c.fd.fd = -1
	binary.LittleEndian.PutUint32(c.run[runExitReason:], uint32(reason))
	return c
}

func setIO(run []byte, dir, size uint8, port uint16, count uint32, off uint64) {
	run[runIODirection] = dir
	run[runIOSize] = size
	binary.LittleEndian.PutUint16(run[runIOPort:], port)
	binary.LittleEndian.PutUint32(run[runIOCount:], count)
	binary.LittleEndian.PutUint64(run[runIODataOffset:], off)
}

func TestIOExitBounds(t *testing.T) {
	c := fakeVCPU(ExitIO)
	setIO(c.run, 0, 4, 0x1f0, 3, 0x800)
	e, err := c.IO()
	if err != nil {
		t.Fatalf("IO: %v", err)
	}
	if e.Out || e.Size != 4 || e.Port != 0x1f0 || e.Count != 3 || len(e.Data) != 12 || cap(e.Data) != 12 {
		t.Fatalf("IO = %+v (len %d cap %d)", e, len(e.Data), cap(e.Data))
	}
	e.Data[0] = 0x99
	if c.run[0x800] != 0x99 {
		t.Error("IO Data does not alias kvm_run")
	}

	for _, bad := range []struct {
		name  string
		size  uint8
		count uint32
		off   uint64
	}{
		{"past end", 1, 1, 4096},
		{"straddles end", 4, 2, 4092},
		{"huge count", 4, 0xffffffff, 0x800},
		{"huge offset", 1, 1, 1<<64 - 1},
		{"offset wraps", 2, 2, 1<<64 - 2},
		{"size 3", 3, 1, 0x800},
		{"size 0", 0, 1, 0x800},
	} {
		setIO(c.run, 1, bad.size, 0x3f8, bad.count, bad.off)
		if e, err := c.IO(); err == nil {
			t.Errorf("%s: IO accepted %+v", bad.name, e)
		}
	}
	setIO(c.run, 1, 1, 0x3f8, 1, 4095)
	if e, err := c.IO(); err != nil || len(e.Data) != 1 || !e.Out {
		t.Errorf("last byte of the mapping: %+v, %v", e, err)
	}

	h := fakeVCPU(ExitHLT)
	if _, err := h.IO(); err == nil {
		t.Error("IO after a HLT exit did not fail")
	}
}

func TestMMIOExit(t *testing.T) {
	c := fakeVCPU(ExitMMIO)
	binary.LittleEndian.PutUint64(c.run[runMMIOPhysAddr:], 0xd0000000)
	binary.LittleEndian.PutUint32(c.run[runMMIOLen:], 4)
	c.run[runMMIOIsWrite] = 1
	copy(c.run[runMMIOData:], []byte{1, 2, 3, 4, 5, 6, 7, 8})
	e, err := c.MMIO()
	if err != nil {
		t.Fatalf("MMIO: %v", err)
	}
	if e.Addr != 0xd0000000 || !e.Write || string(e.Data) != "\x01\x02\x03\x04" || cap(e.Data) != 4 {
		t.Fatalf("MMIO = %+v", e)
	}
	e.Data[3] = 0xee
	if c.run[runMMIOData+3] != 0xee {
		t.Error("MMIO Data does not alias kvm_run")
	}
	for _, n := range []uint32{0, 9, 1 << 31} {
		binary.LittleEndian.PutUint32(c.run[runMMIOLen:], n)
		if _, err := c.MMIO(); err == nil {
			t.Errorf("MMIO accepted length %d", n)
		}
	}
}

func TestEventAccessors(t *testing.T) {
	c := fakeVCPU(ExitSystemEvent)
	binary.LittleEndian.PutUint32(c.run[runEventType:], SystemEventReset)
	binary.LittleEndian.PutUint32(c.run[runEventNData:], 1000)
	binary.LittleEndian.PutUint64(c.run[runEventData:], 42)
	typ, data := c.SystemEvent()
	if typ != SystemEventReset || len(data) != runMaxData || data[0] != 42 {
		t.Errorf("SystemEvent = %d, %v; want reset with 16 words starting 42", typ, data)
	}
	if s, d := c.InternalError(); s != 0 || d != nil {
		t.Errorf("InternalError after a system event = %d, %v", s, d)
	}

	c = fakeVCPU(ExitInternalError)
	binary.LittleEndian.PutUint32(c.run[runInternalSuberror:], InternalErrorEmulation)
	binary.LittleEndian.PutUint32(c.run[runInternalNData:], 2)
	binary.LittleEndian.PutUint64(c.run[runInternalData+8:], 7)
	if s, d := c.InternalError(); s != InternalErrorEmulation || len(d) != 2 || d[1] != 7 {
		t.Errorf("InternalError = %d, %v", s, d)
	}

	c = fakeVCPU(ExitFailEntry)
	binary.LittleEndian.PutUint64(c.run[runFailEntryReason:], 0x80000021)
	binary.LittleEndian.PutUint32(c.run[runFailEntryCPU:], 5)
	if r, cpu := c.FailEntry(); r != 0x80000021 || cpu != 5 {
		t.Errorf("FailEntry = %#x, %d", r, cpu)
	}
}

func TestRunFlagsConcurrent(t *testing.T) {
	c := fakeVCPU(ExitHLT)
	c.run[2] = 0x77 // padding byte must survive
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for j := 0; j < 1000; j++ {
				c.SetImmediateExit(j%2 == 0)
			}
			c.SetImmediateExit(true)
		}()
		go func() {
			defer wg.Done()
			for j := 0; j < 1000; j++ {
				c.SetRequestInterruptWindow(j%2 == 1)
			}
			c.SetRequestInterruptWindow(false)
		}()
	}
	wg.Wait()
	if c.run[runImmediateExit] != 1 || c.run[runRequestInterruptWindow] != 0 || c.run[2] != 0x77 {
		t.Errorf("first word after concurrent sets: % x", c.run[:4])
	}
}

func TestClosedVCPU(t *testing.T) {
	c := fakeVCPU(ExitIO)
	c.fd.closed = true
	if _, err := c.IO(); !errors.Is(err, ErrClosed) {
		t.Errorf("IO on a closed vCPU: %v", err)
	}
	if _, err := c.GetRegs(); !errors.Is(err, ErrClosed) {
		t.Errorf("GetRegs on a closed vCPU: %v", err)
	}
	c.SetImmediateExit(true)
	if c.run[runImmediateExit] != 0 {
		t.Error("SetImmediateExit wrote to a closed vCPU")
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestCPUIDMarshal(t *testing.T) {
	in := []CPUIDEntry{
		{Function: 0, EAX: 0xd, EBX: 0x68747541},
		{Function: 7, Index: 0, Flags: CPUIDFlagSignificantIndex, EBX: 1},
		{Function: 7, Index: 1, Flags: CPUIDFlagSignificantIndex, EAX: 2, Padding: [3]uint32{9, 8, 7}},
	}
	buf := marshalCPUID2(len(in), in)
	if len(buf) != 8+3*40 || binary.LittleEndian.Uint32(buf) != 3 {
		t.Fatalf("marshalled %d bytes, nent %d", len(buf), binary.LittleEndian.Uint32(buf))
	}
	if got := binary.LittleEndian.Uint32(buf[8+40+4*4:]); got != 1 { // entry 1 EBX
		t.Errorf("entry 1 EBX at offset 16 = %d", got)
	}
	out, err := unmarshalCPUID2(buf)
	if err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	if len(out.Entries) != 3 || out.Entries[2] != in[2] {
		t.Fatalf("round trip: %+v", out.Entries)
	}
	if e := out.Find(7, 1); e == nil || e.EAX != 2 {
		t.Errorf("Find(7, 1) = %+v", e)
	}
	if e := out.Find(0, 5); e == nil || e.EAX != 0xd {
		t.Errorf("Find(0, 5) ignoring an insignificant index = %+v", e)
	}
	if e := out.Find(7, 2); e != nil {
		t.Errorf("Find(7, 2) = %+v, want nil", e)
	}
	out.Find(7, 0).EBX = 99
	if out.Entries[1].EBX != 99 {
		t.Error("Find does not alias Entries")
	}
	if cl := out.Clone(); &cl.Entries[0] == &out.Entries[0] {
		t.Error("Clone shares entries")
	}
	binary.LittleEndian.PutUint32(buf, 4)
	if _, err := unmarshalCPUID2(buf); err == nil {
		t.Error("unmarshal accepted nent larger than the buffer")
	}
	if _, err := unmarshalCPUID2(buf[:4]); err == nil {
		t.Error("unmarshal accepted a 4-byte buffer")
	}
	var nilID *CPUID
	if nilID.Find(0, 0) != nil {
		t.Error("Find on nil CPUID")
	}
}

func TestVMInputChecks(t *testing.T) {
	v := &VM{}
	v.fd.fd = -1
	for _, r := range []UserMemoryRegion{
		{GuestPhysAddr: 0x1001, MemorySize: 4096, UserspaceAddr: 0x10000},
		{GuestPhysAddr: 0x1000, MemorySize: 100, UserspaceAddr: 0x10000},
		{GuestPhysAddr: 0x1000, MemorySize: 4096, UserspaceAddr: 0x10008},
		{GuestPhysAddr: 0x1000, MemorySize: 4096, UserspaceAddr: 0x10000, Flags: 4},
	} {
		if err := v.SetUserMemoryRegion(r); err == nil {
			t.Errorf("SetUserMemoryRegion accepted %+v", r)
		}
	}
	v.slotPages = map[uint32]uint64{1: 200}
	if err := v.GetDirtyLog(1, make([]uint64, 3)); err == nil {
		t.Error("GetDirtyLog accepted 3 words for 200 pages")
	}
	if err := v.GetDirtyLog(2, make([]uint64, 4)); err == nil {
		t.Error("GetDirtyLog accepted an unknown slot")
	}
	if got := DirtyBitmapWords(200 * 4096); got != 4 {
		t.Errorf("DirtyBitmapWords(200 pages) = %d, want 4", got)
	}
	if _, err := v.CreateVCPU(0, 100); err == nil {
		t.Error("CreateVCPU accepted a 100-byte mapping")
	}
	if _, err := v.CreateVCPU(-1, 8192); err == nil {
		t.Error("CreateVCPU accepted id -1")
	}
	if err := v.IOEventFD(IOEvent{Addr: 0x3f8, Len: 16, FD: 3}); err == nil {
		t.Error("IOEventFD accepted length 16")
	}
	if err := v.IRQFD(-1, 4, 0); err == nil {
		t.Error("IRQFD accepted fd -1")
	}
}
