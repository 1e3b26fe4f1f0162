package virtio

// Memory is the view of guest RAM a device needs. *memory.Memory implements
// it.
type Memory interface {
	// Slice returns the host bytes backing guest-physical [gpa, gpa+n),
	// which must lie inside one RAM region, or an error. The slice aliases
	// guest memory.
	Slice(gpa, n uint64) ([]byte, error)
	// MarkDirty records that the device wrote [gpa, gpa+n), for
	// migration. Call it after the write.
	MarkDirty(gpa, n uint64) error
}
