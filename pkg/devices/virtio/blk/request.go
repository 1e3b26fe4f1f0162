package blk

import (
	"encoding/binary"
	"fmt"

	"github.com/vmmd/vmmd/pkg/devices/virtio"
)

// request is one parsed virtio-blk request.
type request struct {
	chain  *virtio.Chain
	q      *virtio.Queue
	gen    uint64 // the device's reset count when it was popped
	typ    uint32
	sector uint64
	// data are the request's data buffers: device-writable for reads and
	// GET_ID, device-readable for writes.
	data    []virtio.Buffer
	dataLen uint64
	// status is the last device-writable byte.
	status virtio.Buffer
	// immediate requests are answered without the backend, with result.
	immediate bool
	result    byte
	// why says what was wrong with a request answered IOERR at once.
	why string
}

// parseRequest splits a chain into a request. It returns an error only
// when the request cannot be answered at all (no status byte, or no full
// header); requests that are merely wrong come back immediate with an
// error status.
func parseRequest(c *virtio.Chain, readOnly bool, capacity uint64) (*request, error) {
	wl, rl := c.WritableLen(), c.ReadableLen()
	if wl == 0 {
		return nil, fmt.Errorf("%w: virtio-blk request %d has no device-writable status byte", virtio.ErrMalformed, c.Head)
	}
	if rl < headerLen {
		return nil, fmt.Errorf("%w: virtio-blk request %d has a %d-byte header, want %d", virtio.ErrMalformed, c.Head, rl, headerLen)
	}
	var hdr [headerLen]byte
	virtio.Gather(hdr[:], c.Readable)
	r := &request{
		chain:  c,
		typ:    binary.LittleEndian.Uint32(hdr[0:]),
		sector: binary.LittleEndian.Uint64(hdr[8:]),
		status: virtio.Sub(c.Writable, wl-1, 1)[0],
	}
	switch r.typ {
	case TypeIn:
		if rl != headerLen {
			return r.fail("read request carries %d device-readable bytes after its header", rl-headerLen), nil
		}
		r.data, r.dataLen = virtio.Sub(c.Writable, 0, wl-1), wl-1
		return r.checkRange(capacity), nil
	case TypeOut:
		switch {
		case wl != 1:
			return r.fail("write request has %d device-writable bytes besides its status", wl-1), nil
		case readOnly:
			return r.fail("write to a read-only device"), nil
		}
		r.data, r.dataLen = virtio.Sub(c.Readable, headerLen, rl-headerLen), rl-headerLen
		return r.checkRange(capacity), nil
	case TypeFlush:
		if rl != headerLen || wl != 1 {
			return r.fail("flush request carries data (%d readable, %d writable bytes)", rl-headerLen, wl-1), nil
		}
		return r, nil
	case TypeGetID:
		if rl != headerLen {
			return r.fail("get-id request carries %d device-readable bytes after its header", rl-headerLen), nil
		}
		n := min(wl-1, IDLen)
		r.data, r.dataLen = virtio.Sub(c.Writable, 0, n), n
		r.immediate, r.result = true, StatusOK
		return r, nil
	}
	r.immediate, r.result, r.why = true, StatusUnsupp, fmt.Sprintf("request type %d is not supported", r.typ)
	return r, nil
}

// fail makes r an immediate IOERR.
func (r *request) fail(format string, args ...any) *request {
	r.immediate, r.result, r.why = true, StatusIOErr, fmt.Sprintf(format, args...)
	r.data, r.dataLen = nil, 0
	return r
}

// checkRange fails a read or write whose data is not whole sectors or
// reaches past the capacity.
func (r *request) checkRange(capacity uint64) *request {
	switch {
	case r.dataLen%SectorSize != 0:
		return r.fail("data length %d is not a multiple of %d", r.dataLen, SectorSize)
	case r.sector > capacity || r.dataLen/SectorSize > capacity-r.sector:
		return r.fail("sectors %d+%d are beyond the capacity of %d", r.sector, r.dataLen/SectorSize, capacity)
	}
	return r
}
