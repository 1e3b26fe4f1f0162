package boot

import (
	"bytes"
	"fmt"
)

// Kind is the boot protocol a kernel image uses.
type Kind int

const (
	// KindPVH is an ELF kernel with a XEN_ELFNOTE_PHYS32_ENTRY note.
	KindPVH Kind = iota + 1
	// KindBzImage is a Linux bzImage (boot protocol 2.12+, 64-bit entry).
	KindBzImage
)

// String names the kind as errors and logs show it.
func (k Kind) String() string {
	switch k {
	case KindPVH:
		return "PVH ELF"
	case KindBzImage:
		return "bzImage"
	default:
		return fmt.Sprintf("Kind(%d)", int(k))
	}
}

// Mode is the CPU mode the boot vCPU starts in.
type Mode int

const (
	// Mode32 is flat 32-bit protected mode with paging off.
	Mode32 Mode = iota + 1
	// Mode64 is long mode with paging on (identity-mapped page tables).
	Mode64
)

// String names the mode.
func (m Mode) String() string {
	switch m {
	case Mode32:
		return "32-bit protected mode"
	case Mode64:
		return "64-bit long mode"
	default:
		return fmt.Sprintf("Mode(%d)", int(m))
	}
}

// kernelImage is a parsed kernel of either kind; exactly one field is set.
type kernelImage struct {
	bz  *bzImage
	pvh *pvhImage
}

func (k *kernelImage) kind() Kind {
	if k.bz != nil {
		return KindBzImage
	}
	return KindPVH
}

// parseKernel recognises and validates a kernel image.
func parseKernel(image []byte) (*kernelImage, error) {
	switch {
	case bytes.HasPrefix(image, []byte(elfMagic)):
		p, err := parsePVH(image)
		if err != nil {
			return nil, err
		}
		return &kernelImage{pvh: p}, nil
	case hasBzImageMagic(image):
		bz, err := parseBzImage(image)
		if err != nil {
			return nil, err
		}
		return &kernelImage{bz: bz}, nil
	default:
		return nil, fmt.Errorf("not a bzImage (no HdrS magic at 0x202) and not an ELF with a PVH entry note")
	}
}

// Detect says what the kernel image is, after checking that vmmd can boot it;
// the error says why not otherwise.
func Detect(kernel []byte) (Kind, error) {
	k, err := parseKernel(kernel)
	if err != nil {
		return 0, err
	}
	return k.kind(), nil
}
