package virtio

import "fmt"

// needInterruptLocked decides whether moving the used index from old to
// new must interrupt the driver (virtio 1.2, section 2.7.10). It runs
// after the atomic store of used.idx, so it reads what the driver wrote
// after seeing that index, or later.
func (q *Queue) needInterruptLocked(old, new uint16) bool {
	if q.eventIdx {
		usedEvent := q.r.avail.load16(availRingOff + 2*uint64(q.size))
		return new-usedEvent-1 < new-old
	}
	return q.r.avail.load16(0)&availFNoInterrupt == 0
}

// DisableNotify asks the driver not to notify the queue while the device
// is already working through it. It is a hint; with EVENT_IDX it does
// nothing (the avail_event written by EnableNotify already defers
// notifications).
func (q *Queue) DisableNotify() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.active || q.broken || q.eventIdx || q.usedFlags&usedFNoNotify != 0 {
		return
	}
	q.usedFlags |= usedFNoNotify
	q.publishLocked()
}

// EnableNotify asks the driver to notify the queue when it adds buffers,
// and reports whether buffers were added meanwhile (the device must then
// keep popping, or that notification is lost). Call it when Pop returned
// nothing.
func (q *Queue) EnableNotify() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.active || q.broken {
		return false
	}
	if q.eventIdx {
		o := usedRingOff + usedElemLen*uint64(q.size)
		q.r.used.store16(o, q.lastAvail)
		if err := q.t.mem.MarkDirty(q.r.used.gpa+q.r.used.off+o, 2); err != nil {
			q.t.report(fmt.Errorf("queue %d: mark avail_event dirty: %w", q.index, err))
		}
	} else if q.usedFlags&usedFNoNotify != 0 {
		q.usedFlags &^= usedFNoNotify
		q.publishLocked()
	}
	return q.r.avail.load16(availIdxOff) != q.lastAvail
}
