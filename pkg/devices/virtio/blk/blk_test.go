package blk

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/vmmd/vmmd/pkg/devices/virtio"
	"github.com/vmmd/vmmd/pkg/memory"
)

func TestConfigSpaceAndFeatures(t *testing.T) {
	disk := newDisk(1<<20 + 100) // the partial sector is not addressable
	e := newEnv(t, disk)
	if v := e.drv.Read32(virtio.RegDeviceID); v != DeviceID {
		t.Errorf("device ID %d", v)
	}
	e.drv.Write32(virtio.RegDeviceFeaturesSel, 0)
	f := e.drv.Read32(virtio.RegDeviceFeatures)
	want := uint32(FeatureSegMax | FeatureBlkSize | FeatureFlush | virtio.FeatureIndirectDesc | virtio.FeatureEventIdx)
	if f != want {
		t.Errorf("features %#x, want %#x", f, want)
	}
	capLo, capHi := e.drv.Read32(virtio.ConfigOffset), e.drv.Read32(virtio.ConfigOffset+4)
	if c := uint64(capHi)<<32 | uint64(capLo); c != 2048 {
		t.Errorf("capacity %d sectors, want 2048", c)
	}
	if v := e.drv.Read32(virtio.ConfigOffset + 0x0c); v != 254 {
		t.Errorf("seg_max %d", v)
	}
	if v := e.drv.Read32(virtio.ConfigOffset + 0x14); v != 512 {
		t.Errorf("blk_size %d", v)
	}
	var b [8]byte
	e.dev.MMIORead(testBase+virtio.ConfigOffset, b[:])
	if binary.LittleEndian.Uint64(b[:]) != 2048 {
		t.Errorf("8-byte capacity read %x", b)
	}
	e.dev.MMIORead(testBase+virtio.ConfigOffset+0x200, b[:])
	if b != [8]byte{} {
		t.Errorf("read past config space %x", b)
	}
	e.dev.MMIOWrite(testBase+virtio.ConfigOffset, []byte{1, 2, 3, 4})
	if e.dev.Capacity() != 2048 {
		t.Error("config write changed the capacity")
	}

	ro := newDisk(4096)
	ro.ro = true
	e2 := newEnv(t, ro)
	e2.drv.Write32(virtio.RegDeviceFeaturesSel, 0)
	if e2.drv.Read32(virtio.RegDeviceFeatures)&FeatureRO == 0 {
		t.Error("read-only backend without VIRTIO_BLK_F_RO")
	}
}

func TestReadWriteFlushGetID(t *testing.T) {
	disk := newDisk(1 << 20)
	e := newEnv(t, disk)
	e.up(layout())
	e.dirtyPages()

	data := pattern(8192, 1)
	e.write(dataArea, data)
	if st, n := e.do(TypeOut, 4, vbuf{Addr: dataArea, Len: 8192}); st != StatusOK || n != 1 {
		t.Fatalf("write: status %d used len %d", st, n)
	}
	if !bytes.Equal(disk.bytes(4*512, 8192), data) {
		t.Fatal("disk does not hold the written data")
	}

	const dst = dataArea + 0x100000
	if st, n := e.do(TypeIn, 4, vbuf{Addr: dst, Len: 8192, Write: true}); st != StatusOK || n != 8193 {
		t.Fatalf("read: status %d used len %d", st, n)
	}
	if !bytes.Equal(e.read(dst, 8192), data) {
		t.Fatal("read returned other data")
	}
	dirty := e.dirtyPages()
	for _, gpa := range []uint64{dst, dst + 4096, ringUsed} {
		if !dirty[gpa/memory.PageSize] {
			t.Errorf("page %#x written by the device but not marked dirty", gpa)
		}
	}
	if dirty[dataArea/memory.PageSize] {
		t.Error("page only read by the device marked dirty")
	}
	statusPages := 0
	for p := range dirty {
		if p == statusArea/memory.PageSize {
			statusPages++
		}
	}
	if statusPages != 1 {
		t.Error("status byte page not marked dirty")
	}

	if st, n := e.do(TypeFlush, 0); st != StatusOK || n != 1 {
		t.Fatalf("flush: status %d used len %d", st, n)
	}
	if n := disk.flushCount(); n != 1 {
		t.Errorf("%d backend flushes", n)
	}

	const idBuf = dataArea + 0x200000
	e.write(idBuf, bytes.Repeat([]byte{0xee}, IDLen))
	if st, n := e.do(TypeGetID, 0, vbuf{Addr: idBuf, Len: IDLen, Write: true}); st != StatusOK || n != IDLen+1 {
		t.Fatalf("get-id: status %d used len %d", st, n)
	}
	if got := e.read(idBuf, IDLen); string(got) != "drive0"+strings.Repeat("\x00", IDLen-6) {
		t.Errorf("id %q", got)
	}
	if !e.dirtyPages()[idBuf/memory.PageSize] {
		t.Error("id page not marked dirty")
	}

	s := e.dev.Stats()
	if s.Reads != 1 || s.Writes != 1 || s.Flushes != 1 || s.GetIDs != 1 || s.BytesRead != 8192 || s.BytesWritten != 8192 {
		t.Errorf("stats %+v", s)
	}
	if e.drv.Read32(virtio.RegInterruptStatus)&virtio.IntUsedBuffer == 0 {
		t.Error("no used-buffer interrupt")
	}
	e.mu.Lock()
	lines := append([]bool(nil), e.lines...)
	e.mu.Unlock()
	if len(lines) == 0 || !lines[0] {
		t.Errorf("IRQ line calls %v", lines)
	}
	if err := e.drv.Err(); err != nil {
		t.Fatal(err)
	}
}

