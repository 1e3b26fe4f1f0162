package main

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

func TestBulkGbps(t *testing.T) {
	// QEMU's 1G-dirty200 reply (qemuCompleted): 212085014 bytes before the
	// stop, in 371 − 3 − 109 = 259 ms.
	if g, ok := bulkGbps(212085014, 371, 3, 109); !ok || math.Abs(g-6.5509) > 0.0001 {
		t.Errorf("bulkGbps(QEMU reply) = %v, %v; want 6.5509", g, ok)
	}
	if g, ok := bulkGbps(1e9, 8000, 0, 0); !ok || g != 1 {
		t.Errorf("bulkGbps(1 GB in 8 s) = %v, %v; want 1", g, ok)
	}
	for _, ms := range [][3]float64{{10, 5, 5}, {10, 2, 9}} {
		if g, ok := bulkGbps(100, ms[0], ms[1], ms[2]); ok {
			t.Errorf("bulkGbps(total %v, setup %v, down %v) = %v, want not ok", ms[0], ms[1], ms[2], g)
		}
	}
}

func TestRecordPagesAndBulk(t *testing.T) {
	var q queryMigrate
	if err := json.Unmarshal([]byte(qemuCompleted), &q); err != nil {
		t.Fatal(err)
	}
	var r migrateRun
	r.record(q)
	if r.NormalPages != 102416 || r.DuplicatePages != 210948 || r.PrecopyBytes == nil || *r.PrecopyBytes != 212085014 ||
		r.DowntimeBytes == nil || *r.DowntimeBytes != 210128916 || r.BulkGbps == nil || math.Abs(*r.BulkGbps-6.5509) > 0.0001 {
		t.Errorf("record(QEMU completed) = %+v", r)
	}
	// A VMM that does not report precopy-bytes has no bulk figure, not 0.
	q = queryMigrate{}
	if err := json.Unmarshal([]byte(`{"status":"completed","total-time":50,"downtime":2,"setup-time":1,"ram":{"transferred":5,"normal":1}}`), &q); err != nil {
		t.Fatal(err)
	}
	r = migrateRun{}
	r.record(q)
	if !r.Completed || r.PrecopyBytes != nil || r.BulkGbps != nil || r.NormalPages != 1 {
		t.Errorf("record(no precopy-bytes) = %+v", r)
	}
}

func caseNamed(t *testing.T, name string) migrateCase {
	t.Helper()
	for _, c := range migrateCases() {
		if c.Name == name && c.Unlimited {
			return c
		}
	}
	t.Fatalf("no unlimited case %s", name)
	return migrateCase{}
}

func TestMigrateCases(t *testing.T) {
	// The cases: ~100 MiB then idle, a 1 GiB guest holding ~800
	// MiB, and 32–200 MiB rewritten; the regions fit above the guest's
	// 16 MiB.
	for _, want := range []struct {
		name          string
		ram, mem      int
		dirty, unlimd bool
	}{{"256M-filled100-idle", 256, 100, false, true}, {"1G-filled-idle", 1024, 800, false, true},
		{"1G-dirty200", 1024, 200, true, true}, {"256M-dirty64", 256, 64, true, true}} {
		c := caseNamed(t, want.name)
		if c.RAMMiB != want.ram || c.MemMiB != want.mem || c.Dirtying != want.dirty {
			t.Errorf("case %s = %+v", want.name, c)
		}
	}
	for _, c := range migrateCases() {
		if c.MemMiB+16 > c.RAMMiB {
			t.Errorf("case %s: %d MiB region above 16 MiB does not fit in %d MiB", c.Name, c.MemMiB, c.RAMMiB)
		}
	}
	if got := caseNamed(t, "1G-filled-idle").touchedPages(); got != 800*256+4096 {
		t.Errorf("1G-filled-idle touchedPages = %d", got)
	}
	if got := migrateCases()[0].touchedPages(); got != 4096 {
		t.Errorf("idle touchedPages = %d, want 4096 (16 MiB)", got)
	}
}

