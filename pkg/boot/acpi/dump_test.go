package acpi

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// dumpTables writes the FADT, MADT and DSDT of cfg as files in dir, named
// as iasl expects binary tables, and returns their paths by signature.
func dumpTables(t *testing.T, cfg Config, dir string) map[string]string {
	t.Helper()
	m, r := written(t, cfg)
	f, a, d := rootTables(t, m, r)
	x := m.table(t, binary.LittleEndian.Uint64(m.at(t, r, rsdpSize)[24:]), "XSDT")
	out := map[string]string{}
	for sig, b := range map[string][]byte{"FACP": f, "APIC": a, "DSDT": d, "XSDT": x} {
		p := filepath.Join(dir, sig+".dat")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		out[sig] = p
	}
	return out
}
