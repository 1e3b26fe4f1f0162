package virtio

import (
	"encoding/binary"
	"fmt"
)

// offset returns addr's offset in the window and whether it is inside.
func (t *Transport) offset(addr uint64) (uint64, bool) {
	if addr < t.base || addr-t.base >= WindowSize {
		return 0, false
	}
	return addr - t.base, true
}

// MMIORead implements devices.MMIODevice. Registers answer only aligned
// 32-bit reads; any other access, and reads of write-only or unknown
// registers, return zeros.
func (t *Transport) MMIORead(addr uint64, data []byte) {
	clear(data)
	off, ok := t.offset(addr)
	if !ok {
		return
	}
	if off >= ConfigOffset {
		t.dev.ReadConfig(off-ConfigOffset, data)
		return
	}
	if len(data) != 4 || off%4 != 0 {
		return
	}
	t.mu.Lock()
	v := t.readRegLocked(off)
	t.mu.Unlock()
	binary.LittleEndian.PutUint32(data, v)
}

func (t *Transport) readRegLocked(off uint64) uint32 {
	switch off {
	case RegMagicValue:
		return MagicValue
	case RegVersion:
		return Version
	case RegDeviceID:
		return t.devID
	case RegVendorID:
		return VendorID
	case RegDeviceFeatures:
		switch t.devFeatSel {
		case 0:
			return uint32(t.offered)
		case 1:
			return uint32(t.offered >> 32)
		}
	case RegQueueNumMax:
		if q := t.selectedLocked(); q != nil {
			return uint32(q.max)
		}
	case RegQueueReady:
		if q := t.selectedLocked(); q != nil && q.cfg.ready {
			return 1
		}
	case RegInterruptStatus:
		return t.intStatus
	case RegStatus:
		return t.status
	case RegConfigGeneration:
		return t.configGen
	case RegSHMLenLow, RegSHMLenHigh, RegSHMBaseLow, RegSHMBaseHigh:
		// No shared memory regions: every region reads as length -1.
		return 0xffffffff
	}
	return 0
}

// selectedLocked returns the queue QueueSel names, or nil.
func (t *Transport) selectedLocked() *Queue {
	if uint64(t.queueSel) < uint64(len(t.queues)) {
		return t.queues[t.queueSel]
	}
	return nil
}

// after is what a register write leaves to do once t.mu is released.
type after struct {
	reset    bool
	activate bool
	features uint64
	err      error // a newly set DEVICE_NEEDS_RESET, to report
}

// MMIOWrite implements devices.MMIODevice. Registers take only aligned
// 32-bit writes; other accesses and writes to read-only or unknown
// registers are ignored.
func (t *Transport) MMIOWrite(addr uint64, data []byte) {
	off, ok := t.offset(addr)
	if !ok {
		return
	}
	if off >= ConfigOffset {
		t.dev.WriteConfig(off-ConfigOffset, data)
		return
	}
	if len(data) != 4 || off%4 != 0 {
		return
	}
	v := binary.LittleEndian.Uint32(data)
	if off == RegQueueNotify {
		// Lock-free: the hot path of every request.
		t.Notify(int(min(v, 1<<16)))
		return
	}
	t.mu.Lock()
	a := t.writeRegLocked(off, v)
	t.mu.Unlock()
	if a.err != nil {
		t.report(fmt.Errorf("virtio device %d needs reset: %w", t.devID, a.err))
	}
	if a.reset {
		t.dev.Reset()
	}
	if a.activate {
		if err := t.dev.Activate(a.features, t.queues); err != nil {
			t.needsReset(fmt.Errorf("activate: %w", err))
		}
	}
}