// TestFraming checks that requests are parsed by byte position, not by
// descriptor: a split header, data and status sharing a descriptor, and
// an indirect chain.
func TestFraming(t *testing.T) {
	disk := newDisk(1 << 20)
	copy(disk.data[512:], pattern(512, 9))
	e := newEnv(t, disk)
	e.up(layout())

	hdr, _ := e.header(TypeIn, 1)
	const buf = dataArea
	e.drv.Post([]vbuf{{Addr: hdr, Len: 8}, {Addr: hdr + 8, Len: 8}, {Addr: buf, Len: 513, Write: true}})
	e.wait(1)
	if _, n := e.drv.Used(0); n != 513 {
		t.Errorf("used len %d", n)
	}
	got := e.read(buf, 513)
	if !bytes.Equal(got[:512], pattern(512, 9)) || got[512] != StatusOK {
		t.Errorf("split framing: status %d, data ok %v", got[512], bytes.Equal(got[:512], pattern(512, 9)))
	}

	hdr, status := e.header(TypeIn, 1)
	e.drv.Publish(e.drv.IndirectChain(0x30000, []vbuf{{Addr: hdr, Len: 16}, {Addr: buf + 0x1000, Len: 512, Write: true}, {Addr: status, Len: 1, Write: true}}))
	e.drv.Notify()
	e.wait(2)
	if e.statusAt(status) != StatusOK || !bytes.Equal(e.read(buf+0x1000, 512), pattern(512, 9)) {
		t.Error("indirect request failed")
	}
}

// TestScatterGather covers the bounce path and chunking: segments of odd
// sizes, and requests larger than one backend call.
func TestScatterGather(t *testing.T) {
	disk := newDisk(8 << 20)
	e := newEnv(t, disk)
	e.up(layout())

	segs := []vbuf{{Addr: dataArea, Len: 1000}, {Addr: dataArea + 0x10000, Len: 24}, {Addr: dataArea + 0x20000, Len: 2560}}
	want := pattern(3584, 3)
	off := 0
	for _, s := range segs {
		e.write(s.Addr, want[off:off+int(s.Len)])
		off += int(s.Len)
	}
	if st, _ := e.do(TypeOut, 10, segs...); st != StatusOK {
		t.Fatalf("gathered write status %d", st)
	}
	if !bytes.Equal(disk.bytes(10*512, len(want)), want) {
		t.Fatal("gathered write stored other data")
	}
	for i := range segs {
		segs[i].Addr += 0x100000
		segs[i].Write = true
	}
	if st, n := e.do(TypeIn, 10, segs...); st != StatusOK || n != uint32(len(want))+1 {
		t.Fatalf("scattered read status %d len %d", st, n)
	}
	off = 0
	for _, s := range segs {
		if !bytes.Equal(e.read(s.Addr, int(s.Len)), want[off:off+int(s.Len)]) {
			t.Errorf("segment at %#x holds other data", s.Addr)
		}
		off += int(s.Len)
	}

	// 3 MiB in one buffer, then in two buffers split off a chunk boundary.
	big := pattern(3<<20, 5)
	disk.put(1<<20, big)
	before := len(disk.callLog())
	if st, _ := e.do(TypeIn, 2048, vbuf{Addr: 0x800000, Len: 3 << 20, Write: true}); st != StatusOK {
		t.Fatal("large read failed")
	}
	if !bytes.Equal(e.read(0x800000, 3<<20), big) {
		t.Error("large read returned other data")
	}
	if st, _ := e.do(TypeIn, 2048, vbuf{Addr: 0x400000, Len: 3<<19 + 512, Write: true}, vbuf{Addr: 0xa00000, Len: 3<<19 - 512, Write: true}); st != StatusOK {
		t.Fatal("split large read failed")
	}
	if !bytes.Equal(append(e.read(0x400000, 3<<19+512), e.read(0xa00000, 3<<19-512)...), big) {
		t.Error("split large read returned other data")
	}
	for _, c := range disk.callLog()[before:] {
		if c.n > maxChunk || c.n%512 != 0 || c.off%512 != 0 {
			t.Errorf("backend call %+v: over 1 MiB or unaligned", c)
		}
	}
	if n := len(disk.callLog()) - before; n != 6 {
		t.Errorf("%d backend calls for two 3 MiB reads, want 6", n)
	}
}

