package blk

import "sync/atomic"

// Stats are the device's request counters.
type Stats struct {
	// Reads, Writes, Flushes and GetIDs count requests completed by type.
	Reads, Writes, Flushes, GetIDs uint64
	// BytesRead and BytesWritten count data moved by completed requests.
	BytesRead, BytesWritten uint64
	// BackendErrors counts failed backend calls (each stop-and-retry
	// counts again).
	BackendErrors uint64
	// BadRequests counts requests answered IOERR or UNSUPP without
	// reaching the backend (malformed, out of range, read-only).
	BadRequests uint64
}

type counters struct {
	reads, writes, flushes, getIDs atomic.Uint64
	bytesRead, bytesWritten        atomic.Uint64
	backendErrors, badRequests     atomic.Uint64
}

// Stats returns the request counters.
func (d *Device) Stats() Stats {
	c := &d.stats
	return Stats{
		Reads:         c.reads.Load(),
		Writes:        c.writes.Load(),
		Flushes:       c.flushes.Load(),
		GetIDs:        c.getIDs.Load(),
		BytesRead:     c.bytesRead.Load(),
		BytesWritten:  c.bytesWritten.Load(),
		BackendErrors: c.backendErrors.Load(),
		BadRequests:   c.badRequests.Load(),
	}
}
