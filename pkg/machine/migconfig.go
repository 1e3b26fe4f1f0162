package machine

import (
	"errors"
	"fmt"

	"github.com/vmmd/vmmd/pkg/memory"
)

// MigrationConfig is what must match between a migration's source and its
// destination: the guest saw these and cannot be told they changed. It is
// JSON-encodable with stable field names (it travels in the stream).
type MigrationConfig struct {
	// Memory is the guest RAM size in bytes.
	Memory uint64 `json:"memory"`
	// CPUs is the number of vCPUs.
	CPUs int `json:"cpus"`
	// NoACPI is set when the guest has no ACPI tables.
	NoACPI bool `json:"no-acpi"`
	// Drives are in --drive order (the guest numbers its disks that way).
	Drives []MigrationDrive `json:"drives"`
}

// MigrationDrive is one disk as the guest sees it.
type MigrationDrive struct {
	// ID is the drive id (--drive id=).
	ID string `json:"id"`
	// Size is the image size in bytes; 0 means unknown (an inactive drive
	// may not know it).
	Size int64 `json:"size"`
	// ReadOnly is set for a read-only drive.
	ReadOnly bool `json:"read-only"`
}

// MigrationConfig returns this VM's side of the compatibility check.
func (m *Machine) MigrationConfig() MigrationConfig {
	c := MigrationConfig{Memory: m.cfg.Memory, CPUs: m.cfg.CPUs, NoACPI: m.cfg.NoACPI,
		Drives: make([]MigrationDrive, 0, len(m.cfg.Drives))}
	for _, d := range m.cfg.Drives {
		c.Drives = append(c.Drives, MigrationDrive{ID: d.Name(), Size: max(d.Size(), 0), ReadOnly: d.ReadOnly()})
	}
	return c
}

// Check compares this VM's configuration c (the destination) with the
// source's and returns every difference, joined, each naming the setting and
// both values; nil when the two are compatible. A drive size of 0 on either
// side is unknown and not compared.
func (c MigrationConfig) Check(source MigrationConfig) error {
	var errs []error
	if source.Memory != c.Memory {
		errs = append(errs, fmt.Errorf("memory: source has %s, this VM has %s",
			memory.FormatSize(source.Memory), memory.FormatSize(c.Memory)))
	}
	if source.CPUs != c.CPUs {
		errs = append(errs, fmt.Errorf("cpus: source has %d, this VM has %d", source.CPUs, c.CPUs))
	}
	if source.NoACPI != c.NoACPI {
		errs = append(errs, fmt.Errorf("acpi: source has %s, this VM has %s", onOff(!source.NoACPI), onOff(!c.NoACPI)))
	}
	if len(source.Drives) != len(c.Drives) {
		errs = append(errs, fmt.Errorf("drives: source has %d, this VM has %d", len(source.Drives), len(c.Drives)))
	}
	for i := range min(len(source.Drives), len(c.Drives)) {
		s, d := source.Drives[i], c.Drives[i]
		if s.ID != d.ID {
			errs = append(errs, fmt.Errorf("drive %d: source has id %q, this VM has %q", i, s.ID, d.ID))
		}
		if s.Size != 0 && d.Size != 0 && s.Size != d.Size {
			errs = append(errs, fmt.Errorf("drive %d (%s): source has %d bytes, this VM has %d bytes", i, d.ID, s.Size, d.Size))
		}
		if s.ReadOnly != d.ReadOnly {
			errs = append(errs, fmt.Errorf("drive %d (%s): source is %s, this VM is %s", i, d.ID, rwName(s.ReadOnly), rwName(d.ReadOnly)))
		}
	}
	return errors.Join(errs...)
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func rwName(ro bool) string {
	if ro {
		return "read-only"
	}
	return "read-write"
}