func TestSelectCases(t *testing.T) {
	all := migrateCases()
	if got, err := selectCases(all, ""); err != nil || len(got) != len(all) {
		t.Errorf(`selectCases("") = %d cases, %v`, len(got), err)
	}
	got, err := selectCases(all, "1G-dirty200, 256M-idle")
	if err != nil || len(got) != 3 || got[0].Name != "256M-idle" || got[1].Name != "256M-idle" || got[2].Name != "1G-dirty200" {
		t.Errorf("selectCases(1G-dirty200, 256M-idle) = %+v, %v; want both 256M-idle then 1G-dirty200", got, err)
	}
	if _, err := selectCases(all, "1G-idle"); err == nil || !strings.Contains(err.Error(), `"1G-idle"`) ||
		!strings.Contains(err.Error(), "1G-filled-idle") {
		t.Errorf("selectCases(1G-idle) error = %v, want one naming it and the known cases", err)
	}
}

func TestSummarizeMigrate(t *testing.T) {
	c := caseNamed(t, "256M-filled100-idle")
	runs := []migrateRun{
		okMigration("vmmd", c, 100, 2), okMigration("vmmd", c, 300, 4), okMigration("vmmd", c, 200, 3),
		okMigration("QEMU", c, 50, 1), okMigration("vmmd", caseNamed(t, "256M-filled-idle"), 1, 1),
	}
	runs[1].PauseMS, runs[1].PauseError = nil, "destination: wait for QMP event RESUME: i/o timeout"
	runs[2].NormalPages = c.touchedPages() + 1
	runs = append(runs, migrateRun{Case: c.Name, Unlimited: true, VMM: "vmmd", Status: "failed"})
	cell, err := summarizeMigrate(runs, c, "vmmd")
	if err != nil {
		t.Fatal(err)
	}
	if cell.runs != 4 || cell.completed != 3 || cell.verified != 3 || cell.paused != 2 || cell.ok() {
		t.Errorf("counts = %+v", cell)
	}
	if cell.total.Median != 200 || cell.down.Median != 3 || cell.pause.N != 2 || cell.pause.Median != 3 || cell.bulk.N != 3 {
		t.Errorf("summaries: total %+v down %+v pause %+v bulk %+v", cell.total, cell.down, cell.pause, cell.bulk)
	}
	if !cell.checkable || cell.untouchedSent != 1 || cell.maxNormal != c.touchedPages()+1 {
		t.Errorf("untouched: checkable %v, sent in %d runs, max %d", cell.checkable, cell.untouchedSent, cell.maxNormal)
	}
	if s := normalCell(cell, c); !strings.Contains(s, "> 29696 in 1 runs: UNTOUCHED PAGES SENT") {
		t.Errorf("normalCell = %q", s)
	}

	// A dirtying case sends pages again: more than touched is no finding.
	d := caseNamed(t, "1G-dirty200")
	r := okMigration("vmmd", d, 500, 50)
	r.NormalPages = 3 * d.touchedPages()
	cell, err = summarizeMigrate([]migrateRun{r}, d, "vmmd")
	if err != nil || cell.checkable || cell.untouchedSent != 0 || !cell.ok() {
		t.Errorf("dirtying cell = %+v, %v", cell, err)
	}
	// An idle case has no bulk throughput.
	idle := migrateCases()[1]
	cell, err = summarizeMigrate([]migrateRun{okMigration("vmmd", idle, 20, 3)}, idle, "vmmd")
	if err != nil || cell.bulk != nil || cell.total == nil {
		t.Errorf("idle cell = %+v, %v; want no bulk", cell, err)
	}
}

