package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/vmmd/vmmd/bench/internal/measure"
)

// goalRatio is the target: vmmd's median at most half of QEMU's.
const goalRatio = 0.5

// configSummary aggregates the runs of one configuration.
type configSummary struct {
	Config       vmmConfig        `json:"-"`
	Name         string           `json:"config"`
	Runs         int              `json:"runs"`
	OK           int              `json:"ok"`
	FirstError   string           `json:"first_error,omitempty"`
	UncleanExits int              `json:"unclean_exits"`
	LastUnclean  string           `json:"last_unclean_exit,omitempty"`
	ReadyLine    string           `json:"ready_line,omitempty"`
	BootMS       *measure.Summary `json:"boot_ms,omitempty"`
	OverheadMiB  *measure.Summary `json:"overhead_mib,omitempty"`
	RSSMiB       *measure.Summary `json:"rss_mib,omitempty"`
	PSSMiB       *measure.Summary `json:"pss_mib,omitempty"`
	GuestRAMMiB  *measure.Summary `json:"guest_ram_rss_mib,omitempty"`
}

// comparison is vmmd against one QEMU configuration on one measure.
type comparison struct {
	Against string `json:"against"`
	// Comparable is false when either side has no successful run.
	Comparable bool    `json:"comparable"`
	Ratio      float64 `json:"ratio,omitempty"`
	Met        bool    `json:"met"`
}

// goalResult is one goal over every QEMU configuration.
type goalResult struct {
	Measure     string       `json:"measure"`
	Met         bool         `json:"met"`
	Comparisons []comparison `json:"comparisons"`
}

// settings are the run parameters stored in the JSON results.
type settings struct {
	Runs      int     `json:"runs"`
	Warmup    int     `json:"warmup_rounds"`
	MemoryMiB int     `json:"memory_mib"`
	SettleS   float64 `json:"settle_s"`
	TimeoutS  float64 `json:"timeout_s"`
	Marker    string  `json:"marker"`
	Order     string  `json:"order"`
}

// rawReport is the -json output.
type rawReport struct {
	Started   time.Time       `json:"started"`
	DurationS float64         `json:"duration_s"`
	Host      hostInfo        `json:"host"`
	Settings  settings        `json:"settings"`
	Configs   []vmmConfig     `json:"configs"`
	Summaries []configSummary `json:"summaries"`
	Goals     []goalResult    `json:"goals"`
	Runs      []runResult     `json:"runs"`
	// Migration is set when the migration section ran.
	Migration *migrateReport `json:"migration,omitempty"`
}

func settingsOf(o options) settings {
	return settings{Runs: o.runs, Warmup: o.warmup, MemoryMiB: o.memoryMiB, SettleS: o.settle.Seconds(),
		TimeoutS: o.timeout.Seconds(), Marker: readyMarker, Order: "one VMM at a time, order rotating each round"}
}

// summarize groups results by configuration, in the order of cfgs.
func summarize(cfgs []vmmConfig, results []runResult) ([]configSummary, error) {
	var sums []configSummary
	for _, c := range cfgs {
		s := configSummary{Config: c, Name: c.Name}
		var boot, over, rss, pss, ram []float64
		for _, r := range results {
			if r.Config != c.Name {
				continue
			}
			s.Runs++
			if !r.Exit.Clean && r.Exit.Status != "" {
				s.UncleanExits++
				s.LastUnclean = r.Exit.Status
			}
			if !r.OK {
				if s.FirstError == "" {
					s.FirstError = r.Error
				}
				continue
			}
			s.OK++
			if s.ReadyLine == "" {
				s.ReadyLine = r.ReadyLine
			}
			boot = append(boot, r.BootMS)
			over = append(over, mib(r.Memory.OverheadKiB))
			rss = append(rss, mib(r.Memory.TotalRSSKiB))
			pss = append(pss, mib(r.Memory.TotalPSSKiB))
			ram = append(ram, mib(r.Memory.GuestRAMRSSKiB))
		}
		if s.OK > 0 {
			var err error
			for _, x := range []struct {
				dst **measure.Summary
				xs  []float64
			}{{&s.BootMS, boot}, {&s.OverheadMiB, over}, {&s.RSSMiB, rss}, {&s.PSSMiB, pss}, {&s.GuestRAMMiB, ram}} {
				var sum measure.Summary
				if sum, err = measure.Summarize(x.xs); err != nil {
					return nil, fmt.Errorf("summarize %s: %w", c.Name, err)
				}
				*x.dst = &sum
			}
		}
		sums = append(sums, s)
	}
	return sums, nil
}

// compare returns vmmd's median over QEMU's for one measure.
func compare(against string, vmmd, qemu *measure.Summary) comparison {
	c := comparison{Against: against}
	if vmmd == nil || qemu == nil || qemu.Median <= 0 {
		return c
	}
	c.Comparable = true
	c.Ratio = vmmd.Median / qemu.Median
	c.Met = c.Ratio <= goalRatio
	return c
}

