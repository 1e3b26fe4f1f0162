package virtio

import (
	"encoding/binary"
	"fmt"
)

// ChainAt re-reads the chain whose head is head without popping it, for a
// device restoring requests it had popped but not completed.
func (q *Queue) ChainAt(head uint16) (*Chain, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.active {
		return nil, fmt.Errorf("queue %d is not active", q.index)
	}
	return q.readChainLocked(head)
}

// desc is one descriptor, copied out of guest memory before it is checked.
type desc struct {
	addr  uint64
	len   uint32
	flags uint16
	next  uint16
}

func readDesc(b []byte) desc {
	return desc{
		addr:  binary.LittleEndian.Uint64(b[0:]),
		len:   binary.LittleEndian.Uint32(b[8:]),
		flags: binary.LittleEndian.Uint16(b[12:]),
		next:  binary.LittleEndian.Uint16(b[14:]),
	}
}

// readChainLocked walks and validates the chain starting at head. Each
// table (the ring's or an indirect one) may contribute at most as many
// descriptors as it holds, which bounds the walk and catches loops.
func (q *Queue) readChainLocked(head uint16) (*Chain, error) {
	c := &Chain{Head: head, q: q, gen: q.gen}
	table, n := q.r.desc, uint64(q.size)
	where := "descriptor"
	idx, count := uint64(head), uint64(0)
	indirect, writable := false, false
	var total uint64
	for {
		if idx >= n {
			return nil, fmt.Errorf("%w: chain %d: %s index %d is outside its table of %d", ErrMalformed, head, where, idx, n)
		}
		count++
		if count > n {
			return nil, fmt.Errorf("%w: chain %d is longer than its table of %d descriptors (a loop?)", ErrMalformed, head, n)
		}
		d := readDesc(table[idx*16 : idx*16+16])
		if d.flags&descFIndirect != 0 {
			t, tn, err := q.indirectTable(head, d, indirect, count)
			if err != nil {
				return nil, err
			}
			table, n, idx, count, indirect = t, tn, 0, 0, true
			where = "indirect descriptor"
			continue
		}
		isWrite := d.flags&descFWrite != 0
		if !isWrite && writable {
			return nil, fmt.Errorf("%w: chain %d: device-readable %s %d follows a device-writable one", ErrMalformed, head, where, idx)
		}
		writable = writable || isWrite
		if d.len > 0 {
			if err := checkRange("buffer", d.addr, uint64(d.len)); err != nil {
				return nil, fmt.Errorf("chain %d: %s %d: %w", head, where, idx, err)
			}
			b, err := q.t.mem.Slice(d.addr, uint64(d.len))
			if err != nil {
				return nil, fmt.Errorf("%w: chain %d: %s %d buffer %#x+%#x: %w", ErrMalformed, head, where, idx, d.addr, d.len, err)
			}
			total += uint64(d.len)
			if total > MaxChainBytes {
				return nil, fmt.Errorf("%w: chain %d holds more than %d bytes", ErrMalformed, head, uint64(MaxChainBytes))
			}
			buf := Buffer{GPA: d.addr, Data: b}
			if isWrite {
				c.Writable = append(c.Writable, buf)
			} else {
				c.Readable = append(c.Readable, buf)
			}
		}
		if d.flags&descFNext == 0 {
			return c, nil
		}
		idx = uint64(d.next)
	}
}

// indirectTable checks an indirect descriptor and maps its table. Indirect
// descriptors are accepted only as the whole chain (the head, without
// NEXT), which is how drivers use them.
func (q *Queue) indirectTable(head uint16, d desc, nested bool, count uint64) ([]byte, uint64, error) {
	switch {
	case !q.indirect:
		return nil, 0, fmt.Errorf("%w: chain %d uses an indirect descriptor but VIRTIO_F_INDIRECT_DESC was not negotiated", ErrMalformed, head)
	case nested:
		return nil, 0, fmt.Errorf("%w: chain %d: indirect descriptor inside an indirect table", ErrMalformed, head)
	case count != 1:
		return nil, 0, fmt.Errorf("%w: chain %d: indirect descriptor is not the head of its chain", ErrMalformed, head)
	case d.flags&descFNext != 0:
		return nil, 0, fmt.Errorf("%w: chain %d: indirect descriptor also has NEXT set", ErrMalformed, head)
	case d.len == 0 || d.len%16 != 0:
		return nil, 0, fmt.Errorf("%w: chain %d: indirect table length %d is not a non-zero multiple of 16", ErrMalformed, head, d.len)
	case d.len/16 > MaxIndirect:
		return nil, 0, fmt.Errorf("%w: chain %d: indirect table of %d descriptors is above the limit of %d", ErrMalformed, head, d.len/16, MaxIndirect)
	}
	if err := checkRange("indirect table", d.addr, uint64(d.len)); err != nil {
		return nil, 0, fmt.Errorf("chain %d: %w", head, err)
	}
	t, err := q.t.mem.Slice(d.addr, uint64(d.len))
	if err != nil {
		return nil, 0, fmt.Errorf("%w: chain %d: indirect table %#x+%#x: %w", ErrMalformed, head, d.addr, d.len, err)
	}
	return t, uint64(d.len / 16), nil
}
