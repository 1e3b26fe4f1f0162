package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/vmmd/vmmd/bench/internal/measure"
)

// diskGoalRatio is the disk throughput target: vmmd at least as fast as QEMU.
const diskGoalRatio = 1.0

// diskImageBytes is the size of the raw image both VMMs use.
const diskImageBytes = 256 << 20

// diskCommandTimeout bounds one guest console command (boot or workload).
const diskCommandTimeout = 120 * time.Second

// diskWorkload is one `disk bench` command of the test guest.
type diskWorkload struct {
	Name    string `json:"name"`
	Command string `json:"command"`
}

// diskWorkloads are run in this order on every boot: the writes come first
// so the reads read written data.
func diskWorkloads() []diskWorkload {
	return []diskWorkload{
		{"seq write 64 KiB qd16", "disk bench 0 seq write 64 16"},
		{"seq read 64 KiB qd16", "disk bench 0 seq read 64 16"},
		{"rand read 4 KiB qd16", "disk bench 0 rand read 16 16"},
		{"rand write 4 KiB qd16", "disk bench 0 rand write 16 16"},
	}
}

// diskConfigs are vmmd and QEMU microvm on the same raw image, both with
// the host page cache (cache=writeback), one vCPU and the same RAM.
func diskConfigs(env environment, memoryMiB int, image string) []vmmConfig {
	mem := strconv.Itoa(memoryMiB)
	return []vmmConfig{
		{Name: "vmmd", VMM: "vmmd", Path: env.vmmd, Args: []string{"--kernel", env.kernel, "--memory", mem + "M",
			"--cpus", "1", "--serial", "stdio", "--log-format", "json",
			"--drive", "file=" + image + ",id=disk0,format=raw,cache=writeback"}},
		{Name: "microvm", VMM: "QEMU", Path: env.qemu, Args: []string{"-enable-kvm", "-M", "microvm",
			"-cpu", "host,-arch-capabilities", "-m", mem, "-smp", "1", "-nodefaults", "-no-user-config",
			"-display", "none", "-serial", "stdio", "-kernel", env.kernel,
			"-drive", "id=d0,file=" + image + ",format=raw,if=none,cache=writeback",
			"-device", "virtio-blk-device,drive=d0", "-global", "virtio-mmio.force-legacy=false"}},
	}
}

// diskRun is one workload measured in one boot.
type diskRun struct {
	Config   string  `json:"config"`
	Workload string  `json:"workload"`
	Round    int     `json:"round"`
	OK       bool    `json:"ok"`
	MiBps    float64 `json:"mibps,omitempty"`
	IOPS     float64 `json:"iops,omitempty"`
	Line     string  `json:"line,omitempty"`
	Error    string  `json:"error,omitempty"`
}

// diskBenchRE matches the guest's DISKBENCH line.
var diskBenchRE = regexp.MustCompile(`^DISKBENCH disk=0 mode=\S+ op=\S+ bytes=\d+ usec=\d+ iops=(\d+) mibps=([0-9.]+) qd=\d+`)

// parseDiskBench returns the IOPS and MiB/s of a DISKBENCH line.
func parseDiskBench(line string) (iops, mibps float64, err error) {
	m := diskBenchRE.FindStringSubmatch(line)
	if m == nil {
		return 0, 0, fmt.Errorf("parse DISKBENCH line %q: unexpected format", line)
	}
	if iops, err = strconv.ParseFloat(m[1], 64); err != nil {
		return 0, 0, fmt.Errorf("parse DISKBENCH iops %q: %w", m[1], err)
	}
	if mibps, err = strconv.ParseFloat(m[2], 64); err != nil {
		return 0, 0, fmt.Errorf("parse DISKBENCH mibps %q: %w", m[2], err)
	}
	return iops, mibps, nil
}

