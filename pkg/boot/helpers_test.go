package boot

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/vmmd/vmmd/pkg/memory"
)

const (
	mib = 1 << 20
	gib = 1 << 30
)

// newMem maps real guest memory of the given size for a test.
func newMem(t testing.TB, size uint64) *memory.Memory {
	t.Helper()
	m, err := memory.New(size)
	if err != nil {
		t.Fatalf("memory.New(%#x): %v", size, err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("close memory: %v", err)
		}
	})
	return m
}

// fakeMem is guest memory with arbitrary regions, for layouts memory.New
// never produces. Pages are allocated on first write.
type fakeMem struct {
	regions []memory.Region
	pages   map[uint64][]byte
}

func newFakeMem(regions ...memory.Region) *fakeMem {
	return &fakeMem{regions: regions, pages: map[uint64][]byte{}}
}

func (m *fakeMem) Regions() []memory.Region { return append([]memory.Region(nil), m.regions...) }

func (m *fakeMem) check(gpa uint64, n int) error {
	for _, r := range m.regions {
		if gpa >= r.GPA && gpa+uint64(n) >= gpa && gpa+uint64(n) <= r.GPA+r.Size {
			return nil
		}
	}
	return fmt.Errorf("%w: [%#x, +%#x)", memory.ErrOutOfRange, gpa, n)
}

func (m *fakeMem) Read(gpa uint64, p []byte) error {
	if err := m.check(gpa, len(p)); err != nil {
		return err
	}
	for i := range p {
		a := gpa + uint64(i)
		if pg := m.pages[a/pageSize]; pg != nil {
			p[i] = pg[a%pageSize]
		} else {
			p[i] = 0
		}
	}
	return nil
}

func (m *fakeMem) Write(gpa uint64, p []byte) error {
	if err := m.check(gpa, len(p)); err != nil {
		return err
	}
	for i, c := range p {
		a := gpa + uint64(i)
		pg := m.pages[a/pageSize]
		if pg == nil {
			pg = make([]byte, pageSize)
			m.pages[a/pageSize] = pg
		}
		pg[a%pageSize] = c
	}
	return nil
}

// readMem reads n bytes of guest memory or fails the test.
func readMem(t testing.TB, m Memory, gpa uint64, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if err := m.Read(gpa, b); err != nil {
		t.Fatalf("read %#x+%d: %v", gpa, n, err)
	}
	return b
}

func u16(b []byte, off int) uint16 { return binary.LittleEndian.Uint16(b[off:]) }
func u32(b []byte, off int) uint32 { return binary.LittleEndian.Uint32(b[off:]) }
func u64(b []byte, off int) uint64 { return binary.LittleEndian.Uint64(b[off:]) }

// pattern returns n bytes that differ from zero and from each other's
// neighbours, so misplaced copies show.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) ^ seed | 1
	}
	return b
}

// bzSpec describes a synthetic bzImage; zero fields take sane defaults.
type bzSpec struct {
	kernelSize    int    // protected-mode part, default 64 KiB
	initSize      uint32 // default 4 MiB
	initrdAddrMax uint32 // default 0x7FFFFFFF
	cmdlineSize   uint32 // default 2047
	prefAddress   uint64 // default 16 MiB
	fixed         bool   // not relocatable
}

