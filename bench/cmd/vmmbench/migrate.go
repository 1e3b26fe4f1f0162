package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// qemuDefaultBandwidth is QEMU 7.2's and vmmd's default max-bandwidth,
// 128 MiB/s, in bytes per second.
const qemuDefaultBandwidth = 128 << 20

// qemuUnlimitedBandwidth stands for "unlimited" on QEMU 7.2, which has no
// such value: 100 GiB/s, as in the baseline script.
const qemuUnlimitedBandwidth = 100 << 30

// migrateDowntimeLimitMS is the downtime-limit set on both sources: QEMU
// 7.2's default, set explicitly so that a change of either VMM's default
// cannot make the downtimes incomparable.
const migrateDowntimeLimitMS = 300

// guestLowPages is what the test guest may touch outside its workload
// region: everything below WORK_BASE (16 MiB; test/guest/guest.h), where its
// code, stacks, page tables and device buffers live.
const guestLowPages = (16 << 20) / pageBytes

// pageBytes is the page size of both VMMs' RAM accounting.
const pageBytes = 4096

// migrateCase is one guest state to migrate.
type migrateCase struct {
	// Name labels the case in tables and JSON; with the bandwidth it
	// identifies the case (256M-idle runs at both).
	Name string `json:"name"`
	// RAMMiB is the guest's RAM.
	RAMMiB int `json:"ram_mib"`
	// MemMiB is the size of the `mem start` region; 0 for none.
	MemMiB int `json:"mem_mib"`
	// Dirtying leaves `mem` running during the migration; otherwise it is
	// stopped once the region is filled.
	Dirtying bool `json:"dirtying"`
	// Unlimited sets max-bandwidth to unlimited; otherwise each VMM keeps
	// its default (128 MiB/s for both).
	Unlimited bool `json:"unlimited"`
}

func (c migrateCase) bandwidth() string {
	if c.Unlimited {
		return "unlimited"
	}
	return "128 MiB/s"
}

// is reports whether r is a run of c.
func (c migrateCase) is(r migrateRun) bool { return r.Case == c.Name && r.Unlimited == c.Unlimited }

// touchedPages bounds the pages the guest ever wrote: its region and all
// of the RAM below it. A migration that sends more pages with data than
// this (outside the dirtying cases, where pages are sent again and again)
// sent pages the guest never touched as data.
func (c migrateCase) touchedPages() uint64 { return uint64(c.MemMiB)<<20/pageBytes + guestLowPages }

// describe is the case's guest in words, for the tables.
func (c migrateCase) describe() string {
	switch {
	case c.MemMiB == 0:
		return "idle"
	case c.Dirtying:
		return fmt.Sprintf("rewrites %d MiB", c.MemMiB)
	}
	return fmt.Sprintf("%d MiB filled, idle", c.MemMiB)
}

// migrateCases are the cases of the issue (qemu-baseline.md §4's names),
// on a unix socket: idle, ~100, 200 and ~800 MiB of data then idle, and
// 64 and 200 MiB rewritten continuously.
func migrateCases() []migrateCase {
	return []migrateCase{
		{Name: "256M-idle", RAMMiB: 256},
		{Name: "256M-idle", RAMMiB: 256, Unlimited: true},
		{Name: "256M-filled100-idle", RAMMiB: 256, MemMiB: 100, Unlimited: true},
		{Name: "256M-filled-idle", RAMMiB: 256, MemMiB: 200, Unlimited: true},
		{Name: "1G-filled-idle", RAMMiB: 1024, MemMiB: 800, Unlimited: true},
		{Name: "256M-dirty64", RAMMiB: 256, MemMiB: 64, Dirtying: true, Unlimited: true},
		{Name: "1G-dirty200", RAMMiB: 1024, MemMiB: 200, Dirtying: true, Unlimited: true},
	}
}

// selectCases returns the cases named in the comma-separated list v (all
// for ""), in their usual order.
func selectCases(all []migrateCase, v string) ([]migrateCase, error) {
	if strings.TrimSpace(v) == "" {
		return all, nil
	}
	var names []string
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if !slices.ContainsFunc(all, func(c migrateCase) bool { return c.Name == f }) {
			var known []string
			for _, c := range all {
				if !slices.Contains(known, c.Name) {
					known = append(known, c.Name)
				}
			}
			return nil, fmt.Errorf("-migrate-cases %q: unknown case %q (want a comma-separated list of %s)",
				v, f, strings.Join(known, ", "))
		}
		names = append(names, f)
	}
	var out []migrateCase
	for _, c := range all {
		if slices.Contains(names, c.Name) {
			out = append(out, c)
		}
	}
	return out, nil
}

// migrateVMM describes how to start one VMM as migration source and
// destination.
type migrateVMM struct {
	// Name is "vmmd" or "QEMU".
	Name string
	// config returns the command line; incoming is "" for a source.
	config func(ramMiB int, qmpSock, incoming string) vmmConfig
	// unlimited is the max-bandwidth value that means no limit.
	unlimited uint64
}

func (v migrateVMM) isVMMD() bool { return v.Name == "vmmd" }

