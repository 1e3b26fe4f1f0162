package acpi

import "fmt"

// COM1, the only serial port vmmd describes.
const (
	// COM1Port is COM1's first I/O port.
	COM1Port = 0x3F8
	// COM1Ports is how many I/O ports COM1 decodes.
	COM1Ports = 8
	// COM1IRQ is COM1's ISA IRQ (IOAPIC pin).
	COM1IRQ = 4

	com1Name      = "COM1"
	com1HID       = "PNP0501"
	dsdtRevision  = 2 // 64-bit AML integers
	virtioMMIOHID = "LNRO0005"
)

// dsdt builds the Differentiated System Description Table from a validated
// Config: the devices and COM1 under \_SB, then \_S5.
func dsdt(cfg Config) ([]byte, error) {
	var devs [][]byte
	for _, d := range cfg.Devices {
		b, err := deviceAML(d)
		if err != nil {
			return nil, fmt.Errorf("DSDT device %s: %w", d.Name, err)
		}
		devs = append(devs, b)
	}
	if cfg.Serial {
		b, err := com1AML()
		if err != nil {
			return nil, fmt.Errorf("DSDT COM1: %w", err)
		}
		devs = append(devs, b)
	}
	sb, err := amlScope(`\_SB_`, devs...)
	if err != nil {
		return nil, fmt.Errorf("DSDT \\_SB: %w", err)
	}
	s5, err := s5AML()
	if err != nil {
		return nil, fmt.Errorf("DSDT \\_S5: %w", err)
	}
	t := newTable("DSDT", dsdtRevision, headerSize+len(sb)+len(s5))
	copy(t[headerSize:], sb)
	copy(t[headerSize+len(sb):], s5)
	return finishTable(t), nil
}

// deviceAML describes one MMIO device with its register window and line.
func deviceAML(d Device) ([]byte, error) {
	hid, err := amlHID(d.HID)
	if err != nil {
		return nil, err
	}
	crs, err := resourceTemplate(
		resMemory32Fixed(true, uint32(d.MMIOBase), uint32(d.MMIOSize)),
		resInterrupt(irqMode{edge: d.EdgeTriggered}, d.IRQ),
	)
	if err != nil {
		return nil, fmt.Errorf("_CRS: %w", err)
	}
	return namedDevice(d.Name, hid, uint64(d.UID), crs)
}

// com1AML describes the 16550 at COM1Port.
func com1AML() ([]byte, error) {
	hid, err := amlHID(com1HID)
	if err != nil {
		return nil, err
	}
	crs, err := resourceTemplate(
		resIO(COM1Port, COM1Port, 0, COM1Ports),
		resInterrupt(irqMode{edge: true}, COM1IRQ),
	)
	if err != nil {
		return nil, fmt.Errorf("_CRS: %w", err)
	}
	return namedDevice(com1Name, hid, 0, crs)
}

// namedDevice encodes Device(name) { Name(_HID) Name(_UID) Name(_CRS) }.
func namedDevice(name string, hid []byte, uid uint64, crs []byte) ([]byte, error) {
	var body [][]byte
	for _, n := range []struct {
		name string
		obj  []byte
	}{{"_HID", hid}, {"_UID", amlInteger(uid)}, {"_CRS", crs}} {
		b, err := amlName(n.name, n.obj)
		if err != nil {
			return nil, err
		}
		body = append(body, b)
	}
	return amlDevice(name, body...)
}

// s5AML declares the soft-off state: SLP_TYPa SleepTypeS5; the other three
// elements (SLP_TYPb and two reserved) are 0, as QEMU emits them.
func s5AML() ([]byte, error) {
	pkg, err := amlPackage(amlInteger(SleepTypeS5), amlInteger(0), amlInteger(0), amlInteger(0))
	if err != nil {
		return nil, err
	}
	return amlName(`\_S5_`, pkg)
}
