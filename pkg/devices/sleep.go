package devices

// Hardware-reduced ACPI (what vmmd's FADT describes) has no PM1 blocks:
// the FADT points SLEEP_CONTROL_REG and SLEEP_STATUS_REG at these ports.
const (
	SleepControlPort = 0x3C0
	SleepStatusPort  = 0x3C1

	sleepEnable    = 1 << 5 // SLP_EN in the sleep control register
	sleepTypeShift = 2      // SLP_TYP, bits 2-4
	sleepTypeS5    = 5      // the \_S5 value in vmmd's DSDT
)

// SleepControl is the ACPI sleep control and status register pair. Writing
// SLP_EN with SLP_TYP 5 (S5, as the DSDT's \_S5 says) powers off; vmmd has
// no suspend, so other sleep types are ignored. Status reads 0: the guest
// never sleeps, so it never wakes.
type SleepControl struct {
	onPowerOff func()
}

// NewSleepControl returns the register pair; onPowerOff runs on the vCPU
// goroutine and must not block (nil ignores power-off requests).
func NewSleepControl(onPowerOff func()) *SleepControl {
	return &SleepControl{onPowerOff: onPowerOff}
}

// Ranges returns where the registers answer: 0x3C0-0x3C1.
func (s *SleepControl) Ranges() []PortRange {
	return []PortRange{{Base: SleepControlPort, Size: 2, Name: "acpi-sleep"}}
}

// Register registers s on b at Ranges.
func (s *SleepControl) Register(b *Bus) error { return registerAll(b, s, s.Ranges()) }

// PortIn implements PortDevice: both registers read as 0.
func (s *SleepControl) PortIn(_ uint16, data []byte) {
	for i := range data {
		data[i] = 0
	}
}

// PortOut implements PortDevice.
func (s *SleepControl) PortOut(port uint16, data []byte) {
	if port != SleepControlPort || len(data) == 0 {
		return // writes to the status register clear WAK_STS, which is never set
	}
	v := data[0]
	if v&sleepEnable != 0 && (v>>sleepTypeShift)&7 == sleepTypeS5 && s.onPowerOff != nil {
		s.onPowerOff()
	}
}
