package devices

import "sync"

// PM1aControlPort is the ACPI PM1a control register block (16 bits), where
// QEMU's q35 puts it; the FADT must point PM1a_CNT_BLK here.
const PM1aControlPort = 0x604

const (
	// pm1SCIEnable (SCI_EN) reads as set: there is no SMI command port and
	// no legacy mode, so the platform is always in ACPI mode.
	pm1SCIEnable = 1 << 0
	// pm1SleepEnable (SLP_EN) is write-only: writing it enters the sleep
	// state in SLP_TYP; it always reads as 0.
	pm1SleepEnable = 1 << 13
)

// PowerPort is the ACPI PM1a control register at 0x604. A write with SLP_EN
// (bit 13) set calls onPowerOff, whatever SLP_TYP says: vmmd has no suspend,
// so any sleep request is taken as S5 (soft off). The test guest writes
// 0x2000 (SLP_TYP 0, SLP_EN).
type PowerPort struct {
	onPowerOff func()
	// mu protects cnt; a byte-wide write is a read-modify-write.
	mu  sync.Mutex
	cnt uint16
}

// NewPowerPort returns the PM1a control register. onPowerOff runs on the
// vCPU goroutine that wrote SLP_EN and must not block; nil ignores it.
func NewPowerPort(onPowerOff func()) *PowerPort {
	return &PowerPort{onPowerOff: onPowerOff, cnt: pm1SCIEnable}
}

// Ranges returns where the port answers: 0x604-0x605.
func (p *PowerPort) Ranges() []PortRange {
	return []PortRange{{Base: PM1aControlPort, Size: 2, Name: "acpi-pm1a-cnt"}}
}

// Register registers p on b at Ranges.
func (p *PowerPort) Register(b *Bus) error { return registerAll(b, p, p.Ranges()) }

// PortIn implements PortDevice.
func (p *PowerPort) PortIn(port uint16, data []byte) {
	p.mu.Lock()
	v := p.cnt
	p.mu.Unlock()
	for i := range data {
		switch uint32(port) + uint32(i) {
		case PM1aControlPort:
			data[i] = byte(v)
		case PM1aControlPort + 1:
			data[i] = byte(v >> 8)
		default:
			data[i] = 0xff
		}
	}
}

// PortOut implements PortDevice. A byte write to 0x605 alone can set SLP_EN
// too (it is bit 5 of that byte).
func (p *PowerPort) PortOut(port uint16, data []byte) {
	p.mu.Lock()
	v := p.cnt
	for i, b := range data {
		switch uint32(port) + uint32(i) {
		case PM1aControlPort:
			v = v&0xff00 | uint16(b)
		case PM1aControlPort + 1:
			v = v&0x00ff | uint16(b)<<8
		}
	}
	off := v&pm1SleepEnable != 0
	p.cnt = v&^pm1SleepEnable | pm1SCIEnable
	p.mu.Unlock()
	if off && p.onPowerOff != nil {
		p.onPowerOff()
	}
}