// migrateVMMs are vmmd and QEMU microvm on the same guest, one vCPU, the
// console on stdio and QMP on a unix socket. QEMU's line is the baseline's
// (no -cpu: the default CPU model, as in qemu-baseline.md §4).
func migrateVMMs(env environment) []migrateVMM {
	return []migrateVMM{
		{Name: "vmmd", unlimited: 0, config: func(ramMiB int, qmpSock, incoming string) vmmConfig {
			args := []string{"--kernel", env.kernel, "--memory", strconv.Itoa(ramMiB) + "M", "--cpus", "1", "--serial", "stdio",
				"--log-format", "json", "--qmp", "unix:" + qmpSock}
			if incoming != "" {
				args = append(args, "--incoming", incoming)
			}
			return vmmConfig{Name: "vmmd", VMM: "vmmd", Path: env.vmmd, Args: args}
		}},
		{Name: "QEMU", unlimited: qemuUnlimitedBandwidth, config: func(ramMiB int, qmpSock, incoming string) vmmConfig {
			args := []string{"-enable-kvm", "-M", "microvm", "-m", strconv.Itoa(ramMiB), "-smp", "1", "-nodefaults", "-no-user-config",
				"-display", "none", "-serial", "stdio", "-kernel", env.kernel,
				"-qmp", "unix:" + qmpSock + ",server=on,wait=off"}
			if incoming != "" {
				args = append(args, "-incoming", incoming)
			}
			return vmmConfig{Name: "microvm", VMM: "QEMU", Path: env.qemu, Args: args}
		}},
	}
}

// migrateReport is the migration section of the -json output.
type migrateReport struct {
	Cases []migrateCase `json:"cases"`
	// RunsPerCase migrations per VMM and case were measured, after Warmup
	// rounds that were not.
	RunsPerCase int `json:"runs_per_case"`
	Warmup      int `json:"warmup_rounds"`
	// DowntimeLimitMS is the downtime-limit set on every source.
	DowntimeLimitMS int `json:"downtime_limit_ms"`
	// OtherLoad is the share of all CPUs busy just before the section, when
	// none of the benchmark's VMMs ran: other work on the machine.
	OtherLoad float64      `json:"other_cpu_load"`
	DurationS float64      `json:"duration_s"`
	Runs      []migrateRun `json:"runs"`
	// Goals are the goals, case by case, as the tables show them.
	Goals []migrateGoal `json:"goals,omitempty"`
}

// runMigrateBench migrates every case with every VMM, runs times (after
// warmup rounds), and prints the tables. Each round runs every case, the
// VMMs of a case one after the other, their order alternating by round.
func runMigrateBench(ctx context.Context, env environment, o options, stdout, stderr io.Writer) (migrateReport, int) {
	cases, err := selectCases(migrateCases(), o.migrateCases)
	if err != nil {
		fmt.Fprintf(stderr, "vmmbench: migration: %v\n", err)
		return migrateReport{}, 1
	}
	rep := migrateReport{Cases: cases, RunsPerCase: o.migrateRuns, Warmup: o.warmup, DowntimeLimitMS: migrateDowntimeLimitMS}
	if load, err := otherCPULoad(ctx, time.Second); err != nil {
		fmt.Fprintf(stderr, "vmmbench: migration: %v (load not reported)\n", err)
		rep.OtherLoad = -1
	} else {
		rep.OtherLoad = load
	}
	dir, err := os.MkdirTemp("", "vmmbench-mig")
	if err != nil {
		fmt.Fprintf(stderr, "vmmbench: migration: temp dir: %v\n", err)
		return rep, 1
	}
	defer os.RemoveAll(dir)
	vmms := migrateVMMs(env)
	started := time.Now()
	fmt.Fprintf(stderr, "vmmbench: live migration, %d runs (+%d warm-up) of %d cases x %d VMMs, unix socket\n",
		o.migrateRuns, o.warmup, len(rep.Cases), len(vmms))
	seq := 0
	for round := range o.warmup + o.migrateRuns {
		for _, c := range rep.Cases {
			for k := range vmms {
				v := vmms[(round+k)%len(vmms)]
				seq++
				r, err := migrateOnce(ctx, v, c, dir, seq)
				if err != nil {
					fmt.Fprintf(stderr, "vmmbench: migration: %s %s: %v\n", v.Name, c.Name, err)
					return rep, 1
				}
				label := "warm-up"
				if round >= o.warmup {
					r.Round = round - o.warmup + 1
					rep.Runs = append(rep.Runs, r)
					label = fmt.Sprintf("%d/%d", r.Round, o.migrateRuns)
				}
				fmt.Fprintf(stderr, "  [%-7s] %-5s %-19s %-9s %s\n", label, v.Name, c.Name, c.bandwidth(), describeMigrateRun(r))
			}
		}
	}
	rep.DurationS = time.Since(started).Seconds()
	ok, err := writeMigrateReport(stdout, &rep, vmms, env)
	if err != nil {
		fmt.Fprintf(stderr, "vmmbench: migration: %v\n", err)
		return rep, 1
	}
	if !ok {
		fmt.Fprintln(stderr, "vmmbench: migration: a case never completed on some VMM, or a migration failed or failed its checks")
		return rep, 1
	}
	return rep, 0
}
