package migrate

import "time"

// RAMInfo is query-migrate's "ram" member, with QEMU's names and units.
type RAMInfo struct {
	Transferred      uint64  `json:"transferred"`
	Remaining        uint64  `json:"remaining"`
	Total            uint64  `json:"total"`
	Duplicate        uint64  `json:"duplicate"`
	Normal           uint64  `json:"normal"`
	NormalBytes      uint64  `json:"normal-bytes"`
	DirtyPagesRate   uint64  `json:"dirty-pages-rate"`
	Mbps             float64 `json:"mbps"`
	DirtySyncCount   uint64  `json:"dirty-sync-count"`
	PostcopyRequests uint64  `json:"postcopy-requests"`
	PageSize         uint64  `json:"page-size"`
	MultifdBytes     uint64  `json:"multifd-bytes"`
	PagesPerSecond   uint64  `json:"pages-per-second"`
	PrecopyBytes     uint64  `json:"precopy-bytes"`
	DowntimeBytes    uint64  `json:"downtime-bytes"`
	PostcopyBytes    uint64  `json:"postcopy-bytes"`
}

// XBZRLEInfo is query-migrate's "xbzrle-cache" member (QEMU's names):
// what the page deltas did. Present when the xbzrle capability is on.
type XBZRLEInfo struct {
	CacheSize uint64 `json:"cache-size"`
	// Bytes and Pages: stream bytes and pages sent (received) as deltas.
	Bytes uint64 `json:"bytes"`
	Pages uint64 `json:"pages"`
	// CacheMiss: dirty pages sent whole for want of a cached copy.
	CacheMiss     uint64  `json:"cache-miss"`
	CacheMissRate float64 `json:"cache-miss-rate"`
	// Overflow: pages that changed too much for a delta.
	Overflow uint64 `json:"overflow"`
}

// DowntimeSteps is vmmd's query-migrate member "x-vmmd-downtime-steps" on a
// completed source: where the guest's stop went, in milliseconds, step by
// step in order. An operator tuning downtime-limit (or a storage server's
// flush time) sees which step to blame; QEMU reports only the total.
type DowntimeSteps struct {
	// Stop: stopping the vCPUs and draining disk I/O.
	Stop float64 `json:"stop"`
	// Inactivate: flushing the disks and handing them over.
	Inactivate float64 `json:"inactivate"`
	// LastPages: the final dirty pass.
	LastPages float64 `json:"last-pages"`
	// DeviceState: reading, encoding and sending the device state.
	DeviceState float64 `json:"device-state"`
	// DestinationLoad: until the destination said it has loaded the guest.
	DestinationLoad float64 `json:"destination-load"`
	// Commit: sending the commit that lets the destination run the guest
	// (migration to a file: syncing the file).
	Commit float64 `json:"commit"`
}

// Info is query-migrate's reply. Members are filled as QEMU fills them:
// nothing before the first migration; status and error-desc only for a
// failed or cancelled one; the figures while active and once completed.
type Info struct {
	Status           Status      `json:"status,omitempty"`
	RAM              *RAMInfo    `json:"ram,omitempty"`
	TotalTime        *int64      `json:"total-time,omitempty"`
	ExpectedDowntime *int64      `json:"expected-downtime,omitempty"`
	Downtime         *int64      `json:"downtime,omitempty"`
	SetupTime        *int64      `json:"setup-time,omitempty"`
	ErrorDesc        string      `json:"error-desc,omitempty"`
	XBZRLECache      *XBZRLEInfo `json:"xbzrle-cache,omitempty"`
	// DowntimeSteps: a completed source only.
	DowntimeSteps *DowntimeSteps `json:"x-vmmd-downtime-steps,omitempty"`
}

// counters are a job's running figures, guarded by the job's mutex.
type counters struct {
	duplicate, normal uint64 // pages sent (or received) as zero / with data
	syncs             uint64 // dirty-bitmap syncs (passes after the first)
	remaining         uint64 // bytes still dirty
	precopyBytes      uint64 // stream bytes before the guest stopped
	downtimeBytes     uint64 // stream bytes while it was stopped
	dirtyRate         uint64 // pages per second dirtied in the last pass
	mbps              float64
	pagesPerSec       uint64
	expectedDowntime  time.Duration
	// xbzrle: pages sent (received) as deltas and their stream bytes;
	// cacheMiss: dirty pages sent whole for want of a cached copy (no slot,
	// or changed too much: overflow counts those).
	xbzrlePages, xbzrleBytes, cacheMiss, overflow uint64
}

func msOf(d time.Duration) *int64 {
	v := d.Milliseconds()
	return &v
}