// evaluateGoals checks vmmd against every QEMU configuration. A goal is met
// only when it is met against all of them; a failed configuration counts as
// not met, since the claim could not be checked.
func evaluateGoals(sums []configSummary) []goalResult {
	var vmmd *configSummary
	for i := range sums {
		if sums[i].Config.isVMMD() {
			vmmd = &sums[i]
		}
	}
	boot := goalResult{Measure: "boot time", Met: true}
	mem := goalResult{Measure: "memory overhead", Met: true}
	for _, q := range sums {
		if q.Config.isVMMD() {
			continue
		}
		var vb, vm *measure.Summary
		if vmmd != nil {
			vb, vm = vmmd.BootMS, vmmd.OverheadMiB
		}
		cb, cm := compare(q.Name, vb, q.BootMS), compare(q.Name, vm, q.OverheadMiB)
		boot.Comparisons, boot.Met = append(boot.Comparisons, cb), boot.Met && cb.Met
		mem.Comparisons, mem.Met = append(mem.Comparisons, cm), mem.Met && cm.Met
	}
	if vmmd == nil || len(boot.Comparisons) == 0 {
		boot.Met, mem.Met = false, false
	}
	return []goalResult{boot, mem}
}

// writeReport prints the markdown tables and the goal verdicts.
func writeReport(w io.Writer, sums []configSummary, goals []goalResult, o options, env environment, elapsed time.Duration) error {
	var b strings.Builder
	ratioCells := func(g goalResult, s configSummary) string {
		if s.Config.isVMMD() {
			return "— | —"
		}
		for _, c := range g.Comparisons {
			if c.Against == s.Name {
				if !c.Comparable {
					return "n/a | NOT MET (no comparison)"
				}
				return fmt.Sprintf("%.2f× | %s", c.Ratio, verdict(c.Met))
			}
		}
		return "n/a | n/a"
	}
	stat := func(s *measure.Summary) string {
		if s == nil {
			return "failed | – | – | –"
		}
		return fmt.Sprintf("%.1f | %.1f | %.1f | %.1f", s.Median, s.Min, s.Max, s.P90)
	}
	median := func(s *measure.Summary) string {
		if s == nil {
			return "–"
		}
		return fmt.Sprintf("%.1f", s.Median)
	}

	fmt.Fprintf(&b, "\n### Boot time: exec → first stdout chunk containing `%s` (ms)\n\n", readyMarker)
	fmt.Fprintf(&b, "| VMM | config | runs ok | median | min | max | p90 | vmmd/QEMU (medians) | goal ≤ %.2f× |\n", goalRatio)
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---|\n")
	for _, s := range sums {
		fmt.Fprintf(&b, "| %s | %s | %d/%d | %s | %s |\n", s.Config.VMM, s.Name, s.OK, s.Runs, stat(s.BootMS), ratioCells(goals[0], s))
	}

	fmt.Fprintf(&b, "\n### VMM memory overhead: RSS minus guest-RAM mapping RSS, %v after `%s` (MiB)\n\n", o.settle, readyMarker)
	fmt.Fprintf(&b, "| VMM | config | runs ok | overhead median | min | max | p90 | RSS total | PSS total | guest RAM RSS | vmmd/QEMU (overhead medians) | goal ≤ %.2f× |\n", goalRatio)
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, s := range sums {
		fmt.Fprintf(&b, "| %s | %s | %d/%d | %s | %s | %s | %s | %s |\n", s.Config.VMM, s.Name, s.OK, s.Runs,
			stat(s.OverheadMiB), median(s.RSSMiB), median(s.PSSMiB), median(s.GuestRAMMiB), ratioCells(goals[1], s))
	}
	b.WriteString("\n(RSS total, PSS total and guest RAM RSS are medians.)\n\n")

	for _, g := range goals {
		var parts []string
		for _, c := range g.Comparisons {
			if c.Comparable {
				parts = append(parts, fmt.Sprintf("%.2f× vs %s", c.Ratio, c.Against))
			} else {
				parts = append(parts, "no comparison with "+c.Against)
			}
		}
		fmt.Fprintf(&b, "Goal: vmmd %s ≤ %.2f× QEMU (median, every QEMU config): **%s** (%s)\n",
			g.Measure, goalRatio, verdict(g.Met), strings.Join(parts, ", "))
	}

	var notes []string
	for _, s := range sums {
		if s.OK < s.Runs {
			notes = append(notes, fmt.Sprintf("%s failed %d of %d runs; first error: %s", s.Name, s.Runs-s.OK, s.Runs, s.FirstError))
		}
		if s.UncleanExits > 0 {
			notes = append(notes, fmt.Sprintf("%s did not exit with status 0 on SIGTERM in %d of %d runs (last: %s)",
				s.Name, s.UncleanExits, s.Runs, s.LastUnclean))
		}
	}
	if len(notes) > 0 {
		b.WriteString("\nNotes:\n")
		for _, n := range notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	fmt.Fprintf(&b, "\n%d runs per configuration (+%d warm-up round), one VMM at a time, order rotating each round; guest RAM %d MiB, 1 vCPU.\n",
		o.runs, o.warmup, o.memoryMiB)
	fmt.Fprintf(&b, "Host: kernel %s, %d CPUs; %s. This section took %.1f s.\n", env.hostKernel, env.host().CPUs, env.qemuVersion, elapsed.Seconds())
	_, err := io.WriteString(w, b.String())
	return err
}

func verdict(met bool) string {
	if met {
		return "MET"
	}
	return "NOT MET"
}
