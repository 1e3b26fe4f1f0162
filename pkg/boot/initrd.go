package boot

import "fmt"

// placeInitrd picks the guest address of an initrd of size bytes: page
// aligned, as high as possible with its end at or below limit, and not below
// floor (the end of the kernel). A high initrd leaves the most contiguous
// room to the kernel, and is where bootloaders put it.
func placeInitrd(size, floor, limit uint64) (uint64, error) {
	floor = alignUp(floor, pageSize)
	if size <= limit {
		if addr := alignDown(limit-size, pageSize); addr >= floor {
			return addr, nil
		}
	}
	free := uint64(0)
	if limit > floor {
		free = limit - floor
	}
	return 0, fmt.Errorf("initrd of %d bytes does not fit: it must lie between the kernel end %#x and %#x, %d bytes", size, floor, limit, free)
}
