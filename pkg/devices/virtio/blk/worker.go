package blk

import (
	"fmt"

	"github.com/vmmd/vmmd/pkg/devices/virtio"
)

// run is one of the device's MaxInFlight executor goroutines. Each takes
// requests from the ring itself and runs them to completion, then takes
// the next: handing every request from a dispatcher to a goroutine of its
// own cost a goroutine start and a thread wake-up per request, as much as
// copying 64 KiB. Idle executors sleep on the kick channel.
func (d *Device) run() {
	defer d.wg.Done()
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-d.kick:
		}
		d.drain()
	}
}

// drain runs requests until the ring is empty, the device is paused or
// stopped, or the context ends. Having taken a request it wakes another
// executor to look for more, so requests still run in parallel, up to the
// number of executors.
func (d *Device) drain() {
	d.mu.Lock()
	if q := d.q; q != nil && !d.paused {
		q.DisableNotify()
	}
	d.mu.Unlock()
	for d.ctx.Err() == nil {
		r := d.next()
		if r == nil {
			return
		}
		d.wake()
		if r.immediate {
			d.answer(r)
			continue
		}
		d.execute(r)
	}
}

// next returns the next request to start, counted in flight: a stopped one
// to retry, else a new one from the ring. It returns nil when there is
// nothing to do. A request that cannot be answered breaks the queue.
func (d *Device) next() *request {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.paused || d.closed || d.q == nil {
		return nil
	}
	if len(d.retry) > 0 {
		r := d.retry[0]
		d.retry[0] = nil
		d.retry = d.retry[1:]
		d.inflight++
		return r
	}
	q := d.q
	c, err := q.Pop()
	if err != nil || c == nil {
		// On an error the queue has already put the device into
		// DEVICE_NEEDS_RESET. When the ring is empty, notifications are
		// re-enabled; if buffers slipped in meanwhile, go round again
		// (through the kick, so that d.mu is released in between).
		if err == nil && q.EnableNotify() {
			d.wake()
		}
		return nil
	}
	r, err := parseRequest(c, d.features&FeatureRO != 0, d.capacity.Load())
	if err != nil {
		q.Fail(err)
		return nil
	}
	r.q, r.gen = q, d.gen
	d.inflight++
	return r
}

// execute runs a request against the backend.
func (d *Device) execute(r *request) {
	op, n, err := d.do(r)
	if d.ctx.Err() != nil {
		// Closing: nobody will look at the result.
		d.finish()
		return
	}
	status := byte(StatusOK)
	if err != nil {
		d.stats.backendErrors.Add(1)
		err = fmt.Errorf("virtio-blk %q: %w", d.backend.ID(), err)
		switch d.action(op, err) {
		case ActionStop:
			d.park(r, op, err)
			return
		case ActionIgnore:
		default:
			status = StatusIOErr
		}
	}
	if status == StatusOK {
		d.count(r, n)
	}
	d.complete(r, status, n)
}

// do performs the backend part of a request and returns the operation,
// the number of data bytes written into guest memory, and the error.
func (d *Device) do(r *request) (Op, uint64, error) {
	off := int64(r.sector * SectorSize)
	switch r.typ {
	case TypeIn:
		n, err := d.transfer(d.ctx, false, r.data, off, r.dataLen)
		return OpRead, n, err
	case TypeOut:
		_, err := d.transfer(d.ctx, true, r.data, off, r.dataLen)
		return OpWrite, 0, err
	default: // TypeFlush; other types are immediate
		if err := d.backend.Flush(d.ctx); err != nil {
			return OpFlush, 0, fmt.Errorf("flush: %w", err)
		}
		return OpFlush, 0, nil
	}
}

// action asks the policy, treating unknown answers as report.
func (d *Device) action(op Op, err error) Action {
	if d.policy == nil {
		return ActionReport
	}
	switch a := d.policy(op, err); a {
	case ActionIgnore, ActionStop:
		return a
	}
	return ActionReport
}

// answer completes an immediate request.
func (d *Device) answer(r *request) {
	var n uint64
	switch {
	case r.typ == TypeGetID && r.result == StatusOK:
		id := d.id[:min(uint64(IDLen), r.dataLen)]
		n = uint64(virtio.Scatter(r.data, id))
		d.markDirty(virtio.Sub(r.data, 0, n))
		d.stats.getIDs.Add(1)
	default:
		d.stats.badRequests.Add(1)
	}
	d.complete(r, r.result, n)
}

// count updates the statistics for a request completed OK.
func (d *Device) count(r *request, n uint64) {
	switch r.typ {
	case TypeIn:
		d.stats.reads.Add(1)
		d.stats.bytesRead.Add(n)
	case TypeOut:
		d.stats.writes.Add(1)
		d.stats.bytesWritten.Add(r.dataLen)
	case TypeFlush:
		d.stats.flushes.Add(1)
	}
}

// complete writes the status byte and returns the chain to the driver,
// reporting n data bytes plus the status as written, unless the device was
// reset since the request was popped (the rings may belong to a new driver
// by now).
func (d *Device) complete(r *request, status byte, n uint64) {
	d.mu.Lock()
	current := r.gen == d.gen
	d.mu.Unlock()
	if current {
		r.status.Data[0] = status
		d.markDirtyRange(r.status.GPA, 1)
		r.q.Push(r.chain, uint32(min(n+1, 1<<32-1)))
	}
	d.finish()
}

// finish takes a request out of flight.
func (d *Device) finish() {
	d.mu.Lock()
	d.doneLocked()
	d.mu.Unlock()
}

func (d *Device) doneLocked() {
	d.inflight--
	if d.inflight == 0 && d.idle != nil {
		close(d.idle)
		d.idle = nil
	}
}

// park keeps a request the policy stopped for a retry on Resume, stops
// taking new requests, and tells the machine. A request from before a
// reset is dropped instead: the driver no longer waits for it.
func (d *Device) park(r *request, op Op, err error) {
	d.mu.Lock()
	parked := r.gen == d.gen && !d.closed
	if parked {
		d.retry = append(d.retry, r)
		d.paused = true
	}
	d.doneLocked()
	d.mu.Unlock()
	if parked && d.onStop != nil {
		d.onStop(op, err)
	}
}
