package boot

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// Offsets into the bzImage file (and, from 0x1F1, into boot_params, where
// the kernel's setup header is copied verbatim). See the kernel's
// Documentation/arch/x86/boot.rst.
const (
	hdrStart           = 0x1F1
	hdrSetupSects      = 0x1F1
	hdrSyssize         = 0x1F4
	hdrVidMode         = 0x1FA
	hdrBootFlag        = 0x1FE
	hdrJump            = 0x200
	hdrMagic           = 0x202
	hdrVersion         = 0x206
	hdrTypeOfLoader    = 0x210
	hdrLoadflags       = 0x211
	hdrRamdiskImage    = 0x218
	hdrRamdiskSize     = 0x21C
	hdrHeapEndPtr      = 0x224
	hdrCmdLinePtr      = 0x228
	hdrInitrdAddrMax   = 0x22C
	hdrKernelAlignment = 0x230
	hdrRelocatable     = 0x234
	hdrXloadflags      = 0x236
	hdrCmdlineSize     = 0x238
	hdrPrefAddress     = 0x258
	hdrInitSize        = 0x260
	// hdrMinEnd is the end of the protocol 2.11 header (handover_offset):
	// every field vmmd reads lies before it.
	hdrMinEnd = 0x268
	// hdrMaxEnd is where boot_params stops holding the setup header.
	hdrMaxEnd = 0x290

	bootFlagMagic = 0xAA55
	loadedHigh    = 0x01 // loadflags: protected-mode code at 0x100000
	canUseHeap    = 0x80 // loadflags: heap_end_ptr is valid
	xlfKernel64   = 0x01 // xloadflags: 64-bit entry at load address + 0x200

	// minProtocol is the oldest protocol accepted at all; xloadflags, which
	// says whether the 64-bit entry exists, came with 2.12.
	minProtocol       = 0x0206
	xloadflagsVersion = 0x020C
	// defaultInitrdAddrMax is the protocol's value when the field is 0.
	defaultInitrdAddrMax = 0x37FFFFFF
	// entry64Offset is the offset of startup_64 from the load address.
	entry64Offset = 0x200
)

// bzImage is a validated Linux bzImage.
type bzImage struct {
	version       uint16
	header        []byte // file bytes [hdrStart, end of setup header)
	kernel        []byte // protected-mode part, loaded at HighMemAddr
	cmdlineMax    uint64
	initrdAddrMax uint64 // highest address the initrd may occupy (inclusive)
	relocatable   bool
	alignment     uint64
	prefAddress   uint64
	initSize      uint64
}

func protoString(v uint16) string { return fmt.Sprintf("%d.%02d", v>>8, v&0xff) }

// hasBzImageMagic reports whether the image has the setup header signature.
func hasBzImageMagic(image []byte) bool {
	return len(image) >= hdrMagic+4 && string(image[hdrMagic:hdrMagic+4]) == "HdrS"
}

