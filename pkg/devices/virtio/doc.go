// Package virtio implements the virtio 1.x MMIO transport (virtio-mmio
// version 2) and split virtqueues, for device types such as virtio-blk
// (package blk) to build on.
//
// # Trust
//
// Everything the guest supplies is checked before use: register values,
// ring addresses and sizes, the avail index, every descriptor index, flag,
// address and length, the length of every chain (which also catches loops)
// and indirect tables. Guest memory is reached only through Memory.Slice,
// which is bounds-checked, and descriptors are copied out of guest memory
// before they are validated, so the guest cannot change a value between
// its check and its use. A malformed ring puts the device into
// DEVICE_NEEDS_RESET with a configuration-change interrupt and the queue
// stops until the driver resets the device; it never panics and never
// touches memory outside guest RAM.
//
// # Memory order
//
// The driver and the device share the rings without locks. The device
// reads avail.idx with an atomic 32-bit load of the aligned word holding
// it and only then reads the ring entries and descriptors it covers; it
// writes used elements with plain stores and then publishes used.idx with
// an atomic 32-bit store of the word it shares with used.flags (both
// device-owned). Go's atomics are sequentially consistent, so they also
// act as the fences the virtio spec asks for: the load of avail.idx is an
// acquire, the store of used.idx a release, and the atomic load of
// avail.flags or used_event that follows the used.idx store (to decide
// about an interrupt) cannot be satisfied before that store is visible.
// On x86-64 (TSO) loads are not reordered with loads nor stores with
// stores, and Go's atomic store is an XCHG, a full barrier, which covers
// the one store-then-load pair. 16-bit fields are read through the
// aligned 32-bit word that contains them, so a value is never torn; ring
// views are therefore widened to 4-byte boundaries, which stay inside RAM
// because RAM regions are page-aligned. avail_event, which shares its word
// with guest data, is written with a compare-and-swap that leaves the
// other half alone.
//
// Pages the device writes (used ring, notification fields, and whatever
// device types write) are marked dirty with Memory.MarkDirty after the
// write, because KVM's dirty log only sees writes made by vCPUs.
//
// # Interrupts
//
// The interrupt line follows InterruptStatus: it is raised when a bit is
// set in an all-clear status and lowered when the driver acknowledges the
// last bit, as QEMU's virtio-mmio does. This is correct for a
// level-triggered IOAPIC pin. For an edge-triggered pin (ISA IRQs, the usual
// choice for virtio_mmio.device=) the rising edge is the interrupt; a
// second kind of event (say a configuration change while a used-buffer
// interrupt is still unacknowledged) lowers and raises the line again, so
// it is not lost on either kind of pin. Further used buffers of the same
// kind while the line is high need no new edge: the driver acknowledges
// before it walks the used ring, so it sees them.
//
// # Concurrency
//
// MMIORead and MMIOWrite run on vCPU goroutines and never block on device
// work: a QueueNotify only calls Device.QueueNotify, which must hand the
// work to the device's own goroutine. Queue methods may be called from any
// goroutine. Device methods are never called with transport locks held.
//
// A machine that wants queue notifications without an MMIO exit to Go can
// register an ioeventfd on base+RegQueueNotify (4 bytes, data match on the
// queue index) and call Transport.Notify from the eventfd's reader.
package virtio