func (t *Transport) writeRegLocked(off uint64, v uint32) after {
	q := t.selectedLocked()
	// Queue registers are frozen while the queue is ready.
	qcfg := q != nil && !q.cfg.ready
	switch off {
	case RegDeviceFeaturesSel:
		t.devFeatSel = v
	case RegDriverFeaturesSel:
		t.drvFeatSel = v
	case RegDriverFeatures:
		if t.status&StatusFeaturesOK == 0 {
			switch t.drvFeatSel {
			case 0:
				t.drvFeatures = t.drvFeatures&^0xffffffff | uint64(v)
			case 1:
				t.drvFeatures = t.drvFeatures&0xffffffff | uint64(v)<<32
			}
		}
	case RegQueueSel:
		t.queueSel = v
	case RegQueueNum:
		if qcfg {
			// An impossible size stays impossible (0) rather than being
			// truncated into a valid one.
			q.cfg.size = 0
			if v <= 0xffff {
				q.cfg.size = uint16(v)
			}
		}
	case RegQueueDescLow:
		if qcfg {
			setLow(&q.cfg.desc, v)
		}
	case RegQueueDescHigh:
		if qcfg {
			setHigh(&q.cfg.desc, v)
		}
	case RegQueueDriverLow:
		if qcfg {
			setLow(&q.cfg.driver, v)
		}
	case RegQueueDriverHigh:
		if qcfg {
			setHigh(&q.cfg.driver, v)
		}
	case RegQueueDeviceLow:
		if qcfg {
			setLow(&q.cfg.device, v)
		}
	case RegQueueDeviceHigh:
		if qcfg {
			setHigh(&q.cfg.device, v)
		}
	case RegQueueReady:
		if q != nil {
			return t.setReadyLocked(q, v&1 != 0)
		}
	case RegInterruptACK:
		t.ackLocked(v)
	case RegStatus:
		return t.writeStatusLocked(v)
	}
	return after{}
}

func setLow(p *uint64, v uint32)  { *p = *p&^0xffffffff | uint64(v) }
func setHigh(p *uint64, v uint32) { *p = *p&0xffffffff | uint64(v)<<32 }

// setReadyLocked enables a queue after checking its size and rings, or
// disables it. A queue that fails the checks stays not ready and the
// device needs a reset.
func (t *Transport) setReadyLocked(q *Queue, ready bool) after {
	switch {
	case ready && !q.cfg.ready:
		r, err := validateRings(t.mem, q.max, q.cfg)
		if err != nil {
			err = fmt.Errorf("queue %d: %w", q.index, err)
			if t.needsResetLocked(err) {
				return after{err: err}
			}
			return after{}
		}
		q.mapRings(r, q.cfg.size)
		q.cfg.ready = true
		if t.status&StatusDriverOK != 0 {
			q.activate(t.drvFeatures)
		}
	case !ready && q.cfg.ready:
		q.unmap()
		q.cfg.ready = false
	}
	return after{}
}

// writeStatusLocked applies a Status write: 0 resets; otherwise bits are
// only ever added, FEATURES_OK only sticks if the features are acceptable,
// DRIVER_OK only after FEATURES_OK, and DEVICE_NEEDS_RESET belongs to the
// device.
func (t *Transport) writeStatusLocked(v uint32) after {
	if v == 0 {
		t.resetLocked()
		return after{reset: true}
	}
	old := t.status
	next := old | v&^StatusNeedsReset
	if next&StatusFeaturesOK != 0 && old&StatusFeaturesOK == 0 && !t.featuresAcceptableLocked() {
		next &^= StatusFeaturesOK
	}
	var a after
	if next&StatusDriverOK != 0 && old&StatusDriverOK == 0 {
		if next&StatusFeaturesOK == 0 {
			next &^= StatusDriverOK
		} else {
			for _, q := range t.queues {
				if q.cfg.ready {
					q.activate(t.drvFeatures)
				}
			}
			a = after{activate: true, features: t.drvFeatures}
		}
	}
	t.status = next
	return a
}

// featuresAcceptableLocked reports whether the driver accepted only
// offered features, including VIRTIO_F_VERSION_1 (this transport has no
// legacy interface).
func (t *Transport) featuresAcceptableLocked() bool {
	return t.drvFeatures&^t.offered == 0 && t.drvFeatures&FeatureVersion1 != 0
}

// resetLocked returns every register and queue to the reset state and
// lowers the interrupt line.
func (t *Transport) resetLocked() {
	t.status = 0
	t.devFeatSel, t.drvFeatSel, t.drvFeatures, t.queueSel = 0, 0, 0, 0
	t.broken = nil
	t.ackLocked(^uint32(0))
	for _, q := range t.queues {
		q.unmap()
		q.cfg = queueConfig{}
	}
}
