package migrate

import (
	"testing"

	"github.com/vmmd/vmmd/pkg/memory"
)

// Slots are distinct across chunk boundaries, found again by address, and
// never more than the size allows.
func TestPageCacheSlots(t *testing.T) {
	ram, err := memory.New(testRAM)
	if err != nil {
		t.Fatal(err)
	}
	defer ram.Close()
	const slots = cacheChunk/pageSize + 3 // into a second chunk
	c := newPageCache(ram, slots*pageSize)
	for i := range slots {
		s := c.insert(uint64(i) * 2 * pageSize)
		if s == nil {
			t.Fatalf("insert %d of %d: cache full", i, slots)
		}
		s[0], s[pageSize-1] = byte(i), byte(i>>8)
	}
	if c.insert(uint64(slots)*2*pageSize) != nil {
		t.Errorf("insert beyond %d slots succeeded", slots)
	}
	if got := len(c.chunks); got != 2 {
		t.Errorf("%d chunks allocated for %d slots, want 2", got, slots)
	}
	for i := range slots {
		s := c.lookup(uint64(i) * 2 * pageSize)
		if s == nil || s[0] != byte(i) || s[pageSize-1] != byte(i>>8) {
			t.Fatalf("slot of page %d lost or overwritten", i)
		}
		if c.lookup(uint64(i)*2*pageSize+pageSize) != nil {
			t.Fatalf("page %d without a slot has one", 2*i+1)
		}
	}
	if newPageCache(ram, pageSize-1) != nil {
		t.Error("a cache smaller than a page was made")
	}
	if c.lookup(testRAM+pageSize) != nil || c.insert(testRAM+pageSize) != nil {
		t.Error("an address outside RAM got a slot")
	}
}
