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
	s := fmt.Sprintf("total %6.0f ms  down %4.0f ms  setup %3.0f ms  %6.1f MiB  %6.0f Mbit/s  syncs %d",
		r.TotalMS, r.DowntimeMS, r.SetupMS, r.TransferredMiB, r.Mbps, r.DirtySyncs)
	if !r.Verified {
		s += "  CHECK FAILED: " + strings.Join(r.Failures, "; ")
	}
	if r.UncleanExit {
		s += fmt.Sprintf("  exits: src %s, dst %s", r.SrcExit, r.DstExit)
	}
	return s
}

// migrateCell is one VMM's figures for one case.
type migrateCell struct {
	runs, completed, verified int
	total, down, setup, mib   *measure.Summary
}

// summarizeMigrate collects the runs of one case and VMM.
func summarizeMigrate(runs []migrateRun, c migrateCase, vmm string) (migrateCell, error) {
	var cell migrateCell
	var total, down, setup, mib []float64
	for _, r := range runs {
		if r.Case != c.Name || r.Unlimited != c.Unlimited || r.VMM != vmm {
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
	}
	if cell.completed == 0 {
		return cell, nil
	}
	for _, x := range []struct {
		dst **measure.Summary
		xs  []float64
	}{{&cell.total, total}, {&cell.down, down}, {&cell.setup, setup}, {&cell.mib, mib}} {
		s, err := measure.Summarize(x.xs)
		if err != nil {
			return cell, fmt.Errorf("summarize %s %s: %w", vmm, c.Name, err)
		}
		*x.dst = &s
	}
	return cell, nil
}

// migrateRatio is vmmd's median over QEMU's, or why there is none.
func migrateRatio(vmmd, qemu *measure.Summary) string {
	switch {
	case vmmd == nil || qemu == nil:
		return "n/a"
	case qemu.Median <= 0:
		return fmt.Sprintf("n/a (QEMU %.0f ms)", qemu.Median)
	}
	return fmt.Sprintf("%.2f×", vmmd.Median/qemu.Median)
}

// writeMigrateReport prints the table; ok is false when a case never
// completed on some VMM or a completed migration failed a check.
func writeMigrateReport(w io.Writer, rep migrateReport, vmms []migrateVMM, env environment) (ok bool, err error) {
	var b strings.Builder
	noisy := ""
	if rep.OtherLoad >= noisyLoad {
		noisy = fmt.Sprintf(" — NOISY: other work kept %.0f%% of the %d CPUs busy", 100*rep.OtherLoad, runtime.NumCPU())
	}
	fmt.Fprintf(&b, "\n### Live migration, vmmd vs QEMU microvm: test guest %d MiB, 1 vCPU, unix socket, `query-migrate` figures%s\n\n",
		migrateMemoryMiB, noisy)
	b.WriteString("| case | max-bandwidth | VMM | completed | checks ok | total-time ms | downtime ms | setup-time ms | transferred MiB | vmmd/QEMU total-time | vmmd/QEMU downtime |\n")
	b.WriteString("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	ms := func(s *measure.Summary) string {
		if s == nil {
			return "–"
		}
		return fmt.Sprintf("%.0f (%.0f–%.0f)", s.Median, s.Min, s.Max)
	}
	mib := func(s *measure.Summary) string {
		if s == nil {
			return "–"
		}
		return fmt.Sprintf("%.1f (%.1f–%.1f)", s.Median, s.Min, s.Max)
	}
	ok = true
	for _, c := range rep.Cases {
		cells := make([]migrateCell, len(vmms))
		var vmmd *migrateCell
		for i, v := range vmms {
			if cells[i], err = summarizeMigrate(rep.Runs, c, v.Name); err != nil {
				return false, err
			}
			if v.isVMMD() {
				vmmd = &cells[i]
			}
			if cells[i].completed == 0 || cells[i].verified < cells[i].completed {
				ok = false
			}
		}
		for i, v := range vmms {
			cell := cells[i]
			ratios := "— | —"
			if !v.isVMMD() {
				var vt, vd *measure.Summary
				if vmmd != nil {
					vt, vd = vmmd.total, vmmd.down
				}
				ratios = migrateRatio(vt, cell.total) + " | " + migrateRatio(vd, cell.down)
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %d/%d | %d/%d | %s | %s | %s | %s | %s |\n", c.Name, c.bandwidth(), v.Name,
				cell.completed, cell.runs, cell.verified, cell.completed,
				ms(cell.total), ms(cell.down), ms(cell.setup), mib(cell.mib), ratios)
		}
	}
	b.WriteString("\nCells: median (min–max) of the completed runs. Ratios: vmmd's median over QEMU's (below 1: vmmd is faster).\n")
	var notes []string
	for _, r := range rep.Runs {
		if len(r.Failures) > 0 {
			notes = append(notes, fmt.Sprintf("%s %s (%s) run %d: %s", r.VMM, r.Case, bandwidthOf(r), r.Round, strings.Join(r.Failures, "; ")))
		}
		if r.UncleanExit {
			notes = append(notes, fmt.Sprintf("%s %s (%s) run %d: not a clean exit on SIGTERM: source %s, destination %s",
				r.VMM, r.Case, bandwidthOf(r), r.Round, r.SrcExit, r.DstExit))
		}
	}
	if len(notes) > 0 {
		b.WriteString("\nNotes:\n")
		for _, n := range notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	fmt.Fprintf(&b, "\nRuns per VMM and case: %d (+%d warm-up round); VMMs alternating within a case, order swapped each round; a fresh source and destination per run.\n",
		rep.RunsPerCase, rep.Warmup)
	fmt.Fprintf(&b, "Cases: idle = just booted; filled-idle = `mem start 200` until OK, one complete pass, then `mem stop` "+
		"(again if the byte had wrapped to 0: no zero pages, so 200 MiB to send); dirty64 = `mem start 64` left running. "+
		"Unlimited max-bandwidth is 0 on vmmd and %d (100 GiB/s) on QEMU 7.2. Both report whole milliseconds: ratios of single-digit figures are coarse.\n",
		uint64(qemuUnlimitedBandwidth))
	b.WriteString("Checked after every completed run: source `postmigrate`, destination `running`, `ping` answered `PONG` on the destination, and there `mem check` ok for the mem cases.\n")
	load := "not measured"
	if rep.OtherLoad >= 0 {
		load = fmt.Sprintf("%.0f%% of all CPUs busy with other work in the second before the section", 100*rep.OtherLoad)
	}
	fmt.Fprintf(&b, "Host: kernel %s, %d CPUs, %s; %s. The section took %.1f s.\n",
		env.hostKernel, runtime.NumCPU(), load, env.qemuVersion, rep.DurationS)
	if _, err := io.WriteString(w, b.String()); err != nil {
		return false, fmt.Errorf("write migration report: %w", err)
	}
	return ok, nil
}

func bandwidthOf(r migrateRun) string {
	return migrateCase{Unlimited: r.Unlimited}.bandwidth()
}
