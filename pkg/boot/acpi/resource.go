package acpi

import "encoding/binary"

// Resource descriptors (ACPI 6.5, section 6.4) for _CRS buffers.
const (
	resSmallIO        = 0x47 // small item 0x08, 7 bytes
	resSmallEndTag    = 0x79 // small item 0x0F, 1 byte
	resLargeMem32Fix  = 0x86
	resLargeExtIRQ    = 0x89
	resMem32FixLen    = 9
	resExtIRQBaseLen  = 2 // flags + table length, before the interrupt numbers
	resIODecode16     = 1
	resMemReadWrite   = 1
	resIRQConsumer    = 1 << 0
	resIRQEdge        = 1 << 1
	resIRQActiveLow   = 1 << 2
	resIRQShared      = 1 << 3
	resEndTagChecksum = 0 // zero means "treat as checksummed", as ASL compilers emit
)

// resMemory32Fixed encodes Memory32Fixed(ReadWrite or ReadOnly, base, size).
func resMemory32Fixed(readWrite bool, base, size uint32) []byte {
	out := make([]byte, 3+resMem32FixLen)
	out[0] = resLargeMem32Fix
	binary.LittleEndian.PutUint16(out[1:], resMem32FixLen)
	if readWrite {
		out[3] = resMemReadWrite
	}
	binary.LittleEndian.PutUint32(out[4:], base)
	binary.LittleEndian.PutUint32(out[8:], size)
	return out
}

// resIO encodes IO(Decode16, min, max, align, length).
func resIO(min, max uint16, align, length uint8) []byte {
	out := []byte{resSmallIO, resIODecode16, 0, 0, 0, 0, align, length}
	binary.LittleEndian.PutUint16(out[2:], min)
	binary.LittleEndian.PutUint16(out[4:], max)
	return out
}

// irqMode is how an interrupt line signals.
type irqMode struct {
	edge, activeLow, shared bool
}

// resInterrupt encodes Interrupt(ResourceConsumer, mode...) { irq }, the
// extended interrupt descriptor that names a GSI directly.
func resInterrupt(m irqMode, irq uint32) []byte {
	out := make([]byte, 3+resExtIRQBaseLen+4)
	out[0] = resLargeExtIRQ
	binary.LittleEndian.PutUint16(out[1:], resExtIRQBaseLen+4)
	flags := byte(resIRQConsumer)
	if m.edge {
		flags |= resIRQEdge
	}
	if m.activeLow {
		flags |= resIRQActiveLow
	}
	if m.shared {
		flags |= resIRQShared
	}
	out[3] = flags
	out[4] = 1
	binary.LittleEndian.PutUint32(out[5:], irq)
	return out
}

// resourceTemplate wraps descriptors in a Buffer ending with an EndTag.
func resourceTemplate(descs ...[]byte) ([]byte, error) {
	var data []byte
	for _, d := range descs {
		data = append(data, d...)
	}
	data = append(data, resSmallEndTag, resEndTagChecksum)
	return amlBuffer(data)
}