func TestReadOnlyDevice(t *testing.T) {
	disk := newDisk(1 << 20)
	disk.ro = true
	e := newEnv(t, disk)
	e.up(layout())
	if st, _ := e.do(TypeOut, 0, vbuf{Addr: dataArea, Len: 512}); st != StatusIOErr {
		t.Errorf("write to read-only device: status %d", st)
	}
	if st, _ := e.do(TypeIn, 0, vbuf{Addr: dataArea, Len: 512, Write: true}); st != StatusOK {
		t.Errorf("read from read-only device: status %d", st)
	}
	for _, c := range disk.callLog() {
		if c.op == OpWrite {
			t.Error("backend written")
		}
	}
}

// TestBadRequests checks requests the device must refuse: an error status
// without touching the backend, or NEEDS_RESET when there is nowhere to
// put a status.
func TestBadRequests(t *testing.T) {
	const capacity = 2048
	cases := []struct {
		name   string
		post   func(e *env) uint64 // returns the status address, 0 if none
		status byte                // expected; 0xff: NEEDS_RESET
	}{
		{"unsupported type", func(e *env) uint64 {
			_, s := e.request(11, 0, vbuf{Addr: dataArea, Len: 512})
			return s
		}, StatusUnsupp},
		{"read past capacity", func(e *env) uint64 {
			_, s := e.request(TypeIn, capacity-1, vbuf{Addr: dataArea, Len: 1024, Write: true})
			return s
		}, StatusIOErr},
		{"sector far past capacity", func(e *env) uint64 {
			_, s := e.request(TypeOut, 1<<62, vbuf{Addr: dataArea, Len: 512})
			return s
		}, StatusIOErr},
		{"sector wraps", func(e *env) uint64 {
			_, s := e.request(TypeIn, ^uint64(0), vbuf{Addr: dataArea, Len: 512, Write: true})
			return s
		}, StatusIOErr},
		{"partial sector", func(e *env) uint64 {
			_, s := e.request(TypeIn, 0, vbuf{Addr: dataArea, Len: 100, Write: true})
			return s
		}, StatusIOErr},
		{"read with device-readable data", func(e *env) uint64 {
			_, s := e.request(TypeIn, 0, vbuf{Addr: dataArea, Len: 512})
			return s
		}, StatusIOErr},
		{"write with device-writable data", func(e *env) uint64 {
			_, s := e.request(TypeOut, 0, vbuf{Addr: dataArea, Len: 512, Write: true})
			return s
		}, StatusIOErr},
		{"flush with data", func(e *env) uint64 {
			_, s := e.request(TypeFlush, 0, vbuf{Addr: dataArea, Len: 512})
			return s
		}, StatusIOErr},
		{"get-id with readable data", func(e *env) uint64 {
			_, s := e.request(TypeGetID, 0, vbuf{Addr: dataArea, Len: 20})
			return s
		}, StatusIOErr},
		{"no status byte", func(e *env) uint64 {
			hdr, _ := e.header(TypeIn, 0)
			e.drv.Post([]vbuf{{Addr: hdr, Len: 16}, {Addr: dataArea, Len: 512}})
			return 0
		}, 0xff},
		{"short header", func(e *env) uint64 {
			hdr, s := e.header(TypeIn, 0)
			e.drv.Post([]vbuf{{Addr: hdr, Len: 8}, {Addr: s, Len: 1, Write: true}})
			return 0
		}, 0xff},
		{"no header at all", func(e *env) uint64 {
			_, s := e.header(TypeIn, 0)
			e.drv.Post([]vbuf{{Addr: s, Len: 1, Write: true}})
			return 0
		}, 0xff},
		{"descriptor outside RAM", func(e *env) uint64 {
			_, s := e.request(TypeIn, 0, vbuf{Addr: 0xc000_0000, Len: 512, Write: true})
			return s
		}, 0xff},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			disk := newDisk(capacity * 512)
			e := newEnv(t, disk)
			e.up(layout())
			status := c.post(e)
			if c.status == 0xff {
				eventually(t, "NEEDS_RESET", e.needsReset)
				if e.drv.Read32(virtio.RegInterruptStatus)&virtio.IntConfigChange == 0 {
					t.Error("no configuration-change interrupt")
				}
				if e.drv.UsedIdx() != 0 {
					t.Error("broken request completed")
				}
				// The driver recovers by resetting.
				e.up(layout())
				if st, _ := e.do(TypeFlush, 0); st != StatusOK {
					t.Errorf("flush after reset: %d", st)
				}
				return
			}
			e.wait(1)
			if got := e.statusAt(status); got != c.status {
				t.Errorf("status %d, want %d", got, c.status)
			}
			if _, n := e.drv.Used(0); n != 1 {
				t.Errorf("used len %d, want 1", n)
			}
			if e.needsReset() {
				t.Error("device needs reset after a merely bad request")
			}
			if calls := disk.callLog(); len(calls) != 0 {
				t.Errorf("backend called: %v", calls)
			}
			if e.dev.Stats().BadRequests != 1 {
				t.Errorf("stats %+v", e.dev.Stats())
			}
		})
	}
}

