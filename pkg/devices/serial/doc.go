// Package serial emulates a 16550A UART (8250 family) as a PC's COM port,
// for the guest's console.
//
// The UART is a devices.PortDevice over 8 consecutive ports (COM1 is 0x3f8,
// IRQ 4). Register behaviour follows the National Semiconductor PC16550D
// datasheet closely enough for Linux's 8250 driver to autodetect a 16550A
// and run it interrupt-driven, and for a polling guest to use LSR alone.
//
// # Concurrency
//
// vCPU goroutines access the registers concurrently with an input goroutine
// (Input, InputWait) and with the UART's own writer goroutine, which moves
// transmitted bytes to the output io.Writer. A vCPU never waits for that
// writer: transmitted bytes go into a bounded buffer, and bytes that do not
// fit are dropped and counted (Dropped). The guest's console is diagnostic;
// a stalled terminal or socket must not stall the guest, nor leave a vCPU
// stuck in userspace where pause and migration cannot reach it.
//
// # Simplifications
//
// Transmission is instantaneous: THR is empty again as soon as it is
// written, so LSR.THRE and LSR.TEMT always read set. There is no baud-rate
// timing, no receive trigger level and no character timeout: the receive
// data interrupt is pending whenever the receive FIFO holds data (Linux
// treats IIR's RDA and timeout identically). The receive FIFO holds up to
// RxFIFOSize bytes, FIFO mode or not, and parity, framing and break errors
// never occur.
package serial
