package devices

import (
	"sync/atomic"
	"time"
)

// DebugPortAddr is the POST / boot-progress port (Cloud Hypervisor's debug
// port).
const DebugPortAddr = 0x80

// DebugPort is the boot-progress port 0x80. Each write is a progress code
// (the byte at 0x80; bytes of a wider write land on the DMA page registers
// above it and are ignored), reported with the time since the VMM's start.
// Reads return 0.
//
// Linux's default io_delay also writes here, so a write costs one monotonic
// clock read, two atomics and the callback: the callback decides what, if
// anything, to log.
type DebugPort struct {
	start  time.Time
	onCode func(code byte, since time.Duration)
	// first is the time since start of the first write, plus one, or 0
	// before any write (atomic: vCPUs race for it).
	first atomic.Int64
	// count is the number of writes (atomic).
	count atomic.Uint64
}

// NewDebugPort returns the debug port. start is the reference time (the
// VMM's start); onCode runs on the writing vCPU's goroutine for every write
// and must be cheap; nil only records.
func NewDebugPort(start time.Time, onCode func(code byte, since time.Duration)) *DebugPort {
	return &DebugPort{start: start, onCode: onCode}
}

// Ranges returns where the port answers: 0x80.
func (d *DebugPort) Ranges() []PortRange {
	return []PortRange{{Base: DebugPortAddr, Size: 1, Name: "debug-port"}}
}

// Register registers d on b at Ranges.
func (d *DebugPort) Register(b *Bus) error { return registerAll(b, d, d.Ranges()) }

// PortIn implements PortDevice; the port reads as 0.
func (d *DebugPort) PortIn(_ uint16, data []byte) {
	for i := range data {
		data[i] = 0
	}
}

// PortOut implements PortDevice.
func (d *DebugPort) PortOut(_ uint16, data []byte) {
	if len(data) == 0 {
		return
	}
	since := time.Since(d.start)
	if d.first.Load() == 0 {
		d.first.CompareAndSwap(0, int64(max(since, 0))+1)
	}
	d.count.Add(1)
	if d.onCode != nil {
		d.onCode(data[0], since)
	}
}

// FirstWrite returns the time from start to the first write, and false if
// the guest has not written yet. A start in the future counts as 0.
func (d *DebugPort) FirstWrite() (time.Duration, bool) {
	v := d.first.Load()
	if v == 0 {
		return 0, false
	}
	return time.Duration(v - 1), true
}

// Writes returns how many writes the port has seen.
func (d *DebugPort) Writes() uint64 { return d.count.Load() }
