package acpi

import "encoding/binary"

// Registers the FADT points at. A hardware-reduced platform has no PM1
// blocks, so shutdown and reboot go through these.
const (
	// SleepControlPort is the system I/O port of the sleep control
	// register. Linux writes (SleepTypeS5<<2)|SleepEnable to power off.
	SleepControlPort = 0x3C0
	// SleepStatusPort is the system I/O port of the sleep status register;
	// Linux polls bit 7 (WAK_STS) after a sleep request.
	SleepStatusPort = 0x3C1
	// SleepTypeS5 is the SLP_TYP value \_S5 declares.
	SleepTypeS5 = 5
	// SleepTypeShift is where SLP_TYP sits in a sleep control write.
	SleepTypeShift = 2
	// SleepTypeMask selects SLP_TYP in a sleep control write.
	SleepTypeMask = 0x7 << SleepTypeShift
	// SleepEnable is the SLP_EN bit of a sleep control write.
	SleepEnable = 1 << 5
	// ResetPort is the system I/O port of the reset register (the
	// traditional PCI reset control port).
	ResetPort = 0xCF9
	// ResetValue is what the guest writes to ResetPort to reboot.
	ResetValue = 0x06
)

const (
	fadtSize         = 276
	fadtRevision     = 6
	fadtMinorVersion = 5
	hypervisorVendor = "VMMD"

	fadtFlagsOff       = 112
	fadtResetRegOff    = 116
	fadtResetValueOff  = 128
	fadtMinorOff       = 131
	fadtXDSDTOff       = 140
	fadtSleepCtlOff    = 244
	fadtSleepStatusOff = 256
	fadtHypervisorOff  = 268
	fadtIAPCBootOff    = 109

	fadtFlagResetRegSup = 1 << 10
	fadtFlagHWReduced   = 1 << 20
	// fadtFlagPwrButton says there is no fixed-feature power button.
	fadtFlagPwrButton = 1 << 4
	// fadtFlagSlpButton says there is no fixed-feature sleep button.
	fadtFlagSlpButton = 1 << 5

	// IA-PC boot architecture flags: no VGA, and MSI is not offered since
	// there is no PCI bus. Legacy devices and the 8042 are not claimed, so
	// Linux does not probe for them.
	iapcVGANotPresent = 1 << 2
	iapcMSINotSupp    = 1 << 3

	gasSize       = 12
	gasSystemIO   = 1
	gasAccessByte = 1
)

// gasIO encodes a Generic Address Structure for an 8-bit system I/O port.
func gasIO(b []byte, port uint16) {
	b[0] = gasSystemIO
	b[1] = 8 // register bit width
	b[2] = 0 // bit offset
	b[3] = gasAccessByte
	binary.LittleEndian.PutUint64(b[4:], uint64(port))
}

// fadt builds the Fixed ACPI Description Table for a DSDT at dsdt.
func fadt(dsdt uint64) []byte {
	le := binary.LittleEndian
	t := newTable("FACP", fadtRevision, fadtSize)
	le.PutUint16(t[fadtIAPCBootOff:], iapcVGANotPresent|iapcMSINotSupp)
	le.PutUint32(t[fadtFlagsOff:], fadtFlagHWReduced|fadtFlagResetRegSup|fadtFlagPwrButton|fadtFlagSlpButton)
	gasIO(t[fadtResetRegOff:fadtResetRegOff+gasSize], ResetPort)
	t[fadtResetValueOff] = ResetValue
	t[fadtMinorOff] = fadtMinorVersion
	// Only X_DSDT is set: a non-zero 32-bit DSDT that disagreed with it
	// would draw a warning, and the tables may live above 4 GiB.
	le.PutUint64(t[fadtXDSDTOff:], dsdt)
	gasIO(t[fadtSleepCtlOff:fadtSleepCtlOff+gasSize], SleepControlPort)
	gasIO(t[fadtSleepStatusOff:fadtSleepStatusOff+gasSize], SleepStatusPort)
	copy(t[fadtHypervisorOff:fadtHypervisorOff+8], hypervisorVendor)
	return finishTable(t)
}
