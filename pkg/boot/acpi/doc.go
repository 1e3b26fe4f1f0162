// Package acpi builds the ACPI tables that let a stock Linux kernel find a
// vmmd machine's CPUs, interrupt controller and devices without
// virtio_mmio.device= support on its command line, the way Firecracker and
// QEMU's microvm describe their machines.
//
// The platform is hardware-reduced (ACPI 6): there are no PM1/GPE register
// blocks and no SCI. What it provides:
//
//   - RSDP (revision 2) pointing at an XSDT that lists the FADT and MADT.
//   - FADT (revision 6) with HW_REDUCED_ACPI, a reset register (system I/O
//     port ResetPort, value ResetValue) and the sleep control and status
//     registers (system I/O ports SleepControlPort and SleepStatusPort, one
//     byte each). Linux powers off by writing
//     (SleepTypeS5<<2)|SleepEnable to the sleep control register.
//   - MADT: one enabled local APIC per CPU (APIC ids 0..n-1), the IOAPIC
//     (id n, GSI base 0), IRQ0 overridden to GSI 2 and, for every device
//     interrupt below 16 that is level-triggered, an override saying so.
//   - DSDT: virtio-mmio devices ("LNRO0005") and COM1 under \_SB, and \_S5.
//   - At the reset vector F000:FFF0, a few bytes of real-mode code that do
//     the FADT's reset: Linux reboots a hardware-reduced machine by jumping
//     there (see ResetVectorAddr for why).
//
// Build turns a Config into Tables; Tables.Write lays them out in guest
// memory at a caller-chosen base, filling in the addresses that point from
// one table to another, and writes the reset vector's code.
package acpi