// buildBzImage returns a minimal bzImage with a protocol 2.15 header: four
// setup sectors after the boot sector, then the protected-mode kernel.
func buildBzImage(s bzSpec) []byte {
	if s.kernelSize == 0 {
		s.kernelSize = 64 << 10
	}
	if s.initSize == 0 {
		s.initSize = 4 * mib
	}
	if s.initrdAddrMax == 0 {
		s.initrdAddrMax = 0x7FFFFFFF
	}
	if s.cmdlineSize == 0 {
		s.cmdlineSize = 2047
	}
	if s.prefAddress == 0 {
		s.prefAddress = 16 * mib
	}
	const setupSects = 4
	setup := make([]byte, (setupSects+1)*512)
	le := binary.LittleEndian
	setup[hdrSetupSects] = setupSects
	le.PutUint32(setup[hdrSyssize:], uint32((s.kernelSize+15)/16))
	le.PutUint16(setup[hdrBootFlag:], bootFlagMagic)
	setup[hdrJump] = 0xEB
	setup[hdrJump+1] = 0x6A // header ends at 0x26C (kernel_info_offset)
	copy(setup[hdrMagic:], "HdrS")
	le.PutUint16(setup[hdrVersion:], 0x020F)
	setup[hdrLoadflags] = loadedHigh
	le.PutUint32(setup[hdrInitrdAddrMax:], s.initrdAddrMax)
	le.PutUint32(setup[hdrKernelAlignment:], 2*mib)
	if !s.fixed {
		setup[hdrRelocatable] = 1
	}
	le.PutUint16(setup[hdrXloadflags:], xlfKernel64|0x2)
	le.PutUint32(setup[hdrCmdlineSize:], s.cmdlineSize)
	le.PutUint64(setup[hdrPrefAddress:], s.prefAddress)
	le.PutUint32(setup[hdrInitSize:], s.initSize)
	// A byte past the header that must not reach boot_params.
	setup[0x26C] = 0xCC
	return append(setup, pattern(s.kernelSize, 0x5A)...)
}

// elfSeg is a PT_LOAD segment of a synthetic ELF.
type elfSeg struct {
	paddr uint64
	data  []byte
	memsz uint64 // 0: len(data)
}

// elfNote is one note in the PT_NOTE segment of a synthetic ELF.
type elfNote struct {
	name string
	typ  uint32
	desc []byte
}

// elfSpec describes a synthetic little-endian x86 ELF executable.
type elfSpec struct {
	class64 bool
	machine elf.Machine // default EM_X86_64 / EM_386 by class
	segs    []elfSeg
	notes   []elfNote // in one PT_NOTE segment, if any
	align8  bool      // notes padded to 8 bytes, p_align 8
}

// pvhNote is the XEN_ELFNOTE_PHYS32_ENTRY note with a 4- or 8-byte desc.
func pvhNote(entry uint64, descSize int) elfNote {
	d := make([]byte, descSize)
	if descSize == 8 {
		binary.LittleEndian.PutUint64(d, entry)
	} else {
		binary.LittleEndian.PutUint32(d, uint32(entry))
	}
	return elfNote{name: "Xen", typ: xenElfnotePhys32Entry, desc: d}
}

func pad(b []byte, n int) []byte {
	for len(b)%n != 0 {
		b = append(b, 0)
	}
	return b
}

