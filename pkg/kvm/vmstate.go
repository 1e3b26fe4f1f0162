package kvm

import "fmt"

// In-kernel irqchip ids for GetIRQChip/SetIRQChip (KVM_IRQCHIP_*).
const (
	IRQChipPICMaster uint32 = 0
	IRQChipPICSlave  uint32 = 1
	IRQChipIOAPIC    uint32 = 2
)

// IRQChip mirrors struct kvm_irqchip. Chip holds a kvm_pic_state or a
// kvm_ioapic_state depending on ChipID; see PIC and IOAPIC.
type IRQChip struct {
	ChipID uint32
	Pad    uint32
	Chip   [512]byte
}

// PITChannelState mirrors struct kvm_pit_channel_state.
type PITChannelState struct {
	Count         uint32
	LatchedCount  uint16
	CountLatched  uint8
	StatusLatched uint8
	Status        uint8
	ReadState     uint8
	WriteState    uint8
	WriteLatch    uint8
	RWMode        uint8
	Mode          uint8
	BCD           uint8
	Gate          uint8
	CountLoadTime int64
}

// PITState2 mirrors struct kvm_pit_state2.
type PITState2 struct {
	Channels [3]PITChannelState
	Flags    uint32
	Reserved [9]uint32
}

// PITState2.Flags bits (KVM_PIT_FLAGS_*).
const (
	PITFlagsHPETLegacy    uint32 = 1
	PITFlagsSpeakerDataOn uint32 = 2
)

// ClockData mirrors struct kvm_clock_data (Linux 5.16+ layout with
// realtime and host_tsc).
type ClockData struct {
	// Clock is kvmclock nanoseconds.
	Clock uint64
	Flags uint32
	Pad0  uint32
	// Realtime is CLOCK_REALTIME ns at the moment of Clock (valid with
	// ClockRealtime in Flags).
	Realtime uint64
	// HostTSC is the host TSC at the moment of Clock (valid with
	// ClockHostTSC in Flags).
	HostTSC uint64
	Pad     [4]uint32
}

// ClockData.Flags bits (KVM_CLOCK_*).
const (
	ClockTSCStable uint32 = 2
	ClockRealtime  uint32 = 1 << 2
	ClockHostTSC   uint32 = 1 << 3
)

// GetIRQChip runs KVM_GET_IRQCHIP for chipID (IRQChipPICMaster, ...).
func (v *VM) GetIRQChip(chipID uint32) (*IRQChip, error) {
	if chipID > IRQChipIOAPIC {
		return nil, fmt.Errorf("KVM_GET_IRQCHIP: unknown chip id %d", chipID)
	}
	c := &IRQChip{ChipID: chipID}
	if err := ioctlNamed(&v.fd, "KVM_GET_IRQCHIP", kvmGetIRQChip, c); err != nil {
		return nil, fmt.Errorf("%w (chip %d)", err, chipID)
	}
	return c, nil
}

// SetIRQChip runs KVM_SET_IRQCHIP.
func (v *VM) SetIRQChip(c *IRQChip) error {
	if c == nil {
		return fmt.Errorf("KVM_SET_IRQCHIP: nil state")
	}
	if c.ChipID > IRQChipIOAPIC {
		return fmt.Errorf("KVM_SET_IRQCHIP: unknown chip id %d", c.ChipID)
	}
	if err := ioctlNamed(&v.fd, "KVM_SET_IRQCHIP", kvmSetIRQChip, c); err != nil {
		return fmt.Errorf("%w (chip %d)", err, c.ChipID)
	}
	return nil
}

// GetPIT2 runs KVM_GET_PIT2.
func (v *VM) GetPIT2() (*PITState2, error) {
	p := &PITState2{}
	if err := ioctlNamed(&v.fd, "KVM_GET_PIT2", kvmGetPIT2, p); err != nil {
		return nil, err
	}
	return p, nil
}

// SetPIT2 runs KVM_SET_PIT2.
func (v *VM) SetPIT2(p *PITState2) error {
	if p == nil {
		return fmt.Errorf("KVM_SET_PIT2: nil state")
	}
	return ioctlNamed(&v.fd, "KVM_SET_PIT2", kvmSetPIT2, p)
}

// GetClock runs KVM_GET_CLOCK.
func (v *VM) GetClock() (*ClockData, error) {
	c := &ClockData{}
	if err := ioctlNamed(&v.fd, "KVM_GET_CLOCK", kvmGetClock, c); err != nil {
		return nil, err
	}
	return c, nil
}

// SetClock runs KVM_SET_CLOCK. Of the flags KVM acts only on
// ClockRealtime: with it, KVM advances Clock by the CLOCK_REALTIME time
// elapsed since Realtime (for migration downtime).
func (v *VM) SetClock(c *ClockData) error {
	if c == nil {
		return fmt.Errorf("KVM_SET_CLOCK: nil state")
	}
	return ioctlNamed(&v.fd, "KVM_SET_CLOCK", kvmSetClock, c)
}
