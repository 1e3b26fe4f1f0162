package machine

import (
	"context"
	"fmt"

	"github.com/vmmd/vmmd/pkg/boot"
	"github.com/vmmd/vmmd/pkg/kvm"
)

// vcpuState is the architectural state of a vCPU that vmmd saves and
// restores: at creation (the reset state) and, later, for migration.
type vcpuState struct {
	regs   kvm.Regs
	sregs  kvm.Sregs
	fpu    kvm.FPU
	lapic  *kvm.LAPICState
	mp     kvm.MPState
	events kvm.VCPUEvents
	debug  kvm.DebugRegs
}

func saveVCPU(c *kvm.VCPU) (*vcpuState, error) {
	var s vcpuState
	var err error
	if s.regs, err = c.GetRegs(); err != nil {
		return nil, err
	}
	if s.sregs, err = c.GetSregs(); err != nil {
		return nil, err
	}
	if s.fpu, err = c.GetFPU(); err != nil {
		return nil, err
	}
	if s.lapic, err = c.GetLAPIC(); err != nil {
		return nil, err
	}
	if s.mp, err = c.GetMPState(); err != nil {
		return nil, err
	}
	if s.events, err = c.GetVCPUEvents(); err != nil {
		return nil, err
	}
	if s.debug, err = c.GetDebugRegs(); err != nil {
		return nil, err
	}
	return &s, nil
}

// restoreVCPU writes s back. The order follows what KVM needs: special
// registers (CR/EFER, APIC base) before the LAPIC, the LAPIC before MP state
// and pending events.
func restoreVCPU(c *kvm.VCPU, s *vcpuState) error {
	if err := c.SetSregs(s.sregs); err != nil {
		return err
	}
	if err := c.SetRegs(s.regs); err != nil {
		return err
	}
	if err := c.SetFPU(s.fpu); err != nil {
		return err
	}
	lapic := *s.lapic
	if err := c.SetLAPIC(&lapic); err != nil {
		return err
	}
	if err := c.SetMPState(s.mp); err != nil {
		return err
	}
	if err := c.SetVCPUEvents(s.events); err != nil {
		return err
	}
	return c.SetDebugRegs(s.debug)
}

// snapshotChips records the in-kernel PIC, IOAPIC and PIT as created, so
// that reset can return them to power-on state.
func (m *Machine) snapshotChips() error {
	for _, id := range []uint32{kvm.IRQChipPICMaster, kvm.IRQChipPICSlave, kvm.IRQChipIOAPIC} {
		c, err := m.vm.GetIRQChip(id)
		if err != nil {
			return fmt.Errorf("save irqchip %d: %w", id, err)
		}
		m.initChips = append(m.initChips, c)
	}
	pit, err := m.vm.GetPIT2()
	if err != nil {
		return fmt.Errorf("save PIT: %w", err)
	}
	m.initPIT = pit
	return nil
}

// resetLocked returns every vCPU and interrupt controller to power-on state
// and reloads the boot image (the guest may have overwritten it). Caller
// holds m.mu with the vCPUs stopped.
func (m *Machine) resetLocked(ctx context.Context) error {
	for _, c := range m.initChips {
		cc := *c
		if err := m.vm.SetIRQChip(&cc); err != nil {
			return fmt.Errorf("reset irqchip: %w", err)
		}
	}
	pit := *m.initPIT
	if err := m.vm.SetPIT2(&pit); err != nil {
		return fmt.Errorf("reset PIT: %w", err)
	}
	m.uart.Reset()
	entry, err := m.loadImage()
	if err != nil {
		return err
	}
	m.entry = entry
	return m.onEachVCPU(ctx, "reset", func(v *vcpu, c *kvm.VCPU) error {
		if err := restoreVCPU(c, v.initial); err != nil {
			return err
		}
		if v.id == 0 {
			return m.applyEntry(c)
		}
		return nil
	})
}

// applyEntry puts the boot vCPU in the state the boot protocol requires.
func (m *Machine) applyEntry(c *kvm.VCPU) error {
	e := m.entry
	s, err := c.GetSregs()
	if err != nil {
		return err
	}
	code := kvm.Segment{Base: 0, Limit: 0xFFFFFFFF, Selector: e.CodeSelector, Type: 0xB, Present: 1, S: 1, G: 1}
	data := kvm.Segment{Base: 0, Limit: 0xFFFFFFFF, Selector: e.DataSelector, Type: 0x3, Present: 1, S: 1, DB: 1, G: 1}
	if e.Mode == boot.Mode64 {
		code.L = 1
	} else {
		code.DB = 1
	}
	s.CS = code
	s.DS, s.ES, s.FS, s.GS, s.SS = data, data, data, data, data
	s.GDT = kvm.DTable{Base: e.GDTBase, Limit: e.GDTLimit}
	// Hardware-assisted KVM checks that TR holds a busy TSS in protected mode.
	s.TR = kvm.Segment{Limit: 0x67, Type: 0xB, Present: 1}
	s.CR0, s.CR3, s.CR4, s.EFER = e.CR0, e.CR3, e.CR4, e.EFER
	if err := c.SetSregs(s); err != nil {
		return err
	}
	return c.SetRegs(kvm.Regs{RIP: e.RIP, RSP: e.RSP, RSI: e.RSI, RBX: e.RBX, RFLAGS: 2})
}
