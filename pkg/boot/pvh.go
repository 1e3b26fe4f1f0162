package boot

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
)

const (
	elfMagic = "\x7fELF"
	// xenElfnotePhys32Entry is XEN_ELFNOTE_PHYS32_ENTRY: the 32-bit physical
	// PVH entry point, in a note named "Xen".
	xenElfnotePhys32Entry = 18
)

// pvhSegment is one PT_LOAD segment to copy into guest memory.
type pvhSegment struct {
	index int // program header index, for error messages
	paddr uint64
	memsz uint64
	data  []byte // file contents, len <= memsz; the rest is zeroed
}

// pvhImage is a validated PVH-capable ELF.
type pvhImage struct {
	entry    uint64
	segments []pvhSegment
}

// parsePVH reads an ELF kernel's PT_LOAD segments and its PVH entry note.
func parsePVH(image []byte) (img *pvhImage, err error) {
	// debug/elf is meant to return errors on malformed input, but it has
	// panicked on crafted files before; a bad kernel file must never take
	// the daemon down, so a panic in it becomes an error here.
	defer func() {
		if r := recover(); r != nil {
			img, err = nil, fmt.Errorf("parse ELF: malformed file (%v)", r)
		}
	}()
	f, err := elf.NewFile(bytes.NewReader(image))
	if err != nil {
		return nil, fmt.Errorf("parse ELF: %w", err)
	}
	if f.Machine != elf.EM_X86_64 && f.Machine != elf.EM_386 {
		return nil, fmt.Errorf("ELF machine is %v: vmmd needs an x86 (EM_X86_64 or EM_386) kernel", f.Machine)
	}
	entry, found, err := findPVHEntry(f, image)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("ELF without XEN_ELFNOTE_PHYS32_ENTRY: vmmd needs a PVH-capable ELF")
	}
	img = &pvhImage{entry: entry}
	for i, p := range f.Progs {
		if p.Type != elf.PT_LOAD || p.Memsz == 0 {
			continue
		}
		if p.Filesz > p.Memsz {
			return nil, fmt.Errorf("ELF PT_LOAD segment %d: file size %#x exceeds memory size %#x", i, p.Filesz, p.Memsz)
		}
		if p.Paddr+p.Memsz < p.Paddr {
			return nil, fmt.Errorf("ELF PT_LOAD segment %d at %#x with size %#x wraps around the address space", i, p.Paddr, p.Memsz)
		}
		data, err := fileRange(image, p.Off, p.Filesz)
		if err != nil {
			return nil, fmt.Errorf("ELF PT_LOAD segment %d: %w", i, err)
		}
		img.segments = append(img.segments, pvhSegment{index: i, paddr: p.Paddr, memsz: p.Memsz, data: data})
	}
	if len(img.segments) == 0 {
		return nil, fmt.Errorf("ELF has no PT_LOAD segment to load")
	}
	inside := false
	for _, s := range img.segments {
		if entry >= s.paddr && entry < s.paddr+s.memsz {
			inside = true
			break
		}
	}
	if !inside {
		return nil, fmt.Errorf("PVH entry point %#x lies in no PT_LOAD segment", entry)
	}
	return img, nil
}

// fileRange returns image[off, off+n) or an error if the file is too short.
func fileRange(image []byte, off, n uint64) ([]byte, error) {
	if off > uint64(len(image)) || n > uint64(len(image))-off {
		return nil, fmt.Errorf("file range [%#x, +%#x) beyond the end of the %d-byte file", off, n, len(image))
	}
	return image[off : off+n], nil
}

// findPVHEntry looks for XEN_ELFNOTE_PHYS32_ENTRY in the PT_NOTE segments,
// where QEMU and Firecracker look for it too.
func findPVHEntry(f *elf.File, image []byte) (uint64, bool, error) {
	for i, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		notes, err := fileRange(image, p.Off, p.Filesz)
		if err != nil {
			return 0, false, fmt.Errorf("ELF PT_NOTE segment %d: %w", i, err)
		}
		// Notes are 4-byte aligned in practice, even in ELF64; a segment
		// declaring 8-byte alignment (GNU property notes) pads to 8.
		align := uint64(4)
		if p.Align == 8 {
			align = 8
		}
		entry, found, err := scanNotes(notes, f.ByteOrder, align)
		if err != nil {
			return 0, false, fmt.Errorf("ELF PT_NOTE segment %d: %w", i, err)
		}
		if found {
			return entry, true, nil
		}
	}
	return 0, false, nil
}

// scanNotes walks one note segment and decodes the PVH entry note if present.
func scanNotes(b []byte, bo binary.ByteOrder, align uint64) (uint64, bool, error) {
	n := uint64(len(b))
	for off := uint64(0); off+12 <= n; {
		namesz := uint64(bo.Uint32(b[off:]))
		descsz := uint64(bo.Uint32(b[off+4:]))
		typ := bo.Uint32(b[off+8:])
		// Offsets are from the segment start, which is itself aligned:
		// padding aligns the descriptor and the next note, not the sizes.
		nameOff := off + 12
		descOff := alignUp(nameOff+namesz, align)
		next := alignUp(descOff+descsz, align)
		if descOff+descsz > n {
			return 0, false, fmt.Errorf("note at offset %#x (name %d bytes, desc %d bytes) runs past the %d-byte segment", off, namesz, descsz, n)
		}
		name := string(bytes.TrimRight(b[nameOff:nameOff+namesz], "\x00"))
		if name == "Xen" && typ == xenElfnotePhys32Entry {
			desc := b[descOff : descOff+descsz]
			switch descsz {
			case 4:
				return uint64(bo.Uint32(desc)), true, nil
			case 8:
				e := bo.Uint64(desc)
				if e >= 1<<32 {
					return 0, false, fmt.Errorf("XEN_ELFNOTE_PHYS32_ENTRY %#x is not a 32-bit address", e)
				}
				return e, true, nil
			default:
				return 0, false, fmt.Errorf("XEN_ELFNOTE_PHYS32_ENTRY descriptor is %d bytes, want 4 or 8", descsz)
			}
		}
		off = min(next, n)
	}
	return 0, false, nil
}
