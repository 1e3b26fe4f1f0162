package machine

import (
	"errors"
	"fmt"

	"github.com/vmmd/vmmd/pkg/kvm"
	"github.com/vmmd/vmmd/pkg/memory"
)

// RAM returns guest memory, for a migration to read and write pages.
func (m *Machine) RAM() *memory.Memory { return m.mem }

// setDirtyLogging re-registers every RAM slot with or without
// KVM_MEM_LOG_DIRTY_PAGES. KVM allows this while vCPUs run. Caller holds
// dirtyMu.
func (m *Machine) setDirtyLogging(on bool) error {
	var flags uint32
	if on {
		flags = kvm.MemLogDirtyPages
	}
	for i, r := range m.mem.Regions() {
		err := m.vm.SetUserMemoryRegion(kvm.UserMemoryRegion{Slot: uint32(i), Flags: flags,
			GuestPhysAddr: r.GPA, MemorySize: r.Size, UserspaceAddr: uint64(m.mem.HostAddr(i))})
		if err != nil {
			return err
		}
	}
	return nil
}

// StartDirtyLog makes KVM log the pages vCPUs write, in every RAM slot, and
// forgets the pages devices wrote so far: from now on SyncDirty reports
// every page written since the previous sync (the first sync: since this
// call). Calling it again while logging restarts the log.
func (m *Machine) StartDirtyLog() error {
	if m.closed.Load() {
		return ErrClosed
	}
	m.dirtyMu.Lock()
	defer m.dirtyMu.Unlock()
	if err := m.setDirtyLogging(true); err != nil {
		// Leave no slot half-switched.
		return errors.Join(fmt.Errorf("start dirty logging: %w", err), m.setDirtyLogging(false))
	}
	m.dirtyOn = true
	// Drop what KVM and the devices logged before this point.
	return m.syncDirtyLocked(func(memory.Region, []uint64) error { return nil })
}

// StopDirtyLog turns dirty logging off (the migration finished, failed or
// was cancelled). It is idempotent.
func (m *Machine) StopDirtyLog() error {
	if m.closed.Load() {
		return nil
	}
	m.dirtyMu.Lock()
	defer m.dirtyMu.Unlock()
	if !m.dirtyOn {
		return nil
	}
	if err := m.setDirtyLogging(false); err != nil {
		return fmt.Errorf("stop dirty logging: %w", err)
	}
	m.dirtyOn = false
	return nil
}

// SyncDirty fetches and clears KVM's dirty log of each RAM region, ORs in
// (and clears) the pages device emulation wrote, and calls fn once per
// region with the region and its bitmap: bit i%64 of word i/64 set means
// the page at region.GPA + i*4096 was written since the last sync. The
// bitmap is only valid during fn. An error from fn stops the sync and is
// returned; the bits of the regions not yet visited stay logged.
func (m *Machine) SyncDirty(fn func(r memory.Region, bits []uint64) error) error {
	if m.closed.Load() {
		return ErrClosed
	}
	m.dirtyMu.Lock()
	defer m.dirtyMu.Unlock()
	if !m.dirtyOn {
		return errors.New("sync dirty pages: dirty logging is not on (StartDirtyLog first)")
	}
	return m.syncDirtyLocked(fn)
}

func (m *Machine) syncDirtyLocked(fn func(r memory.Region, bits []uint64) error) error {
	for i, r := range m.mem.Regions() {
		n := m.mem.DirtyWords(i)
		if cap(m.dirtyBuf) < n {
			m.dirtyBuf = make([]uint64, n)
		}
		b := m.dirtyBuf[:n]
		clear(b)
		if err := m.vm.GetDirtyLog(uint32(i), b); err != nil {
			return fmt.Errorf("sync dirty pages: %w", err)
		}
		if err := m.mem.TakeDirty(i, b); err != nil {
			return fmt.Errorf("sync dirty pages: %w", err)
		}
		if err := fn(r, b); err != nil {
			return err
		}
	}
	return nil
}
