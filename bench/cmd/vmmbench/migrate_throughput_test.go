package main

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
)

func TestOverallGbps(t *testing.T) {
	// QEMU's 1G-dirty200 reply (qemuCompleted): 422213930 bytes in all,
	// in 371 − 3 = 368 ms; the 109 ms downtime counts.
	if g, ok := overallGbps(422213930, 371, 3); !ok || math.Abs(g-9.17856) > 0.00001 {
		t.Errorf("overallGbps(QEMU reply) = %v, %v; want 9.17856", g, ok)
	}
	if g, ok := overallGbps(1e9, 8000, 0); !ok || g != 1 {
		t.Errorf("overallGbps(1 GB in 8 s) = %v, %v; want 1", g, ok)
	}
	for _, ms := range [][2]float64{{5, 5}, {2, 9}} {
		if g, ok := overallGbps(100, ms[0], ms[1]); ok {
			t.Errorf("overallGbps(total %v, setup %v) = %v, want not ok", ms[0], ms[1], g)
		}
	}
}

func TestRecordOverall(t *testing.T) {
	var q queryMigrate
	if err := json.Unmarshal([]byte(qemuCompleted), &q); err != nil {
		t.Fatal(err)
	}
	var r migrateRun
	r.record(q)
	if r.OverallGbps == nil || math.Abs(*r.OverallGbps-9.17856) > 0.00001 || r.BulkGbps == nil || *r.OverallGbps <= *r.BulkGbps {
		t.Errorf("record(QEMU completed): overall %v, bulk %v; want overall 9.17856 above bulk 6.55", r.OverallGbps, r.BulkGbps)
	}
	// Overall needs only ram.transferred, not precopy-bytes.
	q = queryMigrate{}
	if err := json.Unmarshal([]byte(`{"status":"completed","total-time":50,"downtime":2,"setup-time":10,"ram":{"transferred":5000000,"normal":1}}`), &q); err != nil {
		t.Fatal(err)
	}
	r = migrateRun{}
	r.record(q)
	if r.BulkGbps != nil || r.OverallGbps == nil || *r.OverallGbps != 1 {
		t.Errorf("record(no precopy-bytes): bulk %v, overall %v; want none and 1", r.BulkGbps, r.OverallGbps)
	}
	// No time to divide by: no figure, not an infinity.
	q = queryMigrate{}
	if err := json.Unmarshal([]byte(`{"status":"completed","total-time":3,"downtime":0,"setup-time":3,"ram":{"transferred":5}}`), &q); err != nil {
		t.Fatal(err)
	}
	r = migrateRun{}
	r.record(q)
	if !r.Completed || r.OverallGbps != nil {
		t.Errorf("record(total-time = setup-time) = %+v, want completed without overall", r)
	}
}

// stoppedSend makes r a run that sent only precopyMiB before the stop (the
// rest of the same total went with the guest stopped) and recomputes its
// bulk throughput.
func stoppedSend(r migrateRun, precopyMiB uint64) migrateRun {
	pre := precopyMiB << 20
	r.PrecopyBytes = &pre
	r.BulkGbps = nil
	if g, ok := bulkGbps(pre, r.TotalMS, r.SetupMS, r.DowntimeMS); ok {
		r.BulkGbps = &g
	}
	return r
}

func TestSummarizeOverall(t *testing.T) {
	c := caseNamed(t, "1G-filled-idle")
	runs := []migrateRun{okMigration("vmmd", c, 400, 4), okMigration("vmmd", c, 800, 4), okMigration("vmmd", c, 600, 4),
		okMigration("vmmd", c, 500, 4)}
	runs[3].OverallGbps = nil // a run without the figure is left out, not a 0
	cell, err := summarizeMigrate(runs, c, "vmmd")
	if err != nil {
		t.Fatal(err)
	}
	// 800.7 MiB over 399, 799 and 599 ms.
	sent := runs[0].TransferredMiB
	bits := float64(uint64(sent*(1<<20))) * 8
	if cell.overall == nil || cell.overall.N != 3 || math.Abs(cell.overall.Median-bits/599e6) > 1e-9 ||
		math.Abs(cell.overall.Min-bits/799e6) > 1e-9 || math.Abs(cell.overall.Max-bits/399e6) > 1e-9 {
		t.Errorf("overall = %+v", cell.overall)
	}
	if s := summaryCell(cell.overall, "%.2f"); s != "11.21 (8.41–16.83)" {
		t.Errorf("overall cell = %q", s)
	}
	if cell.bulk == nil || cell.bulk.N != 4 {
		t.Errorf("bulk = %+v, want all four runs", cell.bulk)
	}

	// Idle: the runs carry a figure, the cell has none, as for bulk.
	idle := caseNamed(t, "256M-idle")
	r := okMigration("vmmd", idle, 20, 3)
	if r.OverallGbps == nil {
		t.Fatal("idle run without an overall figure: the test shows nothing")
	}
	cell, err = summarizeMigrate([]migrateRun{r}, idle, "vmmd")
	if err != nil || cell.overall != nil || cell.bulk != nil || cell.total == nil {
		t.Errorf("idle cell: overall %+v bulk %+v total %+v, %v; want no overall, no bulk", cell.overall, cell.bulk, cell.total, err)
	}
	if s := summaryCell(cell.overall, "%.2f"); s != "–" {
		t.Errorf("idle overall cell = %q", s)
	}
}

