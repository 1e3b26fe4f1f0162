package kvm

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// MSREntry mirrors struct kvm_msr_entry.
type MSREntry struct {
	Index    uint32
	Reserved uint32
	Data     uint64
}

const (
	msrEntrySize = 16
	// maxMSRs bounds both list growth and a single GET/SET batch.
	maxMSRs = 1 << 14
)

// getMSRList runs a kvm_msr_list-returning ioctl. The kernel answers E2BIG
// and writes back the count it needs, so at most two calls are made unless
// the list grows in between.
func getMSRList(fd int, name string, req uintptr) ([]uint32, error) {
	n := 64
	for tries := 0; ; tries++ {
		buf := make([]byte, sizeofMSRList+4*n)
		binary.LittleEndian.PutUint32(buf, uint32(n))
		_, err := ioctlBuf(fd, req, buf)
		got := int(binary.LittleEndian.Uint32(buf))
		if errors.Is(err, unix.E2BIG) && tries < 8 {
			if got <= n {
				got = 2 * n
			}
			if got > maxMSRs {
				return nil, fmt.Errorf("%s: kernel wants room for %d MSRs, limit %d: %w", name, got, maxMSRs, err)
			}
			n = got
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if got > n {
			return nil, fmt.Errorf("%s: kernel returned %d MSRs for a buffer of %d", name, got, n)
		}
		out := make([]uint32, got)
		for i := range out {
			out[i] = binary.LittleEndian.Uint32(buf[sizeofMSRList+4*i:])
		}
		return out, nil
	}
}

// msrsIoctl runs KVM_GET_MSRS or KVM_SET_MSRS over entries. When read is
// true the Data fields are updated from the kernel's answer. It returns the
// number of entries the kernel processed; the kernel stops at the first
// MSR it cannot access.
func msrsIoctl(fd int, name string, req uintptr, entries []MSREntry, read bool) (int, error) {
	if len(entries) == 0 {
		return 0, nil
	}
	if len(entries) > maxMSRs {
		return 0, fmt.Errorf("%s: %d MSRs in one call, limit %d", name, len(entries), maxMSRs)
	}
	buf := make([]byte, sizeofMSRs+msrEntrySize*len(entries))
	binary.LittleEndian.PutUint32(buf, uint32(len(entries)))
	for i, e := range entries {
		b := buf[sizeofMSRs+msrEntrySize*i:]
		binary.LittleEndian.PutUint32(b[0:], e.Index)
		binary.LittleEndian.PutUint32(b[4:], e.Reserved)
		binary.LittleEndian.PutUint64(b[8:], e.Data)
	}
	r, err := ioctlBuf(fd, req, buf)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	n := int(r)
	if n > len(entries) {
		return 0, fmt.Errorf("%s: kernel processed %d of %d MSRs", name, n, len(entries))
	}
	if read {
		for i := 0; i < n; i++ {
			entries[i].Data = binary.LittleEndian.Uint64(buf[sizeofMSRs+msrEntrySize*i+8:])
		}
	}
	return n, nil
}
