package blk

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/vmmd/vmmd/pkg/memory"
)

const fuzzArea = 0x20000

// blkSeed builds a fuzz input: 2 parameter bytes, the descriptor table of
// 8 entries, the avail ring, and the request area at fuzzArea.
func blkSeed(flags byte, descs [][4]uint64, avail []uint16, area []byte) []byte {
	b := []byte{3, flags}
	table := make([]byte, 16*8)
	for i, d := range descs {
		binary.LittleEndian.PutUint64(table[16*i:], d[0])
		binary.LittleEndian.PutUint32(table[16*i+8:], uint32(d[1]))
		binary.LittleEndian.PutUint16(table[16*i+12:], uint16(d[2]))
		binary.LittleEndian.PutUint16(table[16*i+14:], uint16(d[3]))
	}
	b = append(b, table...)
	ring := make([]byte, 6+2*8)
	for i, v := range avail {
		binary.LittleEndian.PutUint16(ring[2*i:], v)
	}
	return append(append(b, ring...), area...)
}

func hdrBytes(typ uint32, sector uint64) []byte {
	var h [16]byte
	binary.LittleEndian.PutUint32(h[0:], typ)
	binary.LittleEndian.PutUint64(h[8:], sector)
	return h[:]
}

// FuzzVirtqueueBlk drives the whole device with fuzzer-filled rings and
// request memory: it must not panic or hang, must settle (every chain
// completed, or NEEDS_RESET), and every page it changed must be marked
// dirty.
func FuzzVirtqueueBlk(f *testing.F) {
	std := func(typ uint32, dataFlags uint64, dataLen uint64) []byte {
		return blkSeed(0, [][4]uint64{
			{fuzzArea, 16, 1, 1},
			{fuzzArea + 0x200, dataLen, dataFlags | 1, 2},
			{fuzzArea + 0x100, 1, 2, 0},
		}, []uint16{0, 1, 0}, hdrBytes(typ, 3))
	}
	f.Add(std(TypeIn, 2, 1024))
	f.Add(std(TypeOut, 0, 512))
	f.Add(std(TypeGetID, 2, 20))
	f.Add(blkSeed(0, [][4]uint64{{fuzzArea, 16, 1, 1}, {fuzzArea + 0x100, 1, 2, 0}}, []uint16{0, 1, 0}, hdrBytes(TypeFlush, 0)))
	f.Add(blkSeed(1, [][4]uint64{{fuzzArea + 0x1000, 48, 4, 0}}, []uint16{0, 1, 0},
		append(hdrBytes(TypeIn, 0), make([]byte, 0x1000-16)...)))

	mem, err := memory.New(memory.MinSize)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { mem.Close() })
	disk := newDisk(1 << 20)
	e := newEnvMem(f, mem, disk)
	// Below snapLen memory is compared with a snapshot; above it, memory
	// starts zeroed each round, so a changed page is a non-zero one.
	const snapLen = 2 << 20
	before := make([]byte, snapLen)
	// Between rounds the device is paused, so that nothing it does
	// overlaps the set-up or the checks.
	if err := e.dev.Pause(context.Background()); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 2 {
			return
		}
		l := layout()
		l.Size = 8
		l.DisableEventIdx = in[1]&1 != 0
		l.DisableIndirect = in[1]&2 != 0
		e.t = t
		e.up(l)
		in = in[2:]
		for _, part := range []struct {
			gpa uint64
			n   int
		}{{ringDesc, 16 * 8}, {ringAvail, 6 + 2*8}, {fuzzArea, 0x10000}} {
			n := min(part.n, len(in))
			e.write(part.gpa, in[:n])
			in = in[n:]
		}
		e.dirtyPages()
		if err := mem.Read(0, before); err != nil {
			t.Fatal(err)
		}
		e.dev.Resume()
		e.drv.Notify()
		// Settle: all chains used, or NEEDS_RESET, or (if the device's
		// own writes changed the ring under it) simply quiescent.
		var avail uint16
		deadline := time.Now().Add(200 * time.Millisecond)
		for time.Now().Before(deadline) {
			avail = binary.LittleEndian.Uint16(e.read(ringAvail+2, 2))
			if e.needsReset() || e.drv.UsedIdx() == avail {
				break
			}
			time.Sleep(50 * time.Microsecond)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.dev.Pause(ctx); err != nil {
			t.Fatalf("device did not quiesce: %v", err)
		}
		// Paused, the device writes nothing while memory is checked.
		if !e.needsReset() && avail > 8 && avail == binary.LittleEndian.Uint16(before[ringAvail+2:]) {
			t.Fatalf("avail index %d in a queue of 8 without NEEDS_RESET", avail)
		}
		// Every page that changed must be marked dirty.
		dirty := e.dirtyPages()
		zero := make([]byte, memory.PageSize)
		for p := uint64(0); p < memory.MinSize/memory.PageSize; p++ {
			if dirty[p] {
				continue
			}
			now, err := mem.Slice(p*memory.PageSize, memory.PageSize)
			if err != nil {
				t.Fatal(err)
			}
			was := zero
			if p*memory.PageSize < snapLen {
				was = before[p*memory.PageSize : (p+1)*memory.PageSize]
			}
			if !bytes.Equal(now, was) {
				t.Fatalf("page %#x changed but was not marked dirty", p*memory.PageSize)
			}
		}
		// Leave the device reset and memory clean for the next input.
		e.drv.Write32(0x070, 0)
		for p := range dirty {
			if err := mem.Write(p*memory.PageSize, make([]byte, memory.PageSize)); err != nil {
				t.Fatal(err)
			}
		}
		e.write(fuzzArea, make([]byte, 0x10000))
	})
}
