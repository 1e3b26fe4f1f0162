package acpi

// ResetVectorAddr is the guest-physical address real-mode code reaches when
// it jumps to the x86 reset vector F000:FFF0, the entry point of a PC's
// firmware.
//
// A hardware-reduced FADT makes Linux (arch/x86/kernel/reboot.c,
// reboot_init) choose EFI as its default reboot method whenever no DMI quirk
// matches, EFI or not. Without EFI runtime services that method returns at
// once and the kernel falls back to BOOT_BIOS: machine_real_restart drops to
// real mode and jumps to F000:FFF0, expecting firmware there to reset the
// machine; it never tries the FADT's reset register. vmmd has no firmware, so
// that jump used to run whatever bytes were there and the guest hung instead
// of rebooting (reboot=k, which skips this choice, worked). Write therefore
// puts ResetVectorCode there: it does what the firmware would, a write of
// ResetValue to ResetPort, the same reset the FADT describes.
const ResetVectorAddr = 0xFFFF0

// resetVectorSize is the room from the reset vector to the end of the first
// MiB.
const resetVectorSize = 16

// ResetVectorCode returns the 16-bit real-mode code Write places at
// ResetVectorAddr: with interrupts off, write ResetValue to ResetPort, then
// halt forever (the VMM resets the vCPU out of the halt).
func ResetVectorCode() []byte {
	return []byte{
		0xFA,             // cli
		0xB0, ResetValue, // mov al, ResetValue
		0xBA, ResetPort & 0xFF, ResetPort >> 8, // mov dx, ResetPort
		0xEE,       // out dx, al
		0xF4,       // 1: hlt
		0xEB, 0xFD, // jmp 1b
	}
}