func TestThroughputGoalOnBothMeasures(t *testing.T) {
	summarize := func(c migrateCase, runs ...migrateRun) migrateCell {
		t.Helper()
		s, err := summarizeMigrate(runs, c, runs[0].VMM)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	c := caseNamed(t, "1G-filled-idle")
	// QEMU sends 100 MiB in 299 ms and the other 700.7 MiB in a 700 ms
	// stop: bulk 6.06× (800 MiB in 395 ms against 100 in 299), overall
	// 2.50× (the same bytes in 399 ms against 999).
	vmmd := summarize(c, okMigration("vmmd", c, 400, 4))
	qemu := summarize(c, stoppedSend(okMigration("QEMU", c, 1000, 700), 100))
	g := evaluateMigrateGoal(c, vmmd, qemu)
	if !g.Throughput.Measured || !g.Throughput.Met || math.Abs(g.Throughput.Ratio-8*299.0/395) > 1e-9 {
		t.Errorf("bulk throughput = %+v, want 6.06× met", g.Throughput)
	}
	if !g.ThroughputOverall.Measured || g.ThroughputOverall.Met || math.Abs(g.ThroughputOverall.Ratio-999.0/399) > 1e-9 {
		t.Errorf("overall throughput = %+v, want 2.50× not met", g.ThroughputOverall)
	}
	if g.Throughput.cell() != "6.06× **MET**" || g.ThroughputOverall.cell() != "2.50× **NOT MET**" {
		t.Errorf("cells %q, %q", g.Throughput.cell(), g.ThroughputOverall.cell())
	}
	// The other way round: QEMU sends everything while its guest runs,
	// slowly, and vmmd stops early.
	g = evaluateMigrateGoal(c, summarize(c, stoppedSend(okMigration("vmmd", c, 400, 300), 100)),
		summarize(c, okMigration("QEMU", c, 1300, 4)))
	if g.Throughput.Met || !g.ThroughputOverall.Met {
		t.Errorf("throughput: bulk %+v, overall %+v; want bulk not met, overall met", g.Throughput, g.ThroughputOverall)
	}

	// Missing on one side: not judged, and says which measure.
	q := qemu
	q.overall = nil
	g = evaluateMigrateGoal(c, vmmd, q)
	if g.ThroughputOverall.Measured || g.ThroughputOverall.Why != "no overall throughput on both" || !g.Throughput.Measured {
		t.Errorf("overall without QEMU's = %+v", g.ThroughputOverall)
	}
	// Idle: neither judged.
	idle := caseNamed(t, "256M-idle")
	g = evaluateMigrateGoal(idle, summarize(idle, okMigration("vmmd", idle, 20, 1)), summarize(idle, okMigration("QEMU", idle, 20, 1)))
	if g.Throughput.Measured || g.ThroughputOverall.Measured || g.ThroughputOverall.cell() != "n/a (idle: no bulk data to send)" {
		t.Errorf("idle throughput: bulk %+v, overall %+v", g.Throughput, g.ThroughputOverall)
	}
}

func TestMigrateReportBothThroughputs(t *testing.T) {
	env := environment{vmmd: "/x/vmmd", qemu: "/usr/bin/qemu", kernel: "/x/guest.elf", hostKernel: "6.x", qemuVersion: "QEMU 7.2"}
	c := caseNamed(t, "1G-filled-idle")
	rep := migrateReport{Cases: []migrateCase{c}, RunsPerCase: 1, DowntimeLimitMS: 300, Runs: []migrateRun{
		okMigration("vmmd", c, 400, 4), stoppedSend(okMigration("QEMU", c, 1000, 700), 100)}}
	var out bytes.Buffer
	if ok, err := writeMigrateReport(&out, &rep, migrateVMMs(env), env); err != nil || !ok {
		t.Fatalf("writeMigrateReport = %v, %v", ok, err)
	}
	text := out.String()
	for _, want := range []string{
		"| bulk Gbit/s | overall Gbit/s | pages sent with data",
		"| 16.99 (16.99–16.99) | 16.83 (16.83–16.83) | 204835",
		"| 2.81 (2.81–2.81) | 6.72 (6.72–6.72) | 204835",
		"| bulk throughput | overall throughput | sent |",
		"| 1G-filled-idle | unlimited | 0.40× | 0.01× | 0.01× | 6.06× | 2.50× | 1.00× |",
		"| case | bulk throughput, ≥ 3× | overall throughput, ≥ 3× |",
		"| 1G-filled-idle | 6.06× **MET** | 2.50× **NOT MET** |",
		"Goals met: bulk throughput in 1 of 1 cases, overall throughput in 0 of 1,",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}

	// The -json output carries both: per run and in the goals.
	js, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Runs []struct {
			VMM         string   `json:"vmm"`
			BulkGbps    *float64 `json:"bulk_gbps"`
			OverallGbps *float64 `json:"overall_gbps"`
		} `json:"runs"`
		Goals []struct {
			Throughput        goalCheck `json:"throughput"`
			ThroughputOverall goalCheck `json:"throughput_overall"`
		} `json:"goals"`
	}
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Runs) != 2 || back.Runs[1].OverallGbps == nil || math.Abs(*back.Runs[1].OverallGbps-6.72348) > 0.00001 {
		t.Errorf("runs in JSON = %s", js)
	}
	if len(back.Goals) != 1 || !back.Goals[0].Throughput.Met || back.Goals[0].ThroughputOverall.Met ||
		math.Abs(back.Goals[0].ThroughputOverall.Ratio-999.0/399) > 1e-9 {
		t.Errorf("goals in JSON = %+v", back.Goals)
	}
}
