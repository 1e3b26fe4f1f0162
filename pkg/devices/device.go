package devices

// PortDevice handles x86 port I/O. data is 1, 2 or 4 bytes long (the access
// width); PortIn fills it, PortOut reads it. port is the absolute port of the
// first byte, so a device registered over several ports can tell its
// registers apart. Devices must cope with any length, including accesses that
// run past the end of their range, without panicking.
type PortDevice interface {
	PortIn(port uint16, data []byte)
	PortOut(port uint16, data []byte)
}

// MMIODevice handles memory-mapped I/O; addr is the absolute guest-physical
// address of the first byte and data is 1 to 8 bytes long.
type MMIODevice interface {
	MMIORead(addr uint64, data []byte)
	MMIOWrite(addr uint64, data []byte)
}

// IRQLine raises (level true) or lowers an interrupt line of the in-kernel
// irqchip. The machine passes kvm's VM.IRQLine (KVM_IRQ_LINE).
type IRQLine func(irq uint32, level bool) error

// PortRange is one contiguous run of ports that a device wants registered
// under a name (used by devices that answer at several places).
type PortRange struct {
	// Base is the first port.
	Base uint16
	// Size is the number of ports.
	Size uint16
	// Name identifies the range in Bus errors and logs.
	Name string
}

// registerAll registers d at every range, stopping at the first error.
func registerAll(b *Bus, d PortDevice, ranges []PortRange) error {
	for _, r := range ranges {
		if err := b.RegisterPort(r.Base, r.Size, d, r.Name); err != nil {
			return err
		}
	}
	return nil
}
