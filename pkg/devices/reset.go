package devices

import "sync/atomic"

// Ports of the reset paths guests use.
const (
	// I8042DataPort is the i8042 keyboard controller's data port.
	I8042DataPort = 0x60
	// I8042CommandPort is the i8042's status (read) and command (write) port.
	I8042CommandPort = 0x64
	// ResetControlPort is the PCI reset control register (Intel RCR).
	ResetControlPort = 0xcf9
)

const (
	// i8042CmdPulseReset pulses the CPU reset line (Linux reboot=k).
	i8042CmdPulseReset = 0xfe
	// rcrResetCPU (RST_CPU) starts the reset selected by the other bits
	// (Linux reboot=p writes 0x02 then 0x06, or 0x0e).
	rcrResetCPU = 0x04
)

// ResetPorts answers the two legacy ways a PC guest resets itself: a 0xFE
// command to the i8042 keyboard controller at 0x64, and a write with RST_CPU
// (bit 2) set to the reset control register 0xCF9. Both call onReset.
//
// Only the subset of the i8042 that reboot needs is here: status reads 0 (no
// output data, input buffer empty, so a guest waiting to send a command does
// not spin) and data reads 0. Without an output-buffer-full bit Linux's i8042
// driver finds no controller and leaves the ports alone. 0x61 is the PIT's
// speaker port, handled in the kernel, so it is not claimed.
type ResetPorts struct {
	onReset func()
	// rcr holds the last byte written to 0xCF9 (atomic: any vCPU may write).
	rcr atomic.Uint32
}

// NewResetPorts returns the reset ports. onReset runs on the vCPU goroutine
// that asked for the reset and must not block; nil ignores resets.
func NewResetPorts(onReset func()) *ResetPorts {
	return &ResetPorts{onReset: onReset}
}

// Ranges returns where the reset ports answer: 0x60, 0x64 and 0xCF9.
func (r *ResetPorts) Ranges() []PortRange {
	return []PortRange{
		{Base: I8042DataPort, Size: 1, Name: "i8042-data"},
		{Base: I8042CommandPort, Size: 1, Name: "i8042-command"},
		{Base: ResetControlPort, Size: 1, Name: "pci-reset-control"},
	}
}

// Register registers r on b at every range of Ranges.
func (r *ResetPorts) Register(b *Bus) error { return registerAll(b, r, r.Ranges()) }

// PortIn implements PortDevice. Bytes of a wide access that fall on ports
// not ours read as all-ones, as they would on the bus.
func (r *ResetPorts) PortIn(port uint16, data []byte) {
	for i := range data {
		switch uint32(port) + uint32(i) {
		case I8042DataPort, I8042CommandPort:
			data[i] = 0
		case ResetControlPort:
			data[i] = byte(r.rcr.Load())
		default:
			data[i] = 0xff
		}
	}
}

// PortOut implements PortDevice.
func (r *ResetPorts) PortOut(port uint16, data []byte) {
	if len(data) == 0 {
		return
	}
	v := data[0]
	switch port {
	case I8042CommandPort:
		if v == i8042CmdPulseReset {
			r.reset()
		}
	case ResetControlPort:
		r.rcr.Store(uint32(v))
		if v&rcrResetCPU != 0 {
			r.reset()
		}
	}
}

func (r *ResetPorts) reset() {
	if r.onReset != nil {
		r.onReset()
	}
}
