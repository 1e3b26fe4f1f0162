package blk

import (
	"fmt"

	"github.com/vmmd/vmmd/pkg/devices/virtio"
)

// State is the device's complete state for migration: the transport and
// the requests stopped by the error policy, which the destination retries.
type State struct {
	// Transport is the virtio-mmio transport and queue state.
	Transport virtio.State
	// Pending holds the head descriptor indices of stopped requests, in
	// retry order. Their chains live in guest memory, which migrates.
	Pending []uint16
}

// State returns the device's state. The device must be paused with no
// request in flight (Pause returned nil).
func (d *Device) State() (State, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.paused || d.inflight != 0 {
		return State{}, fmt.Errorf("save virtio-blk %q state: device is not paused (%d requests in flight)", d.backend.ID(), d.inflight)
	}
	s := State{Transport: d.t.State()}
	for _, r := range d.retry {
		s.Pending = append(s.Pending, r.chain.Head)
	}
	return s, nil
}

// SetState loads s, as saved by State on a device for the same drive and
// guest memory. The device must be paused; it stays paused, and Resume
// retries the pending requests first. If the pending requests cannot be
// read back, the device is reset and an error returned.
func (d *Device) SetState(s State) error {
	d.mu.Lock()
	quiet := d.paused && d.inflight == 0
	d.mu.Unlock()
	if !quiet {
		return fmt.Errorf("restore virtio-blk %q state: device is not paused", d.backend.ID())
	}
	if err := d.t.SetState(s.Transport); err != nil {
		return fmt.Errorf("restore virtio-blk %q state: %w", d.backend.ID(), err)
	}
	rs, err := d.pendingRequests(s.Pending)
	if err != nil {
		d.t.Reset()
		return fmt.Errorf("restore virtio-blk %q state: %w", d.backend.ID(), err)
	}
	d.mu.Lock()
	d.retry = rs
	d.mu.Unlock()
	return nil
}

// pendingRequests re-reads the stopped requests from guest memory.
func (d *Device) pendingRequests(heads []uint16) ([]*request, error) {
	if len(heads) == 0 {
		return nil, nil
	}
	d.mu.Lock()
	q, gen := d.q, d.gen
	d.mu.Unlock()
	if q == nil {
		return nil, fmt.Errorf("%d pending requests but the device is not active", len(heads))
	}
	if len(heads) > int(q.Size()) {
		return nil, fmt.Errorf("%d pending requests in a queue of %d", len(heads), q.Size())
	}
	seen := make(map[uint16]bool, len(heads))
	var rs []*request
	for _, h := range heads {
		if seen[h] {
			return nil, fmt.Errorf("pending request %d listed twice", h)
		}
		seen[h] = true
		c, err := q.ChainAt(h)
		if err != nil {
			return nil, fmt.Errorf("pending request %d: %w", h, err)
		}
		r, err := parseRequest(c, d.features&FeatureRO != 0, d.capacity.Load())
		if err != nil {
			return nil, fmt.Errorf("pending request %d: %w", h, err)
		}
		r.q, r.gen = q, gen
		rs = append(rs, r)
	}
	return rs, nil
}
