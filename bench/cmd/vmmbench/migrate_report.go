package main

import (
	"fmt"
	"io"
	"runtime"
	"strings"

	"github.com/vmmd/vmmd/bench/internal/measure"
)

// describeMigrateRun is the one-line progress report of a run.
func describeMigrateRun(r migrateRun) string {
	if !r.Completed {
		return "FAILED: " + strings.Join(r.Failures, "; ")
	}
	pause, bulk, overall := "   –", "   –", "   –"
	if r.PauseMS != nil {
		pause = fmt.Sprintf("%4.0f", *r.PauseMS)
	}
	if r.BulkGbps != nil {
		bulk = fmt.Sprintf("%4.1f", *r.BulkGbps)
	}
	if r.OverallGbps != nil {
		overall = fmt.Sprintf("%4.1f", *r.OverallGbps)
	}
	s := fmt.Sprintf("total %5.0f ms  down %3.0f ms  pause %s ms  setup %2.0f ms  %6.1f MiB  bulk %s  overall %s Gbit/s  normal %d  syncs %d",
		r.TotalMS, r.DowntimeMS, pause, r.SetupMS, r.TransferredMiB, bulk, overall, r.NormalPages, r.DirtySyncs)
	if !r.Verified {
		s += "  CHECK FAILED: " + strings.Join(r.Failures, "; ")
	}
	if r.PauseError != "" {
		s += "  pause unmeasured: " + r.PauseError
	}
	if r.UncleanExit {
		s += fmt.Sprintf("  exits: src %s, dst %s", r.SrcExit, r.DstExit)
	}
	return s
}

// summaryCell formats median (min–max) with the given verb, "–" for none.
func summaryCell(s *measure.Summary, verb string) string {
	if s == nil {
		return "–"
	}
	return fmt.Sprintf(verb+" ("+verb+"–"+verb+")", s.Median, s.Min, s.Max)
}

// normalCell is the pages-with-data cell: the summary and how it compares
// with the pages the guest touched.
func normalCell(cell migrateCell, c migrateCase) string {
	if cell.normal == nil {
		return "–"
	}
	s := summaryCell(cell.normal, "%.0f")
	switch {
	case !cell.checkable:
		return s + " (sent again as rewritten)"
	case cell.untouchedSent > 0:
		return fmt.Sprintf("%s > %d in %d runs: UNTOUCHED PAGES SENT", s, c.touchedPages(), cell.untouchedSent)
	}
	return fmt.Sprintf("%s ≤ %d", s, c.touchedPages())
}

