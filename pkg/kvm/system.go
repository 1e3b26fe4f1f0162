package kvm

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// DefaultPath is where Linux exposes the KVM device.
const DefaultPath = "/dev/kvm"

// APIVersion is the only KVM API version there has ever been (KVM_API_VERSION).
const APIVersion = 12

// ErrAPIVersion is wrapped when the kernel reports a KVM API version other
// than APIVersion.
var ErrAPIVersion = errors.New("kvm: unsupported KVM API version")

// System is an open /dev/kvm. It owns the descriptor; the VMs it creates keep
// working after the System is closed.
type System struct {
	fd fdOwner
}

// Open opens the KVM device at path (DefaultPath if empty) and checks the API
// version. The error says plainly whether the device is missing, not
// accessible, or speaks another API; it wraps the errno for errors.Is.
func Open(path string) (*System, error) {
	if path == "" {
		path = DefaultPath
	}
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		switch {
		case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENODEV), errors.Is(err, unix.ENXIO):
			return nil, fmt.Errorf("open %s: KVM device missing (is the kvm module loaded, is virtualisation enabled?): %w", path, err)
		case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
			return nil, fmt.Errorf("open %s: no permission (add yourself to group kvm or run as root): %w", path, err)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s := &System{}
	s.fd.fd = fd
	v, err := s.APIVersion()
	if err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if v != APIVersion {
		_ = s.Close()
		return nil, fmt.Errorf("open %s: kernel KVM API version %d, want %d: %w", path, v, APIVersion, ErrAPIVersion)
	}
	return s, nil
}

// Close closes /dev/kvm. It is idempotent.
func (s *System) Close() error { return s.fd.close("/dev/kvm") }

// FD returns the raw descriptor, or -1 after Close. The System still owns it.
func (s *System) FD() int { return s.fd.raw() }

// APIVersion returns KVM_GET_API_VERSION.
func (s *System) APIVersion() (int, error) {
	return ioctlValue(&s.fd, "KVM_GET_API_VERSION", kvmGetAPIVersion, 0)
}

// CheckExtension returns KVM_CHECK_EXTENSION for c on /dev/kvm: 0 when
// unsupported, otherwise 1 or a capability-specific value (e.g. a count).
func (s *System) CheckExtension(c Cap) (int, error) {
	n, err := ioctlValue(&s.fd, "KVM_CHECK_EXTENSION", kvmCheckExtension, uintptr(c))
	if err != nil {
		return 0, fmt.Errorf("%w (%v)", err, c)
	}
	return n, nil
}

// VCPUMmapSize returns KVM_GET_VCPU_MMAP_SIZE, the length to map a vCPU's
// kvm_run area with (it covers the PIO and coalesced-MMIO pages too).
func (s *System) VCPUMmapSize() (int, error) {
	return ioctlValue(&s.fd, "KVM_GET_VCPU_MMAP_SIZE", kvmGetVCPUMmapSize, 0)
}

// CreateVM runs KVM_CREATE_VM with the default machine type.
func (s *System) CreateVM() (*VM, error) {
	fd, err := ioctlValue(&s.fd, "KVM_CREATE_VM", kvmCreateVM, 0)
	if err != nil {
		return nil, err
	}
	v := &VM{}
	v.fd.fd = fd
	return v, nil
}

// SupportedCPUID returns KVM_GET_SUPPORTED_CPUID, growing the buffer while
// the kernel answers E2BIG.
func (s *System) SupportedCPUID() (*CPUID, error) {
	return s.cpuidQuery("KVM_GET_SUPPORTED_CPUID", kvmGetSupportedCPUID)
}

// EmulatedCPUID returns KVM_GET_EMULATED_CPUID: features KVM can emulate
// (slowly) even though the host lacks them.
func (s *System) EmulatedCPUID() (*CPUID, error) {
	return s.cpuidQuery("KVM_GET_EMULATED_CPUID", kvmGetEmulatedCPUID)
}

func (s *System) cpuidQuery(name string, req uintptr) (*CPUID, error) {
	var out *CPUID
	err := s.fd.with(name, func(fd int) error {
		var err error
		out, err = getCPUID2(fd, name, req)
		return err
	})
	return out, err
}

// MSRIndexList returns KVM_GET_MSR_INDEX_LIST: the MSRs a VMM should save
// and restore.
func (s *System) MSRIndexList() ([]uint32, error) {
	return s.msrList("KVM_GET_MSR_INDEX_LIST", kvmGetMSRIndexList)
}

// MSRFeatureIndexList returns KVM_GET_MSR_FEATURE_INDEX_LIST: the
// feature MSRs whose values can be read with FeatureMSRs.
func (s *System) MSRFeatureIndexList() ([]uint32, error) {
	return s.msrList("KVM_GET_MSR_FEATURE_INDEX_LIST", kvmGetMSRFeatureIndexList)
}

// FeatureMSRs reads feature MSRs (KVM_GET_MSRS on /dev/kvm, with
// CapMSRFeatures) into entries in place and returns how many were read.
func (s *System) FeatureMSRs(entries []MSREntry) (int, error) {
	var n int
	err := s.fd.with("KVM_GET_MSRS", func(fd int) error {
		var err error
		n, err = msrsIoctl(fd, "KVM_GET_MSRS", kvmGetMSRs, entries, true)
		return err
	})
	return n, err
}

func (s *System) msrList(name string, req uintptr) ([]uint32, error) {
	var out []uint32
	err := s.fd.with(name, func(fd int) error {
		var err error
		out, err = getMSRList(fd, name, req)
		return err
	})
	return out, err
}
