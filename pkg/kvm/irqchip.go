package kvm

import (
	"encoding/binary"
	"fmt"
)

// PICState mirrors struct kvm_pic_state, the payload of IRQChip for the two
// i8259 chips.
type PICState struct {
	LastIRR                uint8
	IRR                    uint8
	IMR                    uint8
	ISR                    uint8
	PriorityAdd            uint8
	IRQBase                uint8
	ReadRegSelect          uint8
	Poll                   uint8
	SpecialMask            uint8
	InitState              uint8
	AutoEOI                uint8
	RotateOnAutoEOI        uint8
	SpecialFullyNestedMode uint8
	Init4                  uint8
	ELCR                   uint8
	ELCRMask               uint8
}

// IOAPICNumPins is KVM_IOAPIC_NUM_PINS.
const IOAPICNumPins = 24

// IOAPICState mirrors struct kvm_ioapic_state, the payload of IRQChip for
// IRQChipIOAPIC. RedirTbl entries are the raw 64-bit redirection entries.
type IOAPICState struct {
	BaseAddress uint64
	IORegSel    uint32
	ID          uint32
	IRR         uint32
	Pad         uint32
	RedirTbl    [IOAPICNumPins]uint64
}

const (
	sizeofPICState    = 16
	sizeofIOAPICState = 216
)

// PIC decodes the chip payload of a PIC master or slave.
func (c *IRQChip) PIC() (PICState, error) {
	if c.ChipID != IRQChipPICMaster && c.ChipID != IRQChipPICSlave {
		return PICState{}, fmt.Errorf("irqchip %d is not a PIC", c.ChipID)
	}
	b := c.Chip[:]
	return PICState{b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]}, nil
}

// SetPIC encodes p into the chip payload of a PIC master or slave.
func (c *IRQChip) SetPIC(p PICState) error {
	if c.ChipID != IRQChipPICMaster && c.ChipID != IRQChipPICSlave {
		return fmt.Errorf("irqchip %d is not a PIC", c.ChipID)
	}
	copy(c.Chip[:], []byte{p.LastIRR, p.IRR, p.IMR, p.ISR, p.PriorityAdd, p.IRQBase, p.ReadRegSelect, p.Poll,
		p.SpecialMask, p.InitState, p.AutoEOI, p.RotateOnAutoEOI, p.SpecialFullyNestedMode, p.Init4, p.ELCR, p.ELCRMask})
	return nil
}

// IOAPIC decodes the chip payload of the IOAPIC.
func (c *IRQChip) IOAPIC() (IOAPICState, error) {
	if c.ChipID != IRQChipIOAPIC {
		return IOAPICState{}, fmt.Errorf("irqchip %d is not the IOAPIC", c.ChipID)
	}
	le := binary.LittleEndian
	b := c.Chip[:]
	s := IOAPICState{
		BaseAddress: le.Uint64(b[0:]),
		IORegSel:    le.Uint32(b[8:]),
		ID:          le.Uint32(b[12:]),
		IRR:         le.Uint32(b[16:]),
		Pad:         le.Uint32(b[20:]),
	}
	for i := range s.RedirTbl {
		s.RedirTbl[i] = le.Uint64(b[24+8*i:])
	}
	return s, nil
}

// SetIOAPIC encodes s into the chip payload of the IOAPIC.
func (c *IRQChip) SetIOAPIC(s IOAPICState) error {
	if c.ChipID != IRQChipIOAPIC {
		return fmt.Errorf("irqchip %d is not the IOAPIC", c.ChipID)
	}
	le := binary.LittleEndian
	b := c.Chip[:]
	le.PutUint64(b[0:], s.BaseAddress)
	le.PutUint32(b[8:], s.IORegSel)
	le.PutUint32(b[12:], s.ID)
	le.PutUint32(b[16:], s.IRR)
	le.PutUint32(b[20:], s.Pad)
	for i, e := range s.RedirTbl {
		le.PutUint64(b[24+8*i:], e)
	}
	return nil
}
