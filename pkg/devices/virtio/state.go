package virtio

import "fmt"

// State is a transport's complete guest-visible state, for migration and
// snapshots: plain values only.
type State struct {
	// Status is the device status register.
	Status uint32
	// DeviceFeaturesSel, DriverFeaturesSel and QueueSel are the selector
	// registers.
	DeviceFeaturesSel, DriverFeaturesSel, QueueSel uint32
	// DriverFeatures are the features the driver accepted.
	DriverFeatures uint64
	// InterruptStatus holds the unacknowledged interrupt bits.
	InterruptStatus uint32
	// ConfigGeneration is the configuration generation counter.
	ConfigGeneration uint32
	// Broken is why the device needs a reset, if it does (informational).
	Broken string
	// Queues holds one entry per queue, in order.
	Queues []QueueState
}

// QueueState is one virtqueue's state.
type QueueState struct {
	// Size, Ready, DescAddr, DriverAddr and DeviceAddr are the queue
	// registers.
	Size                             uint16
	Ready                            bool
	DescAddr, DriverAddr, DeviceAddr uint64
	// LastAvail is the avail index of the next chain to pop; UsedIdx the
	// used index last published.
	LastAvail, UsedIdx uint16
	// UsedFlags is the value of used.flags the device last published.
	UsedFlags uint16
	// Broken is set when the driver corrupted the queue.
	Broken bool
}

// State returns a snapshot of the transport. Take it with the device
// quiescent (vCPUs stopped, no requests in flight); otherwise queue indices
// may move while it is taken.
func (t *Transport) State() State {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := State{
		Status:            t.status,
		DeviceFeaturesSel: t.devFeatSel,
		DriverFeaturesSel: t.drvFeatSel,
		QueueSel:          t.queueSel,
		DriverFeatures:    t.drvFeatures,
		InterruptStatus:   t.intStatus,
		ConfigGeneration:  t.configGen,
	}
	if t.broken != nil {
		s.Broken = t.broken.Error()
	}
	for _, q := range t.queues {
		q.mu.Lock()
		s.Queues = append(s.Queues, QueueState{
			Size:       q.cfg.size,
			Ready:      q.cfg.ready,
			DescAddr:   q.cfg.desc,
			DriverAddr: q.cfg.driver,
			DeviceAddr: q.cfg.device,
			LastAvail:  q.lastAvail,
			UsedIdx:    q.usedIdx,
			UsedFlags:  q.usedFlags,
			Broken:     q.broken,
		})
		q.mu.Unlock()
	}
	return s
}

// validStatus is every status bit the transport can hold.
const validStatus = StatusAcknowledge | StatusDriver | StatusDriverOK | StatusFeaturesOK | StatusNeedsReset | StatusFailed

// SetState loads s, as saved by State on a transport for the same device
// type and guest memory, and activates the device if the driver had. It
// checks s first (features, queue sizes, ring addresses inside guest RAM)
// and changes nothing if it is invalid. The interrupt line is set to the
// level the restored InterruptStatus implies (raised if any bit is set):
// restore the irqchip first.
func (t *Transport) SetState(s State) error {
	rs, err := t.checkState(s)
	if err != nil {
		return fmt.Errorf("restore virtio-mmio state: %w", err)
	}
	t.mu.Lock()
	t.status = s.Status
	t.devFeatSel, t.drvFeatSel, t.queueSel = s.DeviceFeaturesSel, s.DriverFeaturesSel, s.QueueSel
	t.drvFeatures = s.DriverFeatures
	t.configGen = s.ConfigGeneration
	t.broken = nil
	if s.Status&StatusNeedsReset != 0 {
		t.broken = fmt.Errorf("%w (before migration: %s)", ErrMalformed, s.Broken)
	}
	for i, q := range t.queues {
		qs := s.Queues[i]
		q.unmap()
		q.cfg = queueConfig{size: qs.Size, ready: qs.Ready, desc: qs.DescAddr, driver: qs.DriverAddr, device: qs.DeviceAddr}
		if qs.Ready {
			q.mapRings(rs[i], qs.Size)
			q.mu.Lock()
			q.lastAvail, q.usedIdx, q.usedFlags, q.broken = qs.LastAvail, qs.UsedIdx, qs.UsedFlags, qs.Broken
			q.mu.Unlock()
			if s.Status&StatusDriverOK != 0 {
				q.activate(s.DriverFeatures)
			}
		}
	}
	// The line of a fresh irqchip is low; bring it to the saved level.
	t.intStatus, t.lineHigh = s.InterruptStatus, false
	if t.intStatus != 0 {
		t.setLineLocked(true)
	}
	t.mu.Unlock()
	t.dev.Reset()
	if s.Status&StatusDriverOK != 0 {
		if err := t.dev.Activate(s.DriverFeatures, t.queues); err != nil {
			return fmt.Errorf("restore virtio-mmio state: activate: %w", err)
		}
	}
	return nil
}

// checkState validates s and maps the rings of its ready queues.
func (t *Transport) checkState(s State) ([]rings, error) {
	switch {
	case s.Status&^validStatus != 0:
		return nil, fmt.Errorf("%w: status %#x has unknown bits", ErrBadState, s.Status)
	case s.Status&StatusDriverOK != 0 && s.Status&StatusFeaturesOK == 0:
		return nil, fmt.Errorf("%w: status %#x has DRIVER_OK without FEATURES_OK", ErrBadState, s.Status)
	case s.Status&StatusFeaturesOK != 0 && (s.DriverFeatures&^t.offered != 0 || s.DriverFeatures&FeatureVersion1 == 0):
		return nil, fmt.Errorf("%w: negotiated features %#x are not a subset of this device's %#x with VERSION_1",
			ErrBadState, s.DriverFeatures, t.offered)
	case s.InterruptStatus&^(IntUsedBuffer|IntConfigChange) != 0:
		return nil, fmt.Errorf("%w: interrupt status %#x has unknown bits", ErrBadState, s.InterruptStatus)
	case len(s.Queues) != len(t.queues):
		return nil, fmt.Errorf("%w: %d queues saved, device has %d", ErrBadState, len(s.Queues), len(t.queues))
	}
	rs := make([]rings, len(t.queues))
	for i, qs := range s.Queues {
		if !qs.Ready {
			continue
		}
		cfg := queueConfig{size: qs.Size, desc: qs.DescAddr, driver: qs.DriverAddr, device: qs.DeviceAddr}
		r, err := validateRings(t.mem, t.queues[i].max, cfg)
		if err != nil {
			return nil, fmt.Errorf("%w: queue %d: %w", ErrBadState, i, err)
		}
		if out := qs.LastAvail - qs.UsedIdx; out > qs.Size {
			return nil, fmt.Errorf("%w: queue %d: %d chains outstanding in a queue of %d", ErrBadState, i, out, qs.Size)
		}
		rs[i] = r
	}
	return rs, nil
}
