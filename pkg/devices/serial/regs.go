package serial

// Well-known placement of the first PC serial port.
const (
	// COM1Base is COM1's first port.
	COM1Base = 0x3f8
	// COM1IRQ is COM1's ISA interrupt line.
	COM1IRQ = 4
	// PortCount is how many ports a UART occupies.
	PortCount = 8
)

// Register offsets from the base port.
const (
	regData = 0 // RBR (read) / THR (write); DLL when LCR.DLAB
	regIER  = 1 // IER; DLM when LCR.DLAB
	regIIR  = 2 // IIR (read) / FCR (write)
	regLCR  = 3
	regMCR  = 4
	regLSR  = 5
	regMSR  = 6
	regSCR  = 7
)

// IER bits.
const (
	ierRDA  = 0x01 // ERBFI: received data available
	ierTHRE = 0x02 // ETBEI: transmitter holding register empty
	ierRLS  = 0x04 // ELSI: receiver line status
	ierMS   = 0x08 // EDSSI: modem status
	ierMask = 0x0f // the upper bits read 0 on a 16550A (Linux probes this)
)

// IIR values, in priority order (highest first), and flags.
const (
	iirNoInt = 0x01
	iirRLS   = 0x06
	iirRDA   = 0x04
	iirTHRE  = 0x02
	iirMS    = 0x00
	iirID    = 0x0f
	// iirFIFO is set while the FIFOs are enabled; both bits together are
	// what Linux's autoconfig reads as a 16550A.
	iirFIFO = 0xc0
)

// FCR bits.
const (
	fcrEnable  = 0x01
	fcrClearRx = 0x02
	fcrClearTx = 0x04
	fcrTrigger = 0xc0
	// fcrKept is what the UART remembers of an FCR write; the clear bits
	// self-clear and DMA mode has no effect here.
	fcrKept = fcrEnable | fcrTrigger
)

// LCR bits.
const lcrDLAB = 0x80

// MCR bits.
const (
	mcrDTR  = 0x01
	mcrRTS  = 0x02
	mcrOut1 = 0x04
	mcrOut2 = 0x08
	mcrLoop = 0x10
	mcrMask = 0x1f
)

// LSR bits.
const (
	lsrDR   = 0x01
	lsrOE   = 0x02
	lsrPE   = 0x04
	lsrFE   = 0x08
	lsrBI   = 0x10
	lsrTHRE = 0x20
	lsrTEMT = 0x40
	lsrFIFO = 0x80
	// lsrErr are the bits an LSR read clears, and that raise the receiver
	// line status interrupt.
	lsrErr = lsrOE | lsrPE | lsrFE | lsrBI | lsrFIFO
)

// MSR bits.
const (
	msrDCTS  = 0x01
	msrDDSR  = 0x02
	msrTERI  = 0x04
	msrDDCD  = 0x08
	msrCTS   = 0x10
	msrDSR   = 0x20
	msrRI    = 0x40
	msrDCD   = 0x80
	msrDelta = 0x0f
	msrLines = 0xf0
)

// Power-on values, as QEMU's serial_reset sets them.
const (
	resetDLL = 0x0c // 9600 baud from the 1.8432 MHz clock
	resetMCR = mcrOut2
	// resetLines are the modem inputs when nothing is in loopback: a
	// terminal is attached and ready (DCD, DSR, CTS).
	resetLines = msrDCD | msrDSR | msrCTS
)
