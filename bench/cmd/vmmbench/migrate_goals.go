package main

import (
	"fmt"

	"github.com/vmmd/vmmd/bench/internal/measure"
)

// The migration goals, vmmd against QEMU on the same case at
// unlimited bandwidth with the same downtime-limit.
const (
	// migrateThroughputGoal: vmmd's throughput at least 3× QEMU's, judged
	// both on the bulk rate and on the overall one.
	migrateThroughputGoal = 3.0
	// migrateDowntimeGoal: vmmd's downtime at most 0.5× QEMU's.
	migrateDowntimeGoal = 0.5
)

// goalCheck is one goal judged on one case.
type goalCheck struct {
	// Measured is false when there is nothing to judge; Why says why.
	Measured bool    `json:"measured"`
	Ratio    float64 `json:"ratio,omitempty"`
	Met      bool    `json:"met"`
	Why      string  `json:"why,omitempty"`
}

// cell is the check as a table cell.
func (g goalCheck) cell() string {
	if !g.Measured {
		return "n/a (" + g.Why + ")"
	}
	s := fmt.Sprintf("%s× **%s**", ratioDigits(g.Ratio), verdict(g.Met))
	if g.Why != "" {
		s += " (" + g.Why + ")"
	}
	return s
}

// ratioDigits formats a ratio with two decimals, or three when two would
// show a goal's own value (2.996 is "2.996× NOT MET", not "3.00×").
func ratioDigits(r float64) string {
	s := fmt.Sprintf("%.2f", r)
	for _, goal := range []float64{migrateThroughputGoal, migrateDowntimeGoal} {
		if s == fmt.Sprintf("%.2f", goal) && r != goal {
			return fmt.Sprintf("%.3f", r)
		}
	}
	return s
}

// migrateGoal is the goals judged on one case.
type migrateGoal struct {
	Case      string `json:"case"`
	Bandwidth string `json:"bandwidth"`
	// Skipped says why the case is not one of the goals' cases.
	Skipped string `json:"skipped,omitempty"`
	// Throughput is judged on the bulk rate (bulkGbps), ThroughputOverall
	// on the rate of the whole migration, the stop included (overallGbps).
	Throughput        goalCheck `json:"throughput"`
	ThroughputOverall goalCheck `json:"throughput_overall"`
	Pause             goalCheck `json:"pause"`
	Downtime          goalCheck `json:"qmp_downtime"`
	// Untouched is met when vmmd never sent more pages with data than the
	// guest touched; Ratio is unused.
	Untouched goalCheck `json:"untouched_not_sent"`
}

// evaluateMigrateGoal judges case c from vmmd's and QEMU's cells.
func evaluateMigrateGoal(c migrateCase, vmmd, qemu migrateCell) migrateGoal {
	g := migrateGoal{Case: c.Name, Bandwidth: c.bandwidth()}
	if !c.Unlimited {
		g.Skipped = "the goals are at unlimited bandwidth"
		return g
	}
	g.Throughput = throughputCheck(c, "bulk", vmmd.bulk, qemu.bulk)
	g.ThroughputOverall = throughputCheck(c, "overall", vmmd.overall, qemu.overall)
	if r, ok := medianRatio(vmmd.pause, qemu.pause); ok {
		g.Pause = goalCheck{Measured: true, Ratio: r, Met: r <= migrateDowntimeGoal}
		if vmmd.paused < vmmd.verified || qemu.paused < qemu.verified {
			g.Pause.Why = fmt.Sprintf("measured in %d/%d and %d/%d runs", vmmd.paused, vmmd.verified, qemu.paused, qemu.verified)
		}
	} else {
		g.Pause = goalCheck{Why: "no STOP→RESUME pair on both"}
	}
	if r, ok := medianRatio(vmmd.down, qemu.down); ok {
		g.Downtime = goalCheck{Measured: true, Ratio: r, Met: r <= migrateDowntimeGoal}
	} else if vmmd.down != nil && qemu.down != nil {
		g.Downtime = goalCheck{Why: fmt.Sprintf("QEMU's median is %g ms", qemu.down.Median)}
	} else {
		g.Downtime = goalCheck{Why: "no completed run on both"}
	}
	switch {
	case !vmmd.checkable:
		g.Untouched = goalCheck{Why: "dirtying: pages are sent more than once"}
	case vmmd.completed == 0:
		g.Untouched = goalCheck{Why: "no completed run"}
	case vmmd.untouchedSent == 0:
		g.Untouched = goalCheck{Measured: true, Met: true,
			Why: fmt.Sprintf("at most %d pages with data ≤ %d touched", vmmd.maxNormal, c.touchedPages())}
	default:
		g.Untouched = goalCheck{Measured: true,
			Why: fmt.Sprintf("in %d/%d runs; up to %d pages with data > %d touched", vmmd.untouchedSent, vmmd.completed,
				vmmd.maxNormal, c.touchedPages())}
	}
	return g
}

// throughputCheck judges the throughput goal on one measure, named what.
func throughputCheck(c migrateCase, what string, vmmd, qemu *measure.Summary) goalCheck {
	if c.MemMiB == 0 {
		return goalCheck{Why: "idle: no bulk data to send"}
	}
	if r, ok := medianRatio(vmmd, qemu); ok {
		return goalCheck{Measured: true, Ratio: r, Met: r >= migrateThroughputGoal}
	}
	return goalCheck{Why: "no " + what + " throughput on both"}
}

// untouchedCell is the Untouched check as a table cell.
func (g migrateGoal) untouchedCell() string {
	u := g.Untouched
	switch {
	case !u.Measured:
		return "n/a (" + u.Why + ")"
	case u.Met:
		return "never: **MET** (" + u.Why + ")"
	}
	return "SENT: **NOT MET** (" + u.Why + ")"
}
