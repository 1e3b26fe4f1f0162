package kvm

import (
	"encoding/binary"
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

// fakeGetCPUID2 answers like KVM_GET_CPUID2 for a vCPU holding have:
// E2BIG when the buffer is too small, else the entries copied in; nent is
// updated on success only if updatesNent (Linux 6.4 and later).
func fakeGetCPUID2(have []CPUIDEntry, updatesNent bool, calls *int) func([]byte) error {
	return func(buf []byte) error {
		*calls++
		n := int(binary.LittleEndian.Uint32(buf))
		if n < len(have) {
			return unix.E2BIG
		}
		copy(buf[sizeofCPUID2:], marshalCPUID2(len(have), have)[sizeofCPUID2:])
		if updatesNent {
			binary.LittleEndian.PutUint32(buf, uint32(len(have)))
		} else {
			binary.LittleEndian.PutUint32(buf, uint32(n))
		}
		return nil
	}
}

func TestQueryCPUID2Count(t *testing.T) {
	for _, count := range []int{0, 1, 5, 63, 127, 128, 129, 200, 256, 300} {
		have := make([]CPUIDEntry, count)
		for i := range have {
			// Leaf 0 first, as KVM lists it; every entry distinct.
			have[i] = CPUIDEntry{Function: uint32(i), EAX: 0x0d + uint32(i), EBX: 0x68747541}
		}
		for _, updates := range []bool{false, true} {
			calls := 0
			c, err := queryCPUID2("KVM_GET_CPUID2", fakeGetCPUID2(have, updates, &calls))
			if err != nil {
				t.Fatalf("%d entries, nent updated %v: %v", count, updates, err)
			}
			if len(c.Entries) != count {
				t.Errorf("%d entries, nent updated %v: got %d entries", count, updates, len(c.Entries))
				continue
			}
			for i, e := range c.Entries {
				if e != have[i] {
					t.Errorf("%d entries, nent updated %v: entry %d is %+v, want %+v", count, updates, i, e, have[i])
					break
				}
			}
			if calls > 20 {
				t.Errorf("%d entries, nent updated %v: %d ioctls", count, updates, calls)
			}
		}
	}
}

func TestQueryCPUID2Errors(t *testing.T) {
	eio := func([]byte) error { return unix.EIO }
	if _, err := queryCPUID2("KVM_GET_CPUID2", eio); !errors.Is(err, unix.EIO) {
		t.Errorf("EIO: got %v", err)
	}
	// An error in the middle of the bisection is reported, not taken for
	// a count.
	calls := 0
	failLater := func(buf []byte) error {
		calls++
		if calls > 1 {
			return unix.EFAULT
		}
		return nil // nent left at the buffer size, as before Linux 6.4
	}
	if _, err := queryCPUID2("KVM_GET_CPUID2", failLater); !errors.Is(err, unix.EFAULT) {
		t.Errorf("EFAULT during bisection: got %v", err)
	}
	// A kernel that always says E2BIG ends at the size limit.
	big := func([]byte) error { return unix.E2BIG }
	if _, err := queryCPUID2("KVM_GET_CPUID2", big); !errors.Is(err, unix.E2BIG) {
		t.Errorf("always E2BIG: got %v", err)
	}
}