func TestZeroLengthRead(t *testing.T) {
	e := newEnv(t, newDisk(4096))
	e.up(layout())
	if st, n := e.do(TypeIn, 8); st != StatusOK || n != 1 {
		t.Errorf("empty read at the end: status %d len %d", st, n)
	}
}

func TestNoEventIdxNotifySuppression(t *testing.T) {
	disk := newDisk(1 << 20)
	e := newEnv(t, disk, func(c *Config) { c.DisableEventIdx = true })
	e.up(layout())
	for i := range 40 {
		if st, _ := e.do(TypeIn, uint64(i), vbuf{Addr: dataArea, Len: 512, Write: true}); st != StatusOK {
			t.Fatalf("read %d: %d", i, st)
		}
	}
	// The worker re-enables notifications when it runs dry.
	eventually(t, "used.flags cleared", func() bool { return e.drv.UsedFlags() == 0 })
}

func TestResize(t *testing.T) {
	disk := newDisk(1 << 20)
	e := newEnv(t, disk)
	e.up(layout())
	gen := e.drv.Read32(virtio.RegConfigGeneration)
	disk.mu.Lock()
	disk.data = make([]byte, 2<<20)
	disk.mu.Unlock()
	e.dev.Resize()
	if c := e.drv.Read32(virtio.ConfigOffset); c != 4096 {
		t.Errorf("capacity %d after resize", c)
	}
	if e.drv.Read32(virtio.RegConfigGeneration) == gen {
		t.Error("config generation unchanged")
	}
	if e.drv.Read32(virtio.RegInterruptStatus)&virtio.IntConfigChange == 0 {
		t.Error("no configuration-change interrupt")
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("no backend accepted")
	}
	if _, err := New(Config{Backend: newDisk(512), MaxInFlight: -1}); err == nil {
		t.Error("negative MaxInFlight accepted")
	}
	if _, err := New(Config{Backend: newDisk(512)}); err == nil {
		t.Error("no memory accepted")
	}
}

func TestActivateWithoutQueueNeedsReset(t *testing.T) {
	e := newEnv(t, newDisk(4096))
	if err := e.drv.Negotiate(layout()); err != nil {
		t.Fatal(err)
	}
	e.drv.DriverOK()
	if !e.needsReset() {
		t.Errorf("DRIVER_OK without a ready queue: status %#x", e.drv.Read32(virtio.RegStatus))
	}
	if err := e.dev.Transport().Broken(); err == nil || !strings.Contains(err.Error(), "queue 0 is not ready") {
		t.Errorf("broken: %v", err)
	}
}

func TestSmallQueue(t *testing.T) {
	e := newEnv(t, newDisk(4096), func(c *Config) { c.QueueSize = 2 })
	if v := e.drv.Read32(virtio.ConfigOffset + 0x0c); v != 1 {
		t.Errorf("seg_max %d with a queue of 2", v)
	}
}
