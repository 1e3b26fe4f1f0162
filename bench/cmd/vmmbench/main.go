// Command vmmbench compares vmmd with QEMU microvm on this machine: time from
// exec to the guest's GUEST-READY console line, the VMM's own memory (RSS
// minus the guest RAM mapping), in-guest disk throughput, QMP round trips
// and live migration. Runs of the VMMs are interleaved so that machine noise
// hits all of them alike. It is what `make bench` runs; -only picks sections.
//
// The migration section (-only migrate) migrates each case of migrateCases
// -migrate-runs times per VMM (default 10, plus -warmup rounds: about 1.5
// minutes on this 2-CPU host); -migrate-cases runs only the named cases.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

// options are the command-line settings.
type options struct {
	runs      int
	warmup    int
	memoryMiB int
	settle    time.Duration
	timeout   time.Duration
	vmmd      string
	qemu      string
	kernel    string
	jsonPath  string
	// sections are the parts of the benchmark to run (-only).
	sections map[string]bool
	// migrateRuns is the number of migrations per VMM and case.
	migrateRuns int
	// migrateCases names the migration cases to run (-migrate-cases); ""
	// is all.
	migrateCases string
}

// The sections of the benchmark, in the order they run.
const (
	sectionBoot    = "boot"
	sectionDisk    = "disk"
	sectionQMP     = "qmp"
	sectionMigrate = "migrate"
)

func allSections() []string {
	return []string{sectionBoot, sectionDisk, sectionQMP, sectionMigrate}
}

// parseSections turns a comma-separated -only value into a set; "" is all.
func parseSections(v string) (map[string]bool, error) {
	set := map[string]bool{}
	if strings.TrimSpace(v) == "" {
		for _, s := range allSections() {
			set[s] = true
		}
		return set, nil
	}
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if !slices.Contains(allSections(), f) {
			return nil, fmt.Errorf("-only %q: unknown section %q (want a comma-separated list of %s)",
				v, f, strings.Join(allSections(), ", "))
		}
		set[f] = true
	}
	return set, nil
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run returns the exit status: 0 when every section asked for was
// measured, 1 when a comparison could not be made, 2 for bad flags.
func run(args []string, stdout, stderr io.Writer) int {
	opts, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "vmmbench: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	env, err := preflight(ctx, opts)
	if err != nil {
		fmt.Fprintf(stderr, "vmmbench: %v\n", err)
		return 1
	}
	started := time.Now()
	raw := rawReport{Started: started, Host: env.host(), Settings: settingsOf(opts)}
	code := 0
	if opts.sections[sectionBoot] {
		if code = runBootBench(ctx, env, opts, &raw, stdout, stderr); code != 0 {
			return code
		}
	}
	if opts.sections[sectionDisk] {
		if code = runDiskBench(ctx, env, opts, stdout, stderr); code != 0 {
			return code
		}
	}
	if opts.sections[sectionQMP] {
		if err := runQMPBench(ctx, env, opts, stdout); err != nil {
			fmt.Fprintf(stderr, "vmmbench: %v\n", err)
			return 1
		}
	}
	if opts.sections[sectionMigrate] {
		var mig migrateReport
		mig, code = runMigrateBench(ctx, env, opts, stdout, stderr)
		raw.Migration = &mig
	}
	if opts.jsonPath != "" {
		raw.DurationS = time.Since(started).Seconds()
		if err := writeJSON(opts.jsonPath, raw); err != nil {
			fmt.Fprintf(stderr, "vmmbench: %v\n", err)
			return 1
		}
	}
	if code == 0 {
		for _, s := range raw.Summaries {
			if s.OK == 0 {
				fmt.Fprintf(stderr, "vmmbench: %s failed in all %d runs; the comparison is incomplete\n", s.Name, s.Runs)
				return 1
			}
		}
	}
	return code
}

// runBootBench measures boot time and memory overhead, prints the tables
// and stores the results in raw.
func runBootBench(ctx context.Context, env environment, opts options, raw *rawReport, stdout, stderr io.Writer) int {
	cfgs := configs(env, opts.memoryMiB)
	started := time.Now()
	fmt.Fprintf(stderr, "vmmbench: %d runs (+%d warm-up) of %d configurations, interleaved; QEMU: %s\n",
		opts.runs, opts.warmup, len(cfgs), env.qemuVersion)
	results, err := runAll(ctx, cfgs, opts, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "vmmbench: %v\n", err)
		return 1
	}
	elapsed := time.Since(started)
	sums, err := summarize(cfgs, results)
	if err != nil {
		fmt.Fprintf(stderr, "vmmbench: %v\n", err)
		return 1
	}
	goals := evaluateGoals(sums)
	if err := writeReport(stdout, sums, goals, opts, env, elapsed); err != nil {
		fmt.Fprintf(stderr, "vmmbench: write report: %v\n", err)
		return 1
	}
	raw.Configs, raw.Summaries, raw.Goals, raw.Runs = cfgs, sums, goals, results
	return 0
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("vmmbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.runs, "runs", 15, "measured runs per configuration")
	fs.IntVar(&o.warmup, "warmup", 1, "untimed warm-up rounds before the measured ones")
	fs.IntVar(&o.memoryMiB, "memory", 256, "guest RAM in MiB, for every VMM")
	fs.DurationVar(&o.settle, "settle", time.Second, "wait after GUEST-READY before reading /proc/PID/smaps")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "give up on a run that shows no GUEST-READY within this time")
	fs.StringVar(&o.vmmd, "vmmd", "", "vmmd binary (default <repo>/bin/vmmd)")
	fs.StringVar(&o.qemu, "qemu", "qemu-system-x86_64", "QEMU binary, a path or a name looked up in PATH")
	fs.StringVar(&o.kernel, "kernel", "", "guest kernel (default <repo>/build/guest/vmmd-testguest.elf)")
	fs.StringVar(&o.jsonPath, "json", "", "also write raw results as JSON to this file")
	only := fs.String("only", "", "run only these sections, comma-separated: "+strings.Join(allSections(), ",")+" (default all)")
	fs.IntVar(&o.migrateRuns, "migrate-runs", 10, "migrations per VMM and case (the -warmup rounds come on top)")
	fs.StringVar(&o.migrateCases, "migrate-cases", "", "run only these migration cases, comma-separated (default all; see migrateCases)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case fs.NArg() != 0:
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	case o.runs < 1:
		return o, fmt.Errorf("-runs %d: need at least 1", o.runs)
	case o.warmup < 0:
		return o, fmt.Errorf("-warmup %d: must not be negative", o.warmup)
	case o.memoryMiB < 1:
		return o, fmt.Errorf("-memory %d: need at least 1 MiB", o.memoryMiB)
	case o.settle < 0:
		return o, fmt.Errorf("-settle %v: must not be negative", o.settle)
	case o.timeout <= 0:
		return o, fmt.Errorf("-timeout %v: must be positive", o.timeout)
	case o.migrateRuns < 1:
		return o, fmt.Errorf("-migrate-runs %d: need at least 1", o.migrateRuns)
	}
	if _, err := selectCases(migrateCases(), o.migrateCases); err != nil {
		return o, err
	}
	var err error
	o.sections, err = parseSections(*only)
	return o, err
}

func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode JSON results: %w", err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write JSON results: %w", err)
	}
	return nil
}
