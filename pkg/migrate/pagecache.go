package migrate

import "github.com/vmmd/vmmd/pkg/memory"

// pageCache holds the source's copy of each page it may send as a delta:
// exactly what the destination holds for that page (stream.AddDelta keeps
// it so). Only pages sent again after the first pass get a slot, the ones
// the guest keeps rewriting, and only as many as xbzrle-cache-size allows;
// a page without a slot is sent whole, as without the cache.
type pageCache struct {
	regions []memory.Region
	base    []uint64 // index of each region's first page
	slot    []int32  // per page: its slot + 1, or 0
	chunks  [][]byte // the slots, cacheChunk bytes at a time
	limit   int      // slots allowed
	used    int
}

// cacheChunk is how much cache is allocated at a time: a guest that
// rewrites little costs little, and no migration starts by zeroing the
// whole xbzrle-cache-size.
const cacheChunk = 2 << 20

// newPageCache returns a cache of size bytes for ram, or nil if size holds
// no page.
func newPageCache(ram *memory.Memory, size uint64) *pageCache {
	if size < pageSize {
		return nil
	}
	c := &pageCache{regions: ram.Regions()}
	var pages uint64
	for _, r := range c.regions {
		c.base = append(c.base, pages)
		pages += r.Size / pageSize
	}
	c.limit = int(min(size/pageSize, pages))
	c.slot = make([]int32, pages)
	return c
}

// slotBytes returns slot n (0-based).
func (c *pageCache) slotBytes(n int) []byte {
	const perChunk = cacheChunk / pageSize
	ch := c.chunks[n/perChunk]
	off := n % perChunk * pageSize
	return ch[off : off+pageSize : off+pageSize]
}

// index returns the page number of gpa in all of RAM, or false outside it.
func (c *pageCache) index(gpa uint64) (uint64, bool) {
	i, page, ok := locatePage(c.regions, gpa)
	return c.base[i] + page, ok
}

// lookup returns the cached copy of the page at gpa, or nil.
func (c *pageCache) lookup(gpa uint64) []byte {
	i, ok := c.index(gpa)
	if !ok || c.slot[i] == 0 {
		return nil
	}
	return c.slotBytes(int(c.slot[i] - 1))
}

// insert gives the page at gpa a slot and returns it (to be filled with
// what is sent), or nil when the cache is full.
func (c *pageCache) insert(gpa uint64) []byte {
	i, ok := c.index(gpa)
	if !ok || c.used >= c.limit {
		return nil
	}
	if c.used*pageSize >= len(c.chunks)*cacheChunk {
		c.chunks = append(c.chunks, make([]byte, cacheChunk))
	}
	c.used++
	c.slot[i] = int32(c.used)
	return c.slotBytes(c.used - 1)
}
