package acpi

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestIASL has ACPICA's own disassembler read every table, checks what it
// says about the DSDT, and recompiles the disassembly without optimizations
// to confirm the AML round-trips byte for byte. The byte-level tests above
// do not depend on it.
func TestIASL(t *testing.T) {
	iasl, err := exec.LookPath("iasl")
	if err != nil {
		t.Skip("iasl not found (apt-get install acpica-tools): the DSDT was not checked by ACPICA's disassembler")
	}
	// iaslComplaint matches what iasl prints about a malformed table.
	iaslComplaint := regexp.MustCompile(`(?i)error|warning|invalid|incorrect|unknown`)
	dir := t.TempDir()
	paths := dumpTables(t, testConfig(2), dir)
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), iasl, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("iasl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	for sig, p := range paths {
		out := run("-d", filepath.Base(p))
		if iaslComplaint.MatchString(out) {
			t.Errorf("iasl -d %s complained:\n%s", sig, out)
		}
		dsl, err := os.ReadFile(strings.TrimSuffix(p, ".dat") + ".dsl")
		if err != nil {
			t.Fatalf("read %s disassembly: %v", sig, err)
		}
		// Data tables get field comments; a bad one reads "Incorrect ...".
		if sig != "DSDT" && iaslComplaint.MatchString(stripBanner(string(dsl))) {
			t.Errorf("%s disassembly flags a problem:\n%s", sig, dsl)
		}
	}
	dsl, err := os.ReadFile(filepath.Join(dir, "DSDT.dsl"))
	if err != nil {
		t.Fatal(err)
	}
	text := squash(string(dsl))
	for _, want := range []string{
		`Device (VR00) { Name (_HID, "LNRO0005") // _HID: Hardware ID Name (_UID, Zero) // _UID: Unique ID Name (_CRS, ResourceTemplate () // _CRS: Current Resource Settings { Memory32Fixed (ReadWrite, 0xD0000000, // Address Base 0x00001000, // Address Length ) Interrupt (ResourceConsumer, Level, ActiveHigh, Exclusive, ,, ) { 0x00000005, } }) }`,
		`Device (VR02) { Name (_HID, "LNRO0005") // _HID: Hardware ID Name (_UID, 0x02) // _UID: Unique ID Name (_CRS, ResourceTemplate () // _CRS: Current Resource Settings { Memory32Fixed (ReadWrite, 0xD0002000, // Address Base 0x00001000, // Address Length ) Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, ) { 0x00000010, } }) }`,
		`Device (COM1) { Name (_HID, EisaId ("PNP0501")`,
		`IO (Decode16, 0x03F8, // Range Minimum 0x03F8, // Range Maximum 0x00, // Alignment 0x08, // Length ) Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, ) { 0x00000004, }`,
		`Name (\_S5, Package (0x04) // _S5_: S5 System State { 0x05, Zero, Zero, Zero })`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("DSDT disassembly lacks\n%s\nin\n%s", want, dsl)
		}
	}

	// Recompile without optimizations; the AML after the header must be
	// exactly ours.
	if err := os.Mkdir(filepath.Join(dir, "rt"), 0o755); err != nil {
		t.Fatal(err)
	}
	out := run("-oa", "-p", filepath.Join("rt", "DSDT"), "DSDT.dsl")
	if !strings.Contains(out, "0 Errors, 0 Warnings, 0 Remarks") {
		t.Errorf("iasl recompiling the DSDT:\n%s", out)
	}
	again, err := os.ReadFile(filepath.Join(dir, "rt", "DSDT.aml"))
	if err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile(paths["DSDT"])
	if err != nil {
		t.Fatal(err)
	}
	if len(again) < headerSize || !bytes.Equal(again[headerSize:], orig[headerSize:]) {
		t.Errorf("recompiled AML differs:\n got % x\nwant % x", again, orig)
	}
}

// squash collapses runs of white space so multi-line ASL can be matched.
func squash(s string) string { return strings.Join(strings.Fields(s), " ") }

// stripBanner drops iasl's leading comment, which names the tool.
func stripBanner(s string) string {
	if i := strings.Index(s, "*/"); i >= 0 {
		return s[i+2:]
	}
	return s
}