func TestEvaluateMigrateGoal(t *testing.T) {
	cell := func(vmm string, c migrateCase, total, down float64) migrateCell {
		t.Helper()
		s, err := summarizeMigrate([]migrateRun{okMigration(vmm, c, total, down)}, c, vmm)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	c := caseNamed(t, "1G-filled-idle")
	// vmmd: 800 MiB over 399 − 4 ms; QEMU over 1599 − 100 ms: 3.79×. Pause
	// 4.5 vs 100.5 ms, downtime 4 vs 100 ms.
	g := evaluateMigrateGoal(c, cell("vmmd", c, 400, 4), cell("QEMU", c, 1600, 100))
	if !g.Throughput.Measured || !g.Throughput.Met || math.Abs(g.Throughput.Ratio-1499.0/395) > 1e-9 {
		t.Errorf("throughput = %+v", g.Throughput)
	}
	if !g.Pause.Met || math.Abs(g.Pause.Ratio-4.5/100.5) > 1e-9 || !g.Downtime.Met || g.Downtime.Ratio != 0.04 || !g.Untouched.Met {
		t.Errorf("goal = %+v", g)
	}
	if !strings.HasPrefix(g.Throughput.cell(), "3.79× **MET**") || !strings.HasPrefix(g.untouchedCell(), "never: **MET**") {
		t.Errorf("cells %q, %q", g.Throughput.cell(), g.untouchedCell())
	}

	// Slower, longer and sending untouched pages: nothing met.
	v := cell("vmmd", c, 1600, 60)
	v.untouchedSent, v.maxNormal = 1, 262144
	g = evaluateMigrateGoal(c, v, cell("QEMU", c, 1600, 100))
	if g.Throughput.Met || g.Pause.Met || g.Downtime.Met || !g.Untouched.Measured || g.Untouched.Met {
		t.Errorf("goal = %+v, want nothing met", g)
	}
	if !strings.HasPrefix(g.Downtime.cell(), "0.60× **NOT MET**") || !strings.Contains(g.untouchedCell(), "NOT MET") {
		t.Errorf("cells %q, %q", g.Downtime.cell(), g.untouchedCell())
	}

	// QEMU 0 ms downtime: no ratio; the pause still has one.
	g = evaluateMigrateGoal(c, cell("vmmd", c, 400, 1), cell("QEMU", c, 400, 0))
	if g.Downtime.Measured || !strings.Contains(g.Downtime.cell(), "QEMU's median is 0 ms") || !g.Pause.Measured {
		t.Errorf("goal with QEMU downtime 0 = %+v", g)
	}

	// Idle: no throughput goal. Dirtying: no untouched check. Limited: skipped.
	idle := migrateCases()[1]
	if g := evaluateMigrateGoal(idle, cell("vmmd", idle, 20, 1), cell("QEMU", idle, 20, 1)); g.Throughput.Measured || g.Skipped != "" {
		t.Errorf("idle goal = %+v", g)
	}
	d := caseNamed(t, "1G-dirty200")
	if g := evaluateMigrateGoal(d, cell("vmmd", d, 500, 40), cell("QEMU", d, 500, 100)); g.Untouched.Measured || !g.Throughput.Measured {
		t.Errorf("dirtying goal = %+v", g)
	}
	limited := migrateCases()[0]
	if g := evaluateMigrateGoal(limited, cell("vmmd", limited, 20, 1), cell("QEMU", limited, 20, 1)); g.Skipped == "" {
		t.Errorf("128 MiB/s goal = %+v, want skipped", g)
	}
	// No pause on one side: not judged.
	q := cell("QEMU", c, 1600, 100)
	q.pause = nil
	if g := evaluateMigrateGoal(c, cell("vmmd", c, 400, 4), q); g.Pause.Measured {
		t.Errorf("pause without QEMU's = %+v", g.Pause)
	}
}

func TestRatioDigits(t *testing.T) {
	for r, want := range map[float64]string{2.9983: "2.998", 3: "3.00", 3.004: "3.004", 0.5: "0.50", 0.5012: "0.501",
		0.4961: "0.496", 1.234: "1.23", 0.046: "0.05"} {
		if got := ratioDigits(r); got != want {
			t.Errorf("ratioDigits(%v) = %q, want %q", r, got, want)
		}
	}
}
