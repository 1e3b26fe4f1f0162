package boot

import "encoding/binary"

const (
	pteP  = 1 << 0 // present
	pteRW = 1 << 1 // writable
	ptePS = 1 << 7 // page size: 2 MiB page in a PDE
	// pageDirs is the number of page directories: each maps 1 GiB.
	pageDirs = 4
	// hugePage is the 2 MiB page size of the identity map. 1 GiB pages are
	// never used: they triple-fault on PVM hosts (and not every CPU has them).
	hugePage = 2 << 20
)

// pageTableBytes builds the identity map of [0, 4 GiB) for long-mode entry:
// one PML4 at PML4Addr, one PDPT at PDPTAddr and four page directories of
// 2 MiB pages from PDAddr, as one contiguous block starting at PML4Addr.
func pageTableBytes() []byte {
	le := binary.LittleEndian
	b := make([]byte, (2+pageDirs)*pageSize)
	pml4 := b[0:pageSize]
	pdpt := b[PDPTAddr-PML4Addr : PDPTAddr-PML4Addr+pageSize]
	le.PutUint64(pml4, PDPTAddr|pteP|pteRW)
	for d := range pageDirs {
		pdAddr := uint64(PDAddr + d*pageSize)
		le.PutUint64(pdpt[8*d:], pdAddr|pteP|pteRW)
		pd := b[pdAddr-PML4Addr : pdAddr-PML4Addr+pageSize]
		for e := range 512 {
			phys := (uint64(d)*512 + uint64(e)) * hugePage
			le.PutUint64(pd[8*e:], phys|pteP|pteRW|ptePS)
		}
	}
	return b
}
