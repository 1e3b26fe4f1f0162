package devices

import (
	"sync/atomic"
	"time"
)

// Ports QuietPorts answers.
const (
	// CMOSIndexPort selects a CMOS/RTC register (bit 7 is the NMI mask).
	CMOSIndexPort = 0x70
	// CMOSDataPort reads the selected CMOS/RTC register.
	CMOSDataPort = 0x71
	// DMAPageFirst and DMAPageLast bound the DMA page registers (0x80, the
	// first of the block, is the debug port).
	DMAPageFirst = 0x81
	DMAPageLast  = 0x8f
	// SystemControlPortA is port 0x92 (fast A20 gate).
	SystemControlPortA = 0x92
	// PCIConfigAddress and PCIConfigData are the PCI configuration
	// mechanism #1 ports; 0xCF9 inside the address dword is ResetPorts'.
	PCIConfigAddress = 0xcf8
	PCIConfigData    = 0xcfc
)

// a20Enabled is port 0x92's value: bit 1 says the A20 gate is open.
const a20Enabled = 0x02

// QuietPorts answers, without logging, ports that guests probe on a PC and
// that have no device behind them here, with values that make the probe
// conclude sensibly. It claims:
//
//   - 0x70-0x71: CMOS index and data, with a read-only RTC (see rtc.go):
//     the current UTC time in BCD, 24-hour mode, status registers A-D;
//     other CMOS bytes read 0 and writes to the data port are ignored;
//     reading the index port returns 0xff as on QEMU.
//   - 0x81-0x8f: DMA page registers (0x87 among them): read 0, writes
//     ignored. Nothing does ISA DMA here, and keeping no value means no
//     state to migrate.
//   - 0x92: system control port A: reads 0x02 (A20 on); writes are ignored,
//     including the fast-reset bit 0 (Linux reboots through ACPI, the i8042
//     or 0xCF9, which ResetPorts handles).
//   - 0xcf8, 0xcfa-0xcfb and 0xcfc-0xcff: PCI configuration mechanism #1.
//     There is no PCI here: everything reads all-ones and writes are
//     dropped, so Linux's pci_check_type1/type2 find no host bridge. 0xcf9
//     is left out for ResetPorts.
//
// It does not claim 0x20-0x21, 0xa0-0xa1 (PIC), 0x40-0x43 (PIT) or 0x61 (PIT
// speaker): the in-kernel irqchip and PIT answer those before they reach
// userspace.
type QuietPorts struct {
	// now reads the clock for the RTC; tests replace it.
	now func() time.Time
	// cmosIndex is the selected CMOS register (atomic: any vCPU may
	// select; racing guests get what real hardware gives them).
	cmosIndex atomic.Uint32
}

// NewQuietPorts returns the quiet ports, with the RTC on the host's clock.
func NewQuietPorts() *QuietPorts {
	return &QuietPorts{now: time.Now}
}

// Ranges returns every range QuietPorts claims.
func (q *QuietPorts) Ranges() []PortRange {
	return []PortRange{
		{Base: CMOSIndexPort, Size: 2, Name: "cmos-rtc"},
		{Base: DMAPageFirst, Size: DMAPageLast - DMAPageFirst + 1, Name: "dma-page"},
		{Base: SystemControlPortA, Size: 1, Name: "port92-a20"},
		{Base: PCIConfigAddress, Size: 1, Name: "pci-config-address"},
		{Base: PCIConfigAddress + 2, Size: 2, Name: "pci-config-address-hi"},
		{Base: PCIConfigData, Size: 4, Name: "pci-config-data"},
	}
}

// Register registers q on b at every range of Ranges.
func (q *QuietPorts) Register(b *Bus) error { return registerAll(b, q, q.Ranges()) }

// PortIn implements PortDevice, byte by byte so wide accesses read what each
// port would.
func (q *QuietPorts) PortIn(port uint16, data []byte) {
	for i := range data {
		data[i] = q.readByte(uint32(port) + uint32(i))
	}
}

func (q *QuietPorts) readByte(port uint32) byte {
	switch {
	case port == CMOSIndexPort:
		return 0xff
	case port == CMOSDataPort:
		return rtcRead(byte(q.cmosIndex.Load()), q.now())
	case port >= DMAPageFirst && port <= DMAPageLast:
		return 0
	case port == SystemControlPortA:
		return a20Enabled
	default:
		// PCI configuration space and anything a wide access ran into.
		return 0xff
	}
}

// PortOut implements PortDevice. Only the CMOS index is kept.
func (q *QuietPorts) PortOut(port uint16, data []byte) {
	if port == CMOSIndexPort && len(data) > 0 {
		q.cmosIndex.Store(uint32(data[0] & cmosIndexMask))
	}
}
