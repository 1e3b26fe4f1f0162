package machine

import (
	"context"
	"errors"
	"fmt"

	"github.com/vmmd/vmmd/pkg/devices/virtio"
	"github.com/vmmd/vmmd/pkg/devices/virtio/blk"
	"github.com/vmmd/vmmd/pkg/kvm"
)

// ErrWaitingForIncoming is Resume's refusal on a destination whose state
// has not been loaded yet: its vCPUs hold nothing worth running.
var ErrWaitingForIncoming = errors.New("Guest is waiting for an incoming migration")

// msrIndexList returns KVM's list of MSRs to migrate, read once.
func (m *Machine) msrIndexList() ([]uint32, error) {
	m.msrOnce.Do(func() {
		m.msrIndex, m.msrErr = m.sys.MSRIndexList()
	})
	return m.msrIndex, m.msrErr
}

// SaveState captures the VM's device state (everything but RAM). The VM
// must be stopped (any state but running); wasState, the state it was in
// before it stopped for the migration, is recorded as State.RunState. Disk
// devices are quiesced first if they are not already.
func (m *Machine) SaveState(ctx context.Context, wasState RunState) (*State, error) {
	if !knownState(wasState) {
		return nil, fmt.Errorf("save VM state: unknown run state %q", wasState)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed.Load() {
		return nil, ErrClosed
	}
	if m.running || m.state.Running() {
		return nil, fmt.Errorf("save VM state: the VM is %s; stop it first", m.state)
	}
	if m.needState {
		return nil, fmt.Errorf("save VM state: the VM is waiting for an incoming migration and has no state of its own")
	}
	msrIndex, err := m.msrIndexList()
	if err != nil {
		return nil, fmt.Errorf("save VM state: %w", err)
	}
	if err := m.pauseDisks(ctx); err != nil {
		return nil, fmt.Errorf("save VM state: %w", err)
	}
	s := &State{Version: StateVersion, RunState: wasState, Config: m.MigrationConfig()}
	s.VCPUs = make([]VCPUState, len(m.vcpus))
	err = m.onEachVCPU(ctx, "save VM state:", func(v *vcpu, c *kvm.VCPU) error {
		var err error
		s.VCPUs[v.id], err = saveVCPUFull(c, msrIndex, v.cpuid)
		return err
	})
	if err != nil {
		return nil, err
	}
	chips := []*[]byte{&s.PICMaster, &s.PICSlave, &s.IOAPIC}
	for i, id := range []uint32{kvm.IRQChipPICMaster, kvm.IRQChipPICSlave, kvm.IRQChipIOAPIC} {
		c, err := m.vm.GetIRQChip(id)
		if err != nil {
			return nil, fmt.Errorf("save VM state: %w", err)
		}
		*chips[i] = append([]byte(nil), c.Chip[:]...)
	}
	pit, err := m.vm.GetPIT2()
	if err != nil {
		return nil, fmt.Errorf("save VM state: %w", err)
	}
	s.PIT = *pit
	clock, err := m.vm.GetClock()
	if err != nil {
		return nil, fmt.Errorf("save VM state: %w", err)
	}
	s.Clock = *clock
	s.Serial = m.uart.State()
	for _, d := range m.disks {
		ds, err := d.dev.State()
		if err != nil {
			return nil, fmt.Errorf("save VM state: %w", err)
		}
		s.Disks = append(s.Disks, ds)
	}
	m.log.Info().Int("vcpus", len(s.VCPUs)).Int("disks", len(s.Disks)).Str("was", string(wasState)).
		Msg("VM state saved")
	return s, nil
}

// LoadState restores s into a VM built with Config.Incoming that has not
// run (state inmigrate). It checks everything it can before the first
// KVM set-ioctl: s itself (State.Validate), the configuration, this host's
// MSRs, CPUID, XSAVE support and TSC frequency, and each disk's transport
// state against the device. A refused state leaves the VM untouched. The
// VM stays in inmigrate; Resume(CauseIncomingDone) or EnterState continue.
func (m *Machine) LoadState(ctx context.Context, s *State) error {
	if err := s.Validate(); err != nil {
		return fmt.Errorf("load VM state: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed.Load() {
		return ErrClosed
	}
	if m.state != StateInMigrate || m.running {
		return fmt.Errorf("load VM state: the VM is %s, not waiting for an incoming migration", m.state)
	}
	if err := m.MigrationConfig().Check(s.Config); err != nil {
		return fmt.Errorf("load VM state: configuration differs: %w", err)
	}
	if err := m.checkLoad(ctx, s); err != nil {
		return fmt.Errorf("load VM state: %w", err)
	}
	if err := m.pauseDisks(ctx); err != nil {
		return fmt.Errorf("load VM state: %w", err)
	}
	// From here on KVM and devices change. The serial port first: it
	// validates its own state and changes nothing when it refuses, and it
	// does not touch its interrupt line.
	if err := m.uart.SetState(s.Serial); err != nil {
		return fmt.Errorf("load VM state: %w", err)
	}
	err := m.onEachVCPU(ctx, "load VM state:", func(v *vcpu, c *kvm.VCPU) error {
		vs := &s.VCPUs[v.id]
		if vs.TSCKHz != 0 {
			if khz, err := c.GetTSCKHz(); err == nil && !tscClose(vs.TSCKHz, khz) {
				if err := c.SetTSCKHz(vs.TSCKHz); err != nil {
					return fmt.Errorf("TSC runs at %d kHz here, %d kHz on the source, and cannot be scaled: %w", khz, vs.TSCKHz, err)
				}
			}
		}
		return restoreVCPUFull(c, vs)
	})
	if err != nil {
		return err
	}
	// The irqchip and PIT after the LAPICs, before the devices: a virtio
	// transport re-raises its interrupt line on restore, and that must
	// reach the restored IOAPIC and LAPIC, not be overwritten by them.
	for i, b := range [][]byte{s.PICMaster, s.PICSlave, s.IOAPIC} {
		c := &kvm.IRQChip{ChipID: uint32(i)}
		copy(c.Chip[:], b)
		if err := m.vm.SetIRQChip(c); err != nil {
			return fmt.Errorf("load VM state: %w", err)
		}
	}
	pit := s.PIT
	if err := m.vm.SetPIT2(&pit); err != nil {
		return fmt.Errorf("load VM state: %w", err)
	}
	for i, d := range m.disks {
		if err := d.dev.SetState(s.Disks[i]); err != nil {
			return fmt.Errorf("load VM state: %w", err)
		}
	}
	// kvmclock last, after the kvmclock MSRs. Only the clock value: like
	// QEMU, the guest's clock does not jump over the migration downtime
	// (KVM_CLOCK_REALTIME would make it).
	if err := m.vm.SetClock(&kvm.ClockData{Clock: s.Clock.Clock}); err != nil {
		return fmt.Errorf("load VM state: %w", err)
	}
	m.needState = false
	m.log.Info().Int("vcpus", len(s.VCPUs)).Int("disks", len(s.Disks)).Str("source_state", string(s.RunState)).
		Msg("VM state loaded")
	return nil
}

// checkLoad is the part of LoadState's validation that needs this VM and
// host. It only reads.
func (m *Machine) checkLoad(ctx context.Context, s *State) error {
	if len(s.VCPUs) != len(m.vcpus) {
		return badState("%d vCPU states, this VM has %d vCPUs", len(s.VCPUs), len(m.vcpus))
	}
	if len(s.Disks) != len(m.disks) {
		return badState("%d disk states, this VM has %d disks", len(s.Disks), len(m.disks))
	}
	msrIndex, err := m.msrIndexList()
	if err != nil {
		return err
	}
	known := make(map[uint32]bool, len(msrIndex))
	for _, i := range msrIndex {
		known[i] = true
	}
	for _, v := range m.vcpus {
		vs := &s.VCPUs[v.id]
		for _, r := range vs.MSRs {
			if !known[r.Index] {
				return badState("vCPU %d: MSR %#x is not one KVM migrates on this host", v.id, r.Index)
			}
		}
		if err := v.checkMigrated(vs); err != nil {
			return fmt.Errorf("vCPU %d: %w", v.id, err)
		}
	}
	for i, d := range m.disks {
		if err := checkDiskState(m.mem, d.dev.Transport(), s.Disks[i]); err != nil {
			return fmt.Errorf("disk %d (%s): %w", i, d.drive.Name(), err)
		}
	}
	return nil
}

// checkDiskState checks a virtio-blk state against this VM's device before
// anything is restored (the device checks again, but only after the
// irqchip has been loaded, which cannot be undone).
func checkDiskState(mem virtio.Memory, t *virtio.Transport, s blk.State) error {
	const validStatus = virtio.StatusAcknowledge | virtio.StatusDriver | virtio.StatusDriverOK |
		virtio.StatusFeaturesOK | virtio.StatusNeedsReset | virtio.StatusFailed
	ts := s.Transport
	qs := t.Queues()
	switch {
	case ts.Status&^validStatus != 0:
		return badState("status %#x has unknown bits", ts.Status)
	case ts.Status&virtio.StatusFeaturesOK != 0 && ts.DriverFeatures&^t.OfferedFeatures() != 0:
		return badState("negotiated features %#x are not a subset of the device's %#x", ts.DriverFeatures, t.OfferedFeatures())
	case ts.InterruptStatus&^uint32(virtio.IntUsedBuffer|virtio.IntConfigChange) != 0:
		return badState("interrupt status %#x has unknown bits", ts.InterruptStatus)
	case len(ts.Queues) != len(qs):
		return badState("%d queues saved, the device has %d", len(ts.Queues), len(qs))
	}
	for i, q := range ts.Queues {
		if !q.Ready {
			continue
		}
		n := q.Size
		if n == 0 || n > qs[i].MaxSize() || n&(n-1) != 0 {
			return badState("queue %d: size %d (a power of two up to %d)", i, n, qs[i].MaxSize())
		}
		for _, r := range []struct {
			name string
			gpa  uint64
			len  uint64
		}{{"descriptor table", q.DescAddr, 16 * uint64(n)}, {"available ring", q.DriverAddr, 6 + 2*uint64(n)},
			{"used ring", q.DeviceAddr, 6 + 8*uint64(n)}} {
			if _, err := mem.Slice(r.gpa, r.len); err != nil {
				return badState("queue %d: %s at %#x: %v", i, r.name, r.gpa, err)
			}
		}
	}
	if len(s.Pending) > 0 {
		if len(ts.Queues) == 0 || !ts.Queues[0].Ready {
			return badState("%d pending requests but queue 0 is not ready", len(s.Pending))
		}
		size := ts.Queues[0].Size
		if len(s.Pending) > int(size) {
			return badState("%d pending requests in a queue of %d", len(s.Pending), size)
		}
		seen := make(map[uint16]bool, len(s.Pending))
		for _, h := range s.Pending {
			if h >= size || seen[h] {
				return badState("pending request %d is out of range or listed twice", h)
			}
			seen[h] = true
		}
	}
	return nil
}
