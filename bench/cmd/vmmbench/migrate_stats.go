package main

import (
	"fmt"

	"github.com/vmmd/vmmd/bench/internal/measure"
)

// migrateCell is one VMM's figures for one case.
type migrateCell struct {
	runs, completed, verified int
	// paused counts the verified runs whose pause was measured.
	paused int
	// untouchedSent counts the completed runs that sent more pages with
	// data than the guest touched; checkable is false for the dirtying
	// cases, where pages are sent more than once.
	untouchedSent int
	checkable     bool
	// maxNormal is the most pages sent with data in one run.
	maxNormal uint64
	// Medians etc. of the completed runs (pause: of the measured ones; bulk
	// and overall: of those that had a bulk phase, none in the idle cases);
	// nil when there are none.
	total, down, pause, setup, mib, bulk, overall, normal *measure.Summary
}

// ok reports whether every run of the cell completed and passed its checks.
func (c migrateCell) ok() bool {
	return c.runs > 0 && c.completed == c.runs && c.verified == c.completed
}

// summarizeMigrate collects the runs of one case and VMM.
func summarizeMigrate(runs []migrateRun, c migrateCase, vmm string) (migrateCell, error) {
	cell := migrateCell{checkable: !c.Dirtying}
	var total, down, pause, setup, mib, bulk, overall, normal []float64
	for _, r := range runs {
		if !c.is(r) || r.VMM != vmm {
			continue
		}
		cell.runs++
		if !r.Completed {
			continue
		}
		cell.completed++
		if r.Verified {
			cell.verified++
		}
		total, down = append(total, r.TotalMS), append(down, r.DowntimeMS)
		setup, mib = append(setup, r.SetupMS), append(mib, r.TransferredMiB)
		normal = append(normal, float64(r.NormalPages))
		cell.maxNormal = max(cell.maxNormal, r.NormalPages)
		if cell.checkable && r.NormalPages > c.touchedPages() {
			cell.untouchedSent++
		}
		// An idle guest sends under 1 MiB: no bulk phase to speak of, and
		// its overall rate would be mostly setup and switch-over latency.
		if r.BulkGbps != nil && c.MemMiB > 0 {
			bulk = append(bulk, *r.BulkGbps)
		}
		if r.OverallGbps != nil && c.MemMiB > 0 {
			overall = append(overall, *r.OverallGbps)
		}
		if r.Verified && r.PauseMS != nil {
			cell.paused++
			pause = append(pause, *r.PauseMS)
		}
	}
	for _, x := range []struct {
		dst **measure.Summary
		xs  []float64
	}{{&cell.total, total}, {&cell.down, down}, {&cell.pause, pause}, {&cell.setup, setup},
		{&cell.mib, mib}, {&cell.bulk, bulk}, {&cell.overall, overall}, {&cell.normal, normal}} {
		if len(x.xs) == 0 {
			continue
		}
		s, err := measure.Summarize(x.xs)
		if err != nil {
			return cell, fmt.Errorf("summarize %s %s: %w", vmm, c.Name, err)
		}
		*x.dst = &s
	}
	return cell, nil
}

// medianRatio is vmmd's median over QEMU's; ok is false when either is
// missing or QEMU's is not positive.
func medianRatio(vmmd, qemu *measure.Summary) (ratio float64, ok bool) {
	if vmmd == nil || qemu == nil || qemu.Median <= 0 {
		return 0, false
	}
	return vmmd.Median / qemu.Median, true
}

// migrateRatio is medianRatio as a table cell, or why there is none.
func migrateRatio(vmmd, qemu *measure.Summary) string {
	switch {
	case vmmd == nil || qemu == nil:
		return "n/a"
	case qemu.Median <= 0:
		return fmt.Sprintf("n/a (QEMU %g)", qemu.Median)
	}
	ratio, _ := medianRatio(vmmd, qemu)
	return fmt.Sprintf("%.2f×", ratio)
}
