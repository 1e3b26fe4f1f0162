package nested

import (
	"strings"
	"testing"
)

// passLog is a trimmed real run-l1.sh log of a passing suite.
const passLog = `[   6.38] L1-INIT uptime=3.10
[  12.00] L2[smp1]| [    0.000000] Linux version 6.1.0-56-amd64
[  56.08] L1-SCENARIO smp1 pass l2_boot_s=40.33 vmmd_total_s=40.77
[  56.19] L1-SCENARIO disk-write pass image holds L2's marker at sector 2048
[  56.19] L1-METRIC smp1_l2_boot_s=40.33 smp1_vmmd_total_s=40.77
[ 117.76] L1-SCENARIO smp2 pass l2_boot_s=36.68 vmmd_total_s=61.27
[ 117.81] L1-SCENARIO reboot pass reboot path acpi, two boots in one vmmd run, 61.27s
[ 117.88] L1-SCENARIO qmp pass stop/query-status/cont/query-status during the smp2 boot
[ 141.25] L1-SCENARIO pvh pass vmlinux via PVH, l2_boot_s=22.86 vmmd_total_s=23.10
[ 171.74] L1-METRIC qemu_l2_boot_s=28.40 vmmd_l2_boot_s=40.33 vmmd_over_qemu=1.42
[ 171.74] L1-SCENARIO qemu-ref pass L2 boot: vmmd 40.33s, qemu 28.40s
[ 171.74] L1-RESULT pass
[ 171.80] L1-DONE uptime=160.1
`

var suite = []string{"smp1", "disk-write", "smp2", "reboot", "qmp", "pvh"}

func TestParsePassingLog(t *testing.T) {
	rep, err := Parse(strings.NewReader(passLog))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Scenarios) != 7 || rep.Result != Pass || !rep.Done {
		t.Fatalf("got %d scenarios, result %q, done %v; want 7, pass, true", len(rep.Scenarios), rep.Result, rep.Done)
	}
	if s := rep.Scenarios[3]; s.Name != "reboot" || s.Status != Pass || !strings.HasPrefix(s.Detail, "reboot path acpi") {
		t.Errorf("scenario 3 = %+v", s)
	}
	if got := rep.Metrics["vmmd_over_qemu"]; got != "1.42" {
		t.Errorf("vmmd_over_qemu = %q, want 1.42", got)
	}
	if err := rep.Check(suite); err != nil {
		t.Errorf("Check: %v", err)
	}
}

func TestCheckFindsEveryProblem(t *testing.T) {
	log := strings.Replace(passLog, "L1-SCENARIO reboot pass", "L1-SCENARIO reboot fail timeout-240s", 1)
	log = strings.Replace(log, "L1-RESULT pass", "L1-RESULT fail  reboot", 1)
	log = strings.Replace(log, "[ 141.25] L1-SCENARIO pvh pass", "[ 141.25] L1-SCENARIO pvh skip", 1)
	rep, err := Parse(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	err = rep.Check(suite)
	if err == nil {
		t.Fatal("Check passed a failing log")
	}
	for _, want := range []string{`L1-RESULT is "fail"`, "scenario reboot failed: timeout-240s", "scenario reboot never passed", "scenario pvh never passed"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Check error %q lacks %q", err, want)
		}
	}
}

// A log cut off mid-run (L1 died) has no result and is not done.
func TestCheckTruncatedLog(t *testing.T) {
	rep, err := Parse(strings.NewReader(passLog[:strings.Index(passLog, "[ 117.76]")]))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Done || rep.Result != "" {
		t.Fatalf("truncated log: done %v result %q", rep.Done, rep.Result)
	}
	err = rep.Check(suite)
	if err == nil || !strings.Contains(err.Error(), "no L1-DONE") || !strings.Contains(err.Error(), "scenario smp2 never passed") {
		t.Errorf("Check = %v", err)
	}
}

func TestParseRejectsMalformedHarnessLines(t *testing.T) {
	for _, line := range []string{
		"L1-SCENARIO smp1 passed x",
		"L1-SCENARIO  pass",
		"L1-SCENARIO Smp1 pass",
		"L1-METRIC boot_s",
		"L1-METRIC =3",
		"L1-RESULT skip",
		"L1-RESULT maybe",
		"L1-RESULT pass\nL1-RESULT pass",
	} {
		if _, err := Parse(strings.NewReader(line + "\n")); err == nil {
			t.Errorf("Parse(%q) succeeded", line)
		}
	}
	// Other console output, however odd, is not the harness's.
	if _, err := Parse(strings.NewReader("L2[smp1]| L1-SCENARIO x y\r\nL1-SCENARIOS pass\n\x00\xff\n")); err != nil {
		t.Errorf("non-harness lines: %v", err)
	}
}

func TestParseLongLine(t *testing.T) {
	if _, err := Parse(strings.NewReader(strings.Repeat("x", maxLine+1))); err == nil {
		t.Error("a line over the limit parsed")
	}
}

func FuzzParse(f *testing.F) {
	f.Add(passLog)
	f.Add("L1-SCENARIO a pass\nL1-METRIC a=b c=d\nL1-RESULT fail x\nL1-DONE\n")
	f.Fuzz(func(t *testing.T, s string) {
		rep, err := Parse(strings.NewReader(s))
		if err != nil {
			return
		}
		_ = rep.Check(suite)
		for _, sc := range rep.Scenarios {
			if sc.Status != Pass && sc.Status != Fail && sc.Status != Skip {
				t.Fatalf("scenario %q has status %q", sc.Name, sc.Status)
			}
		}
	})
}