// parseBzImage validates a bzImage for 64-bit loading at 1 MiB.
func parseBzImage(image []byte) (*bzImage, error) {
	le := binary.LittleEndian
	if !hasBzImageMagic(image) {
		if bytes.HasPrefix(image, []byte(elfMagic)) {
			return nil, fmt.Errorf("not a bzImage (no HdrS magic at 0x202): the file is an ELF, load it as PVH")
		}
		return nil, fmt.Errorf("not a bzImage (no HdrS magic at 0x202)")
	}
	if len(image) < hdrVersion+2 {
		return nil, fmt.Errorf("bzImage truncated: %d bytes end inside the setup header", len(image))
	}
	if bf := le.Uint16(image[hdrBootFlag:]); bf != bootFlagMagic {
		return nil, fmt.Errorf("bzImage boot_flag at 0x1FE is %#04x, want 0xAA55", bf)
	}
	v := le.Uint16(image[hdrVersion:])
	if v < minProtocol {
		return nil, fmt.Errorf("bzImage protocol %s too old: need >= 2.06 with XLF_KERNEL_64", protoString(v))
	}
	if v < xloadflagsVersion {
		return nil, fmt.Errorf("bzImage protocol %s has no xloadflags (added in 2.12): cannot confirm a 64-bit entry point (XLF_KERNEL_64)", protoString(v))
	}
	if len(image) < hdrMinEnd {
		return nil, fmt.Errorf("bzImage truncated: %d bytes, the protocol %s setup header needs %#x", len(image), protoString(v), hdrMinEnd)
	}
	hdrEnd := hdrMagic + int(image[hdrJump+1])
	if hdrEnd < hdrMinEnd {
		return nil, fmt.Errorf("bzImage setup header ends at %#x (jump at 0x200), before the protocol 2.12 fields end at %#x", hdrEnd, hdrMinEnd)
	}
	hdrEnd = min(hdrEnd, hdrMaxEnd)
	if xl := le.Uint16(image[hdrXloadflags:]); xl&xlfKernel64 == 0 {
		return nil, fmt.Errorf("bzImage has no 64-bit entry point: XLF_KERNEL_64 not set in xloadflags %#x", xl)
	}
	if lf := image[hdrLoadflags]; lf&loadedHigh == 0 {
		return nil, fmt.Errorf("bzImage loadflags %#x lack LOADED_HIGH: a zImage loaded at 0x10000 is not supported", lf)
	}
	setupSects := int(image[hdrSetupSects])
	if setupSects == 0 {
		setupSects = 4 // the protocol's meaning of 0
	}
	setupSize := (setupSects + 1) * 512
	if setupSize >= len(image) {
		return nil, fmt.Errorf("bzImage setup_sects %d puts the protected-mode kernel at %#x, at or beyond the end of the %d-byte file", image[hdrSetupSects], setupSize, len(image))
	}
	if hdrEnd > setupSize {
		return nil, fmt.Errorf("bzImage setup header ends at %#x, beyond the %#x-byte setup code", hdrEnd, setupSize)
	}
	kernel := image[setupSize:]
	if sys := uint64(le.Uint32(image[hdrSyssize:])) * 16; sys > uint64(len(kernel)) {
		return nil, fmt.Errorf("bzImage truncated: protected-mode kernel is %d bytes, syssize says %d", len(kernel), sys)
	}
	bz := &bzImage{
		version:       v,
		header:        image[hdrStart:hdrEnd],
		kernel:        kernel,
		cmdlineMax:    uint64(le.Uint32(image[hdrCmdlineSize:])),
		initrdAddrMax: uint64(le.Uint32(image[hdrInitrdAddrMax:])),
		relocatable:   image[hdrRelocatable] != 0,
		alignment:     uint64(le.Uint32(image[hdrKernelAlignment:])),
		prefAddress:   le.Uint64(image[hdrPrefAddress:]),
		initSize:      uint64(le.Uint32(image[hdrInitSize:])),
	}
	if bz.initrdAddrMax == 0 {
		bz.initrdAddrMax = defaultInitrdAddrMax
	}
	if bz.initSize == 0 {
		return nil, fmt.Errorf("bzImage init_size is 0: cannot tell how much memory the kernel needs")
	}
	if bz.relocatable {
		if a := bz.alignment; a == 0 || a&(a-1) != 0 || a > 1<<30 {
			return nil, fmt.Errorf("bzImage kernel_alignment %#x is not a power of two up to 1 GiB", a)
		}
		if bz.prefAddress >= 1<<32 {
			return nil, fmt.Errorf("bzImage pref_address %#x is above 4 GiB", bz.prefAddress)
		}
	} else if bz.prefAddress < HighMemAddr || bz.prefAddress >= 1<<32 {
		return nil, fmt.Errorf("bzImage is not relocatable and its pref_address %#x is not between 1 MiB and 4 GiB", bz.prefAddress)
	}
	return bz, nil
}

// footprintEnd is the first address after everything the kernel uses before
// it reads the memory map: the loaded file, and init_size bytes from where
// startup_64 decompresses to. For a relocatable kernel that is the load
// address aligned up to kernel_alignment but never below LOAD_PHYSICAL_ADDR
// (= pref_address), as arch/x86/boot/compressed/head_64.S computes it.
func (bz *bzImage) footprintEnd() uint64 {
	start := bz.prefAddress
	if bz.relocatable {
		start = max(alignUp(HighMemAddr, bz.alignment), bz.prefAddress)
	}
	return max(HighMemAddr+uint64(len(bz.kernel)), start+bz.initSize)
}
