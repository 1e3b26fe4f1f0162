package virtio

import "fmt"

// CmdlineArg returns the kernel command-line parameter that announces a
// virtio-mmio device to a Linux kernel built with
// CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES, in Linux's <size>@<baseaddr>:<irq>
// form, for example "virtio_mmio.device=4K@0xd0000000:5".
func CmdlineArg(base uint64, size uint64, irq uint32) string {
	return fmt.Sprintf("virtio_mmio.device=%s@%#x:%d", formatSize(size), base, irq)
}

// formatSize writes size with the largest binary suffix that divides it,
// as Linux's memparse reads it back.
func formatSize(size uint64) string {
	for _, u := range []struct {
		shift  uint
		suffix string
	}{{30, "G"}, {20, "M"}, {10, "K"}} {
		if size != 0 && size%(1<<u.shift) == 0 {
			return fmt.Sprintf("%d%s", size>>u.shift, u.suffix)
		}
	}
	return fmt.Sprintf("%d", size)
}
