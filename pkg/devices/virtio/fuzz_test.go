package virtio

import (
	"encoding/binary"
	"testing"
)

// fuzzArea is where FuzzVirtqueue puts indirect tables and buffers.
const fuzzArea = 0x20000

// fuzzSeed builds an input: parameter bytes, then the descriptor table,
// the avail ring and the data area.
func fuzzSeed(params [4]byte, descs [][4]uint64, avail []uint16, area []byte) []byte {
	size := 1 << (params[0] % 9)
	b := append([]byte(nil), params[:]...)
	table := make([]byte, 16*size)
	for i, d := range descs {
		binary.LittleEndian.PutUint64(table[16*i:], d[0])
		binary.LittleEndian.PutUint32(table[16*i+8:], uint32(d[1]))
		binary.LittleEndian.PutUint16(table[16*i+12:], uint16(d[2]))
		binary.LittleEndian.PutUint16(table[16*i+14:], uint16(d[3]))
	}
	b = append(b, table...)
	ring := make([]byte, 6+2*size)
	for i, v := range avail {
		binary.LittleEndian.PutUint16(ring[2*i:], v)
	}
	b = append(b, ring...)
	return append(b, area...)
}

// FuzzVirtqueue fills a queue's descriptor table, avail ring and a data
// area with fuzzer bytes and processes the queue: pop every chain, check
// what came out, push it back. Nothing may panic, loop or leave guest RAM.
func FuzzVirtqueue(f *testing.F) {
	// A three-descriptor chain: header, data, status.
	f.Add(fuzzSeed([4]byte{3, 0, 0, 0},
		[][4]uint64{{fuzzArea, 16, 1, 1}, {fuzzArea + 0x100, 512, 3, 2}, {fuzzArea + 0x400, 1, 2, 0}},
		[]uint16{0, 1, 0}, nil))
	// An indirect chain.
	ind := make([]byte, 48)
	binary.LittleEndian.PutUint64(ind[0:], fuzzArea+0x800)
	binary.LittleEndian.PutUint32(ind[8:], 16)
	binary.LittleEndian.PutUint16(ind[12:], 1)
	binary.LittleEndian.PutUint16(ind[14:], 1)
	binary.LittleEndian.PutUint64(ind[16:], fuzzArea+0x900)
	binary.LittleEndian.PutUint32(ind[24:], 1)
	binary.LittleEndian.PutUint16(ind[28:], 2)
	f.Add(fuzzSeed([4]byte{2, 0, 0, 0}, [][4]uint64{{fuzzArea, 32, 4, 0}}, []uint16{0, 1, 0}, ind))
	// Several chains with EVENT_IDX off and a wrapped index.
	f.Add(fuzzSeed([4]byte{1, 1, 0, 0},
		[][4]uint64{{fuzzArea, 8, 0, 0}, {fuzzArea + 8, 8, 2, 0}},
		[]uint16{0, 2, 0, 1}, nil))

	e := newEnv(f, Config{})
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 4 {
			return
		}
		size := uint16(1) << (in[0] % 9)
		l := layout(size)
		l.DisableEventIdx = in[1]&1 != 0
		l.DisableIndirect = in[1]&2 != 0
		q := e.up(t, l)
		in = in[4:]
		// The rings are zeroed by the driver's set-up; lay fuzz bytes over
		// the descriptor table, the avail ring and the data area.
		for _, part := range []struct {
			gpa uint64
			n   int
		}{{testDesc, 16 * int(size)}, {testAvail, 6 + 2*int(size)}, {fuzzArea, 0x10000}} {
			n := min(part.n, len(in))
			if err := e.mem.Write(part.gpa, in[:n]); err != nil {
				t.Fatal(err)
			}
			in = in[n:]
		}
		defer func() {
			if err := e.mem.Write(fuzzArea, make([]byte, 0x10000)); err != nil {
				t.Fatal(err)
			}
		}()
		q.DisableNotify()
		for i := 0; i < 2*int(size)+2; i++ {
			c, err := q.Pop()
			if err != nil {
				if !e.needsReset() {
					t.Fatalf("Pop error %v without NEEDS_RESET", err)
				}
				return
			}
			if c == nil {
				if !q.EnableNotify() {
					return
				}
				continue
			}
			checkChain(t, e, c, size)
			if !q.Push(c, uint32(i)) {
				t.Fatal("push of a fresh chain refused")
			}
			if _, err := q.ChainAt(c.Head); err != nil && !e.needsReset() {
				// A chain that parsed once parses again (the fuzzer
				// does not change memory in between).
				t.Fatalf("ChainAt(%d): %v", c.Head, err)
			}
		}
		// Never more chains than the queue holds without the driver
		// consuming used entries.
		if _, err := q.Pop(); err == nil && !e.needsReset() {
			if s := e.tr.State().Queues[0]; s.LastAvail-s.UsedIdx > size {
				t.Fatalf("%d chains outstanding in a queue of %d", s.LastAvail-s.UsedIdx, size)
			}
		}
	})
}

// checkChain checks a popped chain against the invariants the device
// relies on.
func checkChain(t *testing.T, e *env, c *Chain, size uint16) {
	t.Helper()
	if c.Head >= size {
		t.Fatalf("head %d outside a queue of %d", c.Head, size)
	}
	if c.ReadableLen()+c.WritableLen() > MaxChainBytes {
		t.Fatalf("chain of %d bytes", c.ReadableLen()+c.WritableLen())
	}
	if len(c.Readable)+len(c.Writable) > MaxIndirect {
		t.Fatalf("chain of %d buffers", len(c.Readable)+len(c.Writable))
	}
	for _, b := range append(append([]Buffer(nil), c.Readable...), c.Writable...) {
		if len(b.Data) == 0 {
			t.Fatal("empty buffer in chain")
		}
		s, err := e.mem.Slice(b.GPA, uint64(len(b.Data)))
		if err != nil {
			t.Fatalf("buffer %#x+%#x outside RAM: %v", b.GPA, len(b.Data), err)
		}
		if &s[0] != &b.Data[0] {
			t.Fatalf("buffer %#x does not alias guest memory at its address", b.GPA)
		}
	}
}