// runDiskBench measures in-guest disk throughput of vmmd and QEMU on one
// image and prints the table. It returns the exit status run should use.
func runDiskBench(ctx context.Context, env environment, o options, stdout, stderr io.Writer) int {
	dir, err := os.MkdirTemp("", "vmmbench-disk")
	if err != nil {
		fmt.Fprintf(stderr, "vmmbench: disk bench: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	image := filepath.Join(dir, "disk.img")
	if err := createImage(image); err != nil {
		fmt.Fprintf(stderr, "vmmbench: disk bench: %v\n", err)
		return 1
	}
	cfgs := diskConfigs(env, o.memoryMiB, image)
	fmt.Fprintf(stderr, "vmmbench: disk I/O, %d runs (+%d warm-up) of %d configurations on a %d MiB raw image, cache=writeback\n",
		o.runs, o.warmup, len(cfgs), diskImageBytes>>20)
	var runs []diskRun
	for round := range o.warmup + o.runs {
		for k := range cfgs {
			c := cfgs[(round+k)%len(cfgs)]
			rs, err := diskBoot(ctx, c)
			if err != nil {
				fmt.Fprintf(stderr, "vmmbench: disk bench: %s: %v\n", c.Name, err)
				return 1
			}
			label := "warm-up"
			if round >= o.warmup {
				label = fmt.Sprintf("%d/%d", round-o.warmup+1, o.runs)
			}
			for _, r := range rs {
				if round >= o.warmup {
					r.Round = round - o.warmup + 1
					runs = append(runs, r)
				}
				desc := fmt.Sprintf("%8.2f MiB/s %8.0f IOPS", r.MiBps, r.IOPS)
				if !r.OK {
					desc = "FAILED: " + r.Error
				}
				fmt.Fprintf(stderr, "  [%-7s] %-8s %-22s %s\n", label, c.Name, r.Workload, desc)
			}
		}
	}
	ok, err := writeDiskReport(stdout, cfgs, runs)
	if err != nil {
		fmt.Fprintf(stderr, "vmmbench: disk bench: %v\n", err)
		return 1
	}
	if !ok {
		fmt.Fprintln(stderr, "vmmbench: a disk workload failed in every run of a VMM; the comparison is incomplete")
		return 1
	}
	return 0
}

func createImage(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create disk image: %w", err)
	}
	if err := f.Truncate(diskImageBytes); err != nil {
		f.Close()
		return fmt.Errorf("size disk image: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close disk image: %w", err)
	}
	return nil
}

// diskBoot boots c, runs every workload and powers the guest off. A failed
// boot or workload is recorded in the results; an error is returned only
// when the VMM cannot be started or ctx is done.
func diskBoot(ctx context.Context, c vmmConfig) ([]diskRun, error) {
	fail := func(from int, why string) []diskRun {
		var rs []diskRun
		for _, w := range diskWorkloads()[from:] {
			rs = append(rs, diskRun{Config: c.Name, Workload: w.Name, Error: why})
		}
		return rs
	}
	g, err := startConsoleVMM(c)
	if err != nil {
		return nil, err
	}
	defer g.stop()
	line, err := g.waitLine(ctx, regexp.MustCompile(`^GUEST-READY`), nil)
	if err != nil {
		return fail(0, "boot: "+err.Error()), ctx.Err()
	}
	if !strings.Contains(line, " disks=1") {
		return fail(0, fmt.Sprintf("guest did not find the disk: %q", line)), nil
	}
	var rs []diskRun
	for i, w := range diskWorkloads() {
		if err := g.send(w.Command); err != nil {
			return append(rs, fail(i, err.Error())...), nil
		}
		line, err := g.waitLine(ctx, regexp.MustCompile(`^DISKBENCH `), regexp.MustCompile(`^(DISK-ERROR|ERR|GUEST-EXCEPTION)`))
		if err != nil {
			return append(rs, fail(i, err.Error())...), ctx.Err()
		}
		r := diskRun{Config: c.Name, Workload: w.Name, Line: line}
		if r.IOPS, r.MiBps, err = parseDiskBench(line); err != nil {
			r.Error = err.Error()
		} else {
			r.OK = true
		}
		rs = append(rs, r)
	}
	return rs, nil
}

// writeDiskReport prints one table row per workload and VMM; ok is false
// when some VMM has no successful run of some workload.
func writeDiskReport(w io.Writer, cfgs []vmmConfig, runs []diskRun) (ok bool, err error) {
	var b strings.Builder
	b.WriteString("\n### Disk I/O in the guest: test guest `disk bench`, 256 MiB raw image, cache=writeback, polled completion\n\n")
	fmt.Fprintf(&b, "| workload | VMM | runs ok | MiB/s median | min | max | IOPS median | vmmd/QEMU (MiB/s medians) | goal ≥ %.2f× |\n", diskGoalRatio)
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---|\n")
	ok = true
	allMet := true
	var verdicts []string
	for _, wl := range diskWorkloads() {
		med := map[string]*measure.Summary{}
		iops := map[string]*measure.Summary{}
		counts := map[string][2]int{}
		for _, c := range cfgs {
			var mibs, ios []float64
			n := 0
			for _, r := range runs {
				if r.Config != c.Name || r.Workload != wl.Name {
					continue
				}
				n++
				if r.OK {
					mibs = append(mibs, r.MiBps)
					ios = append(ios, r.IOPS)
				}
			}
			counts[c.Name] = [2]int{len(mibs), n}
			if len(mibs) == 0 {
				ok = false
				continue
			}
			s, err := measure.Summarize(mibs)
			if err != nil {
				return false, fmt.Errorf("summarize %s %s: %w", c.Name, wl.Name, err)
			}
			si, err := measure.Summarize(ios)
			if err != nil {
				return false, fmt.Errorf("summarize %s %s: %w", c.Name, wl.Name, err)
			}
			med[c.Name], iops[c.Name] = &s, &si
		}
		var vmmd *measure.Summary
		for _, c := range cfgs {
			if c.isVMMD() {
				vmmd = med[c.Name]
			}
		}
		for _, c := range cfgs {
			s, si := med[c.Name], iops[c.Name]
			stats := "– | – | – | –"
			if s != nil {
				stats = fmt.Sprintf("%.1f | %.1f | %.1f | %.0f", s.Median, s.Min, s.Max, si.Median)
			}
			ratio := "— | —"
			if !c.isVMMD() {
				if vmmd == nil || s == nil || s.Median <= 0 {
					ratio = "n/a | NOT MET (no comparison)"
					allMet = false
					verdicts = append(verdicts, "no comparison for "+wl.Name)
				} else {
					r := vmmd.Median / s.Median
					met := r >= diskGoalRatio
					allMet = allMet && met
					ratio = fmt.Sprintf("%.2f× | %s", r, verdict(met))
					verdicts = append(verdicts, fmt.Sprintf("%.2f× %s", r, wl.Name))
				}
			}
			label := c.Name
			if c.VMM != c.Name {
				label = c.VMM + " " + c.Name
			}
			fmt.Fprintf(&b, "| %s | %s | %d/%d | %s | %s |\n", wl.Name, label,
				counts[c.Name][0], counts[c.Name][1], stats, ratio)
		}
	}
	fmt.Fprintf(&b, "\nGoal: vmmd in-guest disk throughput ≥ %.2f× QEMU (median, every workload): **%s** (%s)\n",
		diskGoalRatio, verdict(allMet), strings.Join(verdicts, ", "))
	var notes []string
	for _, r := range runs {
		if !r.OK {
			notes = append(notes, fmt.Sprintf("%s %s run %d failed: %s", r.Config, r.Workload, r.Round, r.Error))
		}
	}
	if len(notes) > 0 {
		b.WriteString("\nNotes:\n")
		for _, n := range notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	b.WriteString("\nOne boot per VMM and round runs the four workloads in the order shown (writes first, so reads read written data); VMMs alternate, order rotating each round.\n")
	if _, err := io.WriteString(w, b.String()); err != nil {
		return false, fmt.Errorf("write disk report: %w", err)
	}
	return ok, nil
}
