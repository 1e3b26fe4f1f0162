// Package blk implements a virtio-blk device (virtio 1.x, device ID 2) on
// the virtio-mmio transport of package virtio.
//
// It offers VIRTIO_BLK_F_SEG_MAX, BLK_SIZE (512), FLUSH and, for read-only
// backends, RO, and handles read, write, flush and get-id requests; every
// other request type is answered VIRTIO_BLK_S_UNSUPP. Request framing
// follows the virtio 1.x rule that the device must not assume a descriptor
// layout: the header is the first 16 device-readable bytes and the status
// is the last device-writable byte, wherever the descriptors split them.
//
// # Requests and errors
//
// A request the device cannot even answer (no status byte, or a header
// shorter than 16 bytes) puts the device into DEVICE_NEEDS_RESET, as QEMU
// does. A request with the wrong shape for its type (data in the wrong
// direction, a data length that is not a multiple of 512), out-of-range
// sectors and writes to a read-only device get VIRTIO_BLK_S_IOERR without
// reaching the backend. A backend error goes through the ErrorPolicy:
// report it (IOERR), ignore it (OK), or stop: the request stays pending,
// the device takes no new requests, OnStop is called so the machine can
// pause the VM in io-error, and the request is retried on Resume.
//
// # Concurrency
//
// Queue notifications never do work on the vCPU goroutine: they wake one of
// the device's Config.MaxInFlight executor goroutines, which pops a request,
// wakes another executor to look for more, and runs the request itself, so
// up to MaxInFlight requests run at once and a slow request does not hold
// up others (as QEMU's thread pool does). Requests
// may therefore complete out of order, which virtio allows; a flush covers
// the writes completed before it was submitted, which is what drivers rely
// on. While executors drain the ring they suppress notifications
// (VRING_USED_F_NO_NOTIFY, or avail_event with EVENT_IDX).
//
// Pause stops taking requests from the ring and waits for those in flight;
// Resume starts again (retrying stopped requests first). Migration and the
// io-error state use them to get a quiescent device; State and SetState
// require a paused device.
//
// A driver reset (Status 0) runs on a vCPU and so does not wait for
// requests in flight: they finish in the background and their completion
// is discarded (no used element is written), though read data or, in a
// narrow window, the status byte may still land in guest memory. Drivers
// reset a quiesced device, as Linux does.
//
// Read data goes straight from the backend into guest memory when the data
// is one contiguous buffer, and through a bounce buffer otherwise; backend
// calls never exceed 1 MiB and always start and end on 512-byte
// boundaries. Every byte written into guest memory is marked dirty for
// migration after it is written.
package blk
