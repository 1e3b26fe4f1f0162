package main

import "strconv"

// readyMarker is what the test guest prints on its console once booted.
const readyMarker = "GUEST-READY"

// qemuTunedMachine drops what the tiny guest does not need: option ROMs,
// legacy PIT/PIC/RTC and ACPI tables (the guest falls back without them).
const qemuTunedMachine = "microvm,x-option-roms=off,pit=off,pic=off,rtc=off,acpi=off,isa-serial=on"

// vmmConfig is one VMM command line under test.
type vmmConfig struct {
	// Name labels the configuration in tables and JSON.
	Name string `json:"name"`
	// VMM is "vmmd" or "QEMU".
	VMM  string   `json:"vmm"`
	Path string   `json:"path"`
	Args []string `json:"args"`
}

func (c vmmConfig) isVMMD() bool { return c.VMM == "vmmd" }

// configs returns vmmd first, then the QEMU configurations it is compared with.
func configs(env environment, memoryMiB int) []vmmConfig {
	mem := strconv.Itoa(memoryMiB)
	qemu := func(machine string) []string {
		// -cpu host alone makes QEMU 7.2 abort on PVM hosts (it cannot set
		// IA32_ARCH_CAPABILITIES); masking that feature is harmless.
		return []string{"-enable-kvm", "-M", machine, "-cpu", "host,-arch-capabilities", "-m", mem, "-smp", "1",
			"-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-kernel", env.kernel}
	}
	return []vmmConfig{
		{Name: "vmmd", VMM: "vmmd", Path: env.vmmd, Args: []string{"--kernel", env.kernel, "--memory", mem + "M",
			"--cpus", "1", "--serial", "stdio", "--log-format", "json"}},
		{Name: "microvm-default", VMM: "QEMU", Path: env.qemu, Args: qemu("microvm")},
		{Name: "microvm-tuned", VMM: "QEMU", Path: env.qemu, Args: qemu(qemuTunedMachine)},
	}
}
