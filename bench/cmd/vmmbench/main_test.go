package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmmd/vmmd/bench/internal/measure"
)

func testConfigs() []vmmConfig {
	return configs(environment{vmmd: "/x/bin/vmmd", qemu: "/usr/bin/qemu", kernel: "/x/guest.elf"}, 256)
}

func okRun(cfg string, bootMS float64, overheadKiB uint64) runResult {
	return runResult{Config: cfg, OK: true, BootMS: bootMS, Exit: measure.Exit{Status: "exit status 0", Clean: true},
		Memory: &measure.Usage{TotalRSSKiB: overheadKiB + 2048, TotalPSSKiB: overheadKiB, GuestRAMRSSKiB: 2048,
			GuestRAMMappings: 1, OverheadKiB: overheadKiB}}
}

func TestGoalsAndReport(t *testing.T) {
	cfgs := testConfigs()
	var results []runResult
	for _, ms := range []float64{20, 30, 25} {
		results = append(results, okRun("vmmd", ms, 4096))
		results = append(results, okRun("microvm-default", ms*3, 32*1024))
		// A failed run must not enter the statistics.
		results = append(results, runResult{Config: "microvm-tuned", Error: "wait for \"GUEST-READY\": boom",
			Exit: measure.Exit{Status: "exit status 1"}})
	}
	sums, err := summarize(cfgs, results)
	if err != nil {
		t.Fatalf("summarize: %v", err)
	}
	if s := sums[0]; s.OK != 3 || s.BootMS.Median != 25 || s.OverheadMiB.Median != 4 {
		t.Errorf("vmmd summary = %+v", s)
	}
	if s := sums[2]; s.OK != 0 || s.Runs != 3 || s.BootMS != nil || s.UncleanExits != 3 || !strings.Contains(s.FirstError, "boom") {
		t.Errorf("failed configuration summary = %+v", s)
	}
	goals := evaluateGoals(sums)
	boot := goals[0]
	if boot.Met || len(boot.Comparisons) != 2 {
		t.Fatalf("boot goal = %+v, want NOT MET with 2 comparisons (one QEMU config failed)", boot)
	}
	if c := boot.Comparisons[0]; !c.Comparable || !c.Met || c.Ratio < 0.333 || c.Ratio > 0.334 {
		t.Errorf("boot vs microvm-default = %+v, want ratio 1/3, met", c)
	}
	if c := boot.Comparisons[1]; c.Comparable || c.Met {
		t.Errorf("boot vs failed microvm-tuned = %+v, want not comparable, not met", c)
	}

	var out bytes.Buffer
	o := options{runs: 3, warmup: 1, memoryMiB: 256, settle: time.Second}
	if err := writeReport(&out, sums, goals, o, environment{hostKernel: "6.x", qemuVersion: "QEMU 7.2"}, 2*time.Second); err != nil {
		t.Fatalf("writeReport: %v", err)
	}
	text := out.String()
	for _, want := range []string{
		"| vmmd | vmmd | 3/3 | 25.0 | 20.0 | 30.0 | 29.0 | — | — |",
		"| QEMU | microvm-default | 3/3 | 75.0 | 60.0 | 90.0 | 87.0 | 0.33× | MET |",
		"| QEMU | microvm-tuned | 0/3 | failed | – | – | – | n/a | NOT MET (no comparison) |",
		"Goal: vmmd boot time ≤ 0.50× QEMU (median, every QEMU config): **NOT MET** (0.33× vs microvm-default, no comparison with microvm-tuned)",
		"Goal: vmmd memory overhead ≤ 0.50× QEMU (median, every QEMU config): **NOT MET**",
		"microvm-tuned failed 3 of 3 runs; first error: wait for \"GUEST-READY\": boom",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
}

func TestGoalMetOnlyAtOrBelowHalf(t *testing.T) {
	q := &measure.Summary{Median: 10}
	if c := compare("q", &measure.Summary{Median: 5}, q); !c.Met {
		t.Errorf("ratio 0.5: %+v, want met", c)
	}
	if c := compare("q", &measure.Summary{Median: 5.01}, q); c.Met {
		t.Errorf("ratio 0.501: %+v, want not met", c)
	}
	if c := compare("q", nil, q); c.Comparable || c.Met {
		t.Errorf("missing vmmd: %+v", c)
	}
}

func TestFindRepoRoot(t *testing.T) {
	root := t.TempDir()
	deep := filepath.Join(root, "bench", "cmd", "vmmbench")
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "go.mod"), []byte("module x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := findRepoRoot(deep)
	if err != nil || got != root {
		t.Errorf("findRepoRoot(%s) = %q, %v; want %q", deep, got, err, root)
	}
}

func TestFlagErrors(t *testing.T) {
	for _, args := range [][]string{{"-runs", "0"}, {"-memory", "-1"}, {"-timeout", "0s"}, {"extra"}, {"-nosuchflag"}} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != 2 || stdout.Len() != 0 {
			t.Errorf("run(%q) = %d with stdout %q, want 2 and no output", args, code, stdout.String())
		}
	}
}

// TestNoTableWithoutQEMU checks that a benchmark that cannot compare exits
// 1 before printing anything. Without /dev/kvm it stops at that check.
func TestNoTableWithoutQEMU(t *testing.T) {
	dir := t.TempDir()
	vmmd := filepath.Join(dir, "vmmd")
	kernel := filepath.Join(dir, "guest.elf")
	if err := os.WriteFile(vmmd, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kernel, []byte("ELF"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := run([]string{"-vmmd", vmmd, "-kernel", kernel, "-qemu", filepath.Join(dir, "no-qemu")}, &stdout, &stderr)
	if code != 1 || stdout.Len() != 0 {
		t.Fatalf("run = %d, stdout %q; want 1 and nothing on stdout", code, stdout.String())
	}
	want := "QEMU"
	if f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err != nil {
		want = "/dev/kvm"
	} else {
		f.Close()
	}
	if !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr %q does not name %s", stderr.String(), want)
	}
}
