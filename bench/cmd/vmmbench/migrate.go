package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"
)

// migrateMemoryMiB is the guest RAM of every migration case: the cases'
// names and QEMU's baseline figures (qemu-baseline.md §4) assume 256 MiB.
const migrateMemoryMiB = 256

// qemuDefaultBandwidth is QEMU 7.2's and vmmd's default max-bandwidth,
// 128 MiB/s, in bytes per second.
const qemuDefaultBandwidth = 128 << 20

// qemuUnlimitedBandwidth stands for "unlimited" on QEMU 7.2, which has no
// such value: 100 GiB/s, as in the baseline script.
const qemuUnlimitedBandwidth = 100 << 30

// migrateCase is one guest state to migrate.
type migrateCase struct {
	// Name labels the case in tables and JSON.
	Name string `json:"name"`
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

// migrateCases are the cases of qemu-baseline.md §4 that a 256 MiB guest
// has, on a unix socket.
func migrateCases() []migrateCase {
	return []migrateCase{
		{Name: "256M-idle"},
		{Name: "256M-idle", Unlimited: true},
		{Name: "256M-filled-idle", MemMiB: 200, Unlimited: true},
		{Name: "256M-dirty64", MemMiB: 64, Dirtying: true, Unlimited: true},
	}
}

// migrateVMM describes how to start one VMM as migration source and
// destination.
type migrateVMM struct {
	// Name is "vmmd" or "QEMU".
	Name string
	// config returns the command line; incoming is "" for a source.
	config func(qmpSock, incoming string) vmmConfig
	// unlimited is the max-bandwidth value that means no limit.
	unlimited uint64
}

func (v migrateVMM) isVMMD() bool { return v.Name == "vmmd" }

// migrateVMMs are vmmd and QEMU microvm on the same guest, one vCPU, the
// console on stdio and QMP on a unix socket. QEMU's line is the baseline's
// (no -cpu: the default CPU model, as in qemu-baseline.md §4).
func migrateVMMs(env environment) []migrateVMM {
	mem := strconv.Itoa(migrateMemoryMiB)
	return []migrateVMM{
		{Name: "vmmd", unlimited: 0, config: func(qmpSock, incoming string) vmmConfig {
			args := []string{"--kernel", env.kernel, "--memory", mem + "M", "--cpus", "1", "--serial", "stdio",
				"--log-format", "json", "--qmp", "unix:" + qmpSock}
			if incoming != "" {
				args = append(args, "--incoming", incoming)
			}
			return vmmConfig{Name: "vmmd", VMM: "vmmd", Path: env.vmmd, Args: args}
		}},
		{Name: "QEMU", unlimited: qemuUnlimitedBandwidth, config: func(qmpSock, incoming string) vmmConfig {
			args := []string{"-enable-kvm", "-M", "microvm", "-m", mem, "-smp", "1", "-nodefaults", "-no-user-config",
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
	// OtherLoad is the share of all CPUs busy just before the section, when
	// none of the benchmark's VMMs ran: other work on the machine.
	OtherLoad float64      `json:"other_cpu_load"`
	DurationS float64      `json:"duration_s"`
	Runs      []migrateRun `json:"runs"`
}

// runMigrateBench migrates every case with every VMM, runs times (after
// warmup rounds), and prints the table. Each round runs every case, the
// VMMs of a case one after the other, their order alternating by round.
func runMigrateBench(ctx context.Context, env environment, o options, stdout, stderr io.Writer) (migrateReport, int) {
	rep := migrateReport{Cases: migrateCases(), RunsPerCase: o.migrateRuns, Warmup: o.warmup}
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
	fmt.Fprintf(stderr, "vmmbench: live migration, %d runs (+%d warm-up) of %d cases x %d VMMs, unix socket, guest %d MiB\n",
		o.migrateRuns, o.warmup, len(rep.Cases), len(vmms), migrateMemoryMiB)
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
				fmt.Fprintf(stderr, "  [%-7s] %-5s %-16s %-9s %s\n", label, v.Name, c.Name, c.bandwidth(), describeMigrateRun(r))
			}
		}
	}
	rep.DurationS = time.Since(started).Seconds()
	ok, err := writeMigrateReport(stdout, rep, vmms, env)
	if err != nil {
		fmt.Fprintf(stderr, "vmmbench: migration: %v\n", err)
		return rep, 1
	}
	if !ok {
		fmt.Fprintln(stderr, "vmmbench: migration: a case never completed on some VMM, or a completed migration failed its checks")
		return rep, 1
	}
	return rep, 0
}