// buildELF lays out the header, program headers, notes and segment data.
func buildELF(s elfSpec) []byte {
	le := binary.LittleEndian
	ehsize, phentsize := 52, 32
	if s.class64 {
		ehsize, phentsize = 64, 56
	}
	if s.machine == 0 {
		s.machine = elf.EM_386
		if s.class64 {
			s.machine = elf.EM_X86_64
		}
	}
	var notes []byte
	noteAlign := 4
	if s.align8 {
		noteAlign = 8
	}
	for _, n := range s.notes {
		var h [12]byte
		le.PutUint32(h[0:], uint32(len(n.name)+1))
		le.PutUint32(h[4:], uint32(len(n.desc)))
		le.PutUint32(h[8:], n.typ)
		notes = append(notes, h[:]...)
		notes = pad(append(append(notes, n.name...), 0), noteAlign)
		notes = pad(append(notes, n.desc...), noteAlign)
	}
	type phdr struct {
		typ                               elf.ProgType
		off, paddr, filesz, memsz, pAlign uint64
	}
	nph := len(s.segs)
	if len(s.notes) > 0 {
		nph++
	}
	off := uint64(ehsize + nph*phentsize)
	var body []byte
	var phs []phdr
	if len(s.notes) > 0 {
		for (off+uint64(len(body)))%8 != 0 {
			body = append(body, 0)
		}
		phs = append(phs, phdr{elf.PT_NOTE, off + uint64(len(body)), 0, uint64(len(notes)), uint64(len(notes)), uint64(noteAlign)})
		body = append(body, notes...)
	}
	for _, sg := range s.segs {
		for (off+uint64(len(body)))%16 != 0 {
			body = append(body, 0)
		}
		memsz := sg.memsz
		if memsz == 0 {
			memsz = uint64(len(sg.data))
		}
		phs = append(phs, phdr{elf.PT_LOAD, off + uint64(len(body)), sg.paddr, uint64(len(sg.data)), memsz, 16})
		body = append(body, sg.data...)
	}
	var entry uint64
	if len(s.segs) > 0 {
		entry = s.segs[0].paddr
	}
	h := make([]byte, ehsize)
	copy(h, elfMagic)
	h[elf.EI_CLASS] = byte(elf.ELFCLASS32)
	if s.class64 {
		h[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	}
	h[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	h[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	le.PutUint16(h[16:], uint16(elf.ET_EXEC))
	le.PutUint16(h[18:], uint16(s.machine))
	le.PutUint32(h[20:], uint32(elf.EV_CURRENT))
	var out bytes.Buffer
	if s.class64 {
		le.PutUint64(h[24:], entry)
		le.PutUint64(h[32:], uint64(ehsize)) // e_phoff
		le.PutUint16(h[52:], uint16(ehsize))
		le.PutUint16(h[54:], uint16(phentsize))
		le.PutUint16(h[56:], uint16(nph))
		out.Write(h)
		for _, p := range phs {
			ph := make([]byte, phentsize)
			le.PutUint32(ph[0:], uint32(p.typ))
			le.PutUint32(ph[4:], uint32(elf.PF_R|elf.PF_X))
			le.PutUint64(ph[8:], p.off)
			le.PutUint64(ph[16:], p.paddr)
			le.PutUint64(ph[24:], p.paddr)
			le.PutUint64(ph[32:], p.filesz)
			le.PutUint64(ph[40:], p.memsz)
			le.PutUint64(ph[48:], p.pAlign)
			out.Write(ph)
		}
	} else {
		le.PutUint32(h[24:], uint32(entry))
		le.PutUint32(h[28:], uint32(ehsize))
		le.PutUint16(h[40:], uint16(ehsize))
		le.PutUint16(h[42:], uint16(phentsize))
		le.PutUint16(h[44:], uint16(nph))
		out.Write(h)
		for _, p := range phs {
			ph := make([]byte, phentsize)
			le.PutUint32(ph[0:], uint32(p.typ))
			le.PutUint32(ph[4:], uint32(p.off))
			le.PutUint32(ph[8:], uint32(p.paddr))
			le.PutUint32(ph[12:], uint32(p.paddr))
			le.PutUint32(ph[16:], uint32(p.filesz))
			le.PutUint32(ph[20:], uint32(p.memsz))
			le.PutUint32(ph[24:], uint32(elf.PF_R|elf.PF_X))
			le.PutUint32(ph[28:], uint32(p.pAlign))
			out.Write(ph)
		}
	}
	out.Write(body)
	return out.Bytes()
}

// buildPVH returns a PVH ELF with a text segment at 1 MiB (entry 16 bytes
// into it) and a data segment at 2 MiB with 64 KiB of BSS.
func buildPVH(class64 bool, descSize int) []byte {
	return buildELF(elfSpec{
		class64: class64,
		segs: []elfSeg{
			{paddr: 1 * mib, data: pattern(8192, 1)},
			{paddr: 2 * mib, data: pattern(4096, 2), memsz: 4096 + 64<<10},
		},
		notes: []elfNote{
			{name: "GNU", typ: 3, desc: []byte{1, 2, 3, 4, 5}},
			pvhNote(1*mib+16, descSize),
		},
	})
}
