package qmp

// When arguments carry several unexpected members, QEMU names the first one
// its input visitor finds in a GLib GHashTable of the members not yet
// consumed (qobject_input_check_struct). The order of that table is an
// accident of GLib's hashing, but clients can see it, so it is modelled
// here: g_str_hash, index = hash*11 mod prime, quadratic probing, growth at
// 15/16 load. The model is exact for tables that never grew (fewer than 8
// members, checked against QEMU 7.2 with GLib 2.74). For larger ones it
// rehashes by reinserting in slot order, which GLib's in-place resize may
// not match; only which of several unexpected members is named can differ.

// gHashPrime is GLib's prime_mod table, indexed by shift.
func gHashPrime(shift uint) uint32 {
	primes := [...]uint32{1, 2, 3, 7, 13, 31, 61, 127, 251, 509, 1021, 2039, 4093, 8191,
		16381, 32749, 65521, 131071, 262139, 524287, 1048573, 2097143, 4194301, 8388593,
		16777213, 33554393, 67108859, 134217689, 268435399, 536870909, 1073741789, 2147483647}
	return primes[min(shift, uint(len(primes)-1))]
}

// gStrHash is GLib's g_str_hash (djb2 over signed chars).
func gStrHash(s string) uint32 {
	h := uint32(5381)
	for i := 0; i < len(s); i++ {
		h = h<<5 + h + uint32(int32(int8(s[i])))
	}
	return h
}

// gTable models the slot layout of a GHashTable of strings.
type gTable struct {
	shift     uint
	slots     []string
	used      []bool
	nnodes    int
	noccupied int
}

func newGTable() *gTable {
	t := &gTable{}
	t.setShift(3)
	return t
}

func (t *gTable) setShift(shift uint) {
	t.shift = shift
	t.slots = make([]string, 1<<shift)
	t.used = make([]bool, 1<<shift)
}

func (t *gTable) insert(key string) {
	h := gStrHash(key)
	if h < 2 {
		h = 2
	}
	mask := uint32(len(t.slots) - 1)
	i := (h * 11) % gHashPrime(t.shift)
	for step := uint32(0); t.used[i]; {
		step++
		i = (i + step) & mask
	}
	t.slots[i] = key
	t.used[i] = true
	t.nnodes++
	t.noccupied++
	if size := len(t.slots); size <= t.noccupied+t.noccupied/16 {
		t.grow()
	}
}

// grow resizes to GLib's size for nnodes*1.333 entries and reinserts.
func (t *gTable) grow() {
	n := uint32(float64(t.nnodes) * 1.333)
	shift := uint(0)
	for ; n != 0; n >>= 1 {
		shift++
	}
	shift = max(shift, 3)
	old, oldUsed := t.slots, t.used
	t.setShift(shift)
	t.nnodes, t.noccupied = 0, 0
	for i, k := range old {
		if oldUsed[i] {
			t.insert(k)
		}
	}
}

// firstUnexpected returns the member of obj that QEMU reports as
// unexpected: the first, in hash-table order, whose key is not in known.
// ok is false when every member is known.
func firstUnexpected(obj []member, known func(string) bool) (string, bool) {
	t := newGTable()
	for _, i := range qdictOrder(obj, nil) {
		t.insert(obj[i].key)
	}
	for i, k := range t.slots {
		if t.used[i] && !known(k) {
			return k, true
		}
	}
	return "", false
}