// writeMigrateReport prints the tables and the goal summary and stores the
// goals in rep; ok is false when a migration failed or a completed one
// failed a check.
func writeMigrateReport(w io.Writer, rep *migrateReport, vmms []migrateVMM, env environment) (ok bool, err error) {
	var b strings.Builder
	noisy := ""
	if rep.OtherLoad >= noisyLoad {
		noisy = fmt.Sprintf(" — NOISY: other work kept %.0f%% of the %d CPUs busy", 100*rep.OtherLoad, runtime.NumCPU())
	}
	fmt.Fprintf(&b, "\n### Live migration, vmmd vs QEMU microvm: test guest, 1 vCPU, unix socket, downtime-limit %d ms%s\n\n",
		rep.DowntimeLimitMS, noisy)
	b.WriteString("| case | guest | max-bandwidth | VMM | completed | checks ok | total-time ms | downtime ms (QMP) | " +
		"pause ms (STOP→RESUME) | setup-time ms | sent MiB | bulk Gbit/s | overall Gbit/s | pages sent with data (≤ touched) |\n")
	b.WriteString("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	var ratios strings.Builder
	ratios.WriteString("| case | max-bandwidth | total-time | downtime (QMP) | pause (STOP→RESUME) | bulk throughput | " +
		"overall throughput | sent |\n")
	ratios.WriteString("|---|---|---:|---:|---:|---:|---:|---:|\n")
	ok = true
	rep.Goals = nil
	for _, c := range rep.Cases {
		cells := make([]migrateCell, len(vmms))
		var vmmd, qemu *migrateCell
		for i, v := range vmms {
			if cells[i], err = summarizeMigrate(rep.Runs, c, v.Name); err != nil {
				return false, err
			}
			if v.isVMMD() {
				vmmd = &cells[i]
			} else {
				qemu = &cells[i]
			}
			if !cells[i].ok() {
				ok = false
			}
		}
		for i, v := range vmms {
			cell := cells[i]
			pause := summaryCell(cell.pause, "%.1f")
			if cell.pause != nil && cell.paused < cell.verified {
				pause += fmt.Sprintf(" [%d/%d]", cell.paused, cell.verified)
			}
			fmt.Fprintf(&b, "| %s | %d MiB, %s | %s | %s | %d/%d | %d/%d | %s | %s | %s | %s | %s | %s | %s | %s |\n",
				c.Name, c.RAMMiB, c.describe(), c.bandwidth(), v.Name,
				cell.completed, cell.runs, cell.verified, cell.completed,
				summaryCell(cell.total, "%.0f"), summaryCell(cell.down, "%.0f"), pause, summaryCell(cell.setup, "%.0f"),
				summaryCell(cell.mib, "%.1f"), summaryCell(cell.bulk, "%.2f"), summaryCell(cell.overall, "%.2f"),
				normalCell(cell, c))
		}
		if vmmd == nil || qemu == nil {
			continue
		}
		fmt.Fprintf(&ratios, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", c.Name, c.bandwidth(),
			migrateRatio(vmmd.total, qemu.total), migrateRatio(vmmd.down, qemu.down), migrateRatio(vmmd.pause, qemu.pause),
			migrateRatio(vmmd.bulk, qemu.bulk), migrateRatio(vmmd.overall, qemu.overall), migrateRatio(vmmd.mib, qemu.mib))
		rep.Goals = append(rep.Goals, evaluateMigrateGoal(c, *vmmd, *qemu))
	}
	b.WriteString("\nCells: median (min–max) of the completed runs (pause: [measured/checked runs] when not all). " +
		"pause = the source's QMP `STOP` event to the destination's `RESUME`, by the events' own timestamps (same host clock): " +
		"the guest-visible pause, the same span for both VMMs; QEMU's `downtime` ends at the source's last byte, vmmd's at the commit " +
		"after the destination loaded the state. bulk = `ram.precopy-bytes` × 8 / (total-time − setup-time − downtime): " +
		"what was sent while the guest ran, over the time it ran migrating (what is sent during the stop is in the downtime); " +
		"overall = `ram.transferred` × 8 / (total-time − setup-time): everything sent, over the whole migration, stop included. " +
		"Both are shown because QEMU switches over once what is left of its first pass fits in downtime-limit at its measured rate, " +
		"so it may send up to downtime-limit's worth (hundreds of MiB in the filled-idle cases) with the guest stopped: " +
		"bulk leaves that data and that time out, overall counts them. " +
		"Neither for idle guests, which send under 1 MiB. " +
		"pages sent with data = `ram.normal`; touched = the `mem` region plus all RAM below it (16 MiB, the guest's own); " +
		"more than that means pages the guest never wrote went as data.\n")
	b.WriteString("\n#### vmmd/QEMU, ratios of the medians (below 1: vmmd smaller)\n\n")
	b.WriteString(ratios.String())
	if err := writeDowntimeSteps(&b, rep); err != nil {
		return false, err
	}
	writeMigrateGoals(&b, rep)
	writeMigrateNotes(&b, rep, env)
	if _, err := io.WriteString(w, b.String()); err != nil {
		return false, fmt.Errorf("write migration report: %w", err)
	}
	return ok, nil
}

// writeDowntimeSteps prints, case by case, where vmmd says its downtime
// went (query-migrate's x-vmmd-downtime-steps), as medians over the runs
// that completed: the table to read before trying to shorten the pause.
func writeDowntimeSteps(b *strings.Builder, rep *migrateReport) error {
	names := downtimeSteps()
	var rows strings.Builder
	for _, c := range rep.Cases {
		cols := make([][]float64, len(names)+1) // the steps, then the downtime
		for _, r := range rep.Runs {
			if r.VMM != "vmmd" || r.Case != c.Name || r.Unlimited != c.Unlimited || !r.Completed || r.DowntimeSteps == nil {
				continue
			}
			for i, n := range names {
				cols[i] = append(cols[i], r.DowntimeSteps[n])
			}
			cols[len(names)] = append(cols[len(names)], r.DowntimeMS)
		}
		if len(cols[0]) == 0 {
			continue
		}
		fmt.Fprintf(&rows, "| %s | %s | %d |", c.Name, c.bandwidth(), len(cols[0]))
		for i, xs := range cols {
			s, err := measure.Summarize(xs)
			if err != nil {
				return fmt.Errorf("summarize vmmd's downtime steps, %s: %w", c.Name, err)
			}
			format := " %.3f |"
			if i == len(names) {
				format = " %.0f |"
			}
			fmt.Fprintf(&rows, format, s.Median)
		}
		rows.WriteString("\n")
	}
	if rows.Len() == 0 {
		return nil
	}
	b.WriteString("\n#### Where vmmd's downtime went (query-migrate's x-vmmd-downtime-steps; medians, ms)\n\n")
	fmt.Fprintf(b, "| case | max-bandwidth | runs | %s | downtime (QMP) |\n", strings.Join(names, " | "))
	b.WriteString("|---|---|---:|" + strings.Repeat("---:|", len(names)+1) + "\n")
	b.WriteString(rows.String())
	b.WriteString("\nstop comes before the STOP event (it is not in the pause), the rest is inside it; destination-load " +
		"runs from the device state's last byte to the destination's ready.\n")
	return nil
}

// writeMigrateGoals prints the goal summary of rep.Goals.
func writeMigrateGoals(b *strings.Builder, rep *migrateReport) {
	fmt.Fprintf(b, "\n#### Goals (issue: throughput ≥ %g× QEMU's, judged on bulk and on overall; downtime ≤ %g× QEMU's with the same downtime-limit, "+
		"untouched pages never sent as data)\n\n", migrateThroughputGoal, migrateDowntimeGoal)
	fmt.Fprintf(b, "| case | bulk throughput, ≥ %g× | overall throughput, ≥ %g× | guest-visible pause, ≤ %g× | "+
		"QMP downtime, ≤ %g× | untouched pages sent as data by vmmd |\n",
		migrateThroughputGoal, migrateThroughputGoal, migrateDowntimeGoal, migrateDowntimeGoal)
	b.WriteString("|---|---|---|---|---|---|\n")
	type tally struct{ met, judged int }
	var thr, overall, pause, down, untouched tally
	count := func(t *tally, g goalCheck) {
		if g.Measured {
			t.judged++
			if g.Met {
				t.met++
			}
		}
	}
	for _, g := range rep.Goals {
		if g.Skipped != "" {
			fmt.Fprintf(b, "| %s (%s) | n/a: %s | | | | |\n", g.Case, g.Bandwidth, g.Skipped)
			continue
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s |\n", g.Case, g.Throughput.cell(), g.ThroughputOverall.cell(),
			g.Pause.cell(), g.Downtime.cell(), g.untouchedCell())
		count(&thr, g.Throughput)
		count(&overall, g.ThroughputOverall)
		count(&pause, g.Pause)
		count(&down, g.Downtime)
		count(&untouched, g.Untouched)
	}
	fmt.Fprintf(b, "\nGoals met: bulk throughput in %d of %d cases, overall throughput in %d of %d, guest-visible pause in %d of %d, QMP downtime in %d of %d, "+
		"untouched pages never sent in %d of %d. The pause is the like-for-like downtime comparison; "+
		"QEMU's QMP downtime leaves out the destination's load and start. Goals are reported, never a reason for a failed run.\n",
		thr.met, thr.judged, overall.met, overall.judged, pause.met, pause.judged, down.met, down.judged, untouched.met, untouched.judged)
}

// writeMigrateNotes prints what went wrong and how the figures were made.
func writeMigrateNotes(b *strings.Builder, rep *migrateReport, env environment) {
	var notes []string
	for _, r := range rep.Runs {
		if len(r.Failures) > 0 {
			notes = append(notes, fmt.Sprintf("%s %s (%s) run %d: %s", r.VMM, r.Case, bandwidthOf(r), r.Round, strings.Join(r.Failures, "; ")))
		}
		if r.PauseError != "" {
			notes = append(notes, fmt.Sprintf("%s %s (%s) run %d: pause not measured: %s", r.VMM, r.Case, bandwidthOf(r), r.Round, r.PauseError))
		}
		if r.UncleanExit {
			notes = append(notes, fmt.Sprintf("%s %s (%s) run %d: not a clean exit on SIGTERM: source %s, destination %s",
				r.VMM, r.Case, bandwidthOf(r), r.Round, r.SrcExit, r.DstExit))
		}
	}
	if len(notes) > 0 {
		b.WriteString("\nNotes:\n")
		for _, n := range notes {
			fmt.Fprintf(b, "- %s\n", n)
		}
	}
	fmt.Fprintf(b, "\nRuns per VMM and case: %d (+%d warm-up round; flags -migrate-runs and -warmup, -migrate-cases to pick cases); "+
		"VMMs alternating within a case, order swapped each round; a fresh source and destination per run.\n",
		rep.RunsPerCase, rep.Warmup)
	fmt.Fprintf(b, "Cases: idle = just booted; N MiB filled, idle = `mem start N` until OK, one complete pass, then `mem stop` "+
		"(again if the byte had wrapped to 0: no zero pages, so N MiB to send); rewrites N MiB = `mem start N` left running. "+
		"downtime-limit set to %d ms on both. Unlimited max-bandwidth is 0 on vmmd and %d (100 GiB/s) on QEMU 7.2. "+
		"Both report whole milliseconds: ratios of single-digit figures are coarse.\n",
		rep.DowntimeLimitMS, uint64(qemuUnlimitedBandwidth))
	b.WriteString("Checked after every completed run (a failure fails the benchmark): source `postmigrate`, destination `running`, " +
		"`ping` answered `PONG` on the destination, and there `mem check` ok for the mem cases.\n")
	load := "not measured"
	if rep.OtherLoad >= 0 {
		load = fmt.Sprintf("%.0f%% of all CPUs busy with other work in the second before the section", 100*rep.OtherLoad)
	}
	fmt.Fprintf(b, "Host: kernel %s, %d CPUs, %s; %s. The section took %.1f s.\n",
		env.hostKernel, runtime.NumCPU(), load, env.qemuVersion, rep.DurationS)
}

func bandwidthOf(r migrateRun) string {
	return migrateCase{Unlimited: r.Unlimited}.bandwidth()
}
