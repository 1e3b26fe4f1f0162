package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vmmd/vmmd/bench/internal/measure"
)

// qmpCalls is the number of sequential query-status round trips per run.
const qmpCalls = 2000

// qmpRateGoal and the p99 goal come from issue 3: vmmd must answer at least
// five times as many calls per second as QEMU, and its p99 must not exceed
// QEMU's p50.
const qmpRateGoal = 5.0

// qmpResult is one VMM's QMP round-trip measurements, pooled over runs.
type qmpResult struct {
	name    string
	rates   []float64 // calls/s, one per run
	latUS   []float64 // every round trip, µs
	failure string
}

// runQMPBench measures query-status round trips on one negotiated
// connection against vmmd and QEMU, both paused on the test guest, runs
// times each (interleaved), and writes a markdown table to w.
func runQMPBench(ctx context.Context, env environment, o options, w io.Writer) error {
	dir, err := os.MkdirTemp("", "vmmbench-qmp")
	if err != nil {
		return fmt.Errorf("QMP bench: temp dir: %w", err)
	}
	defer os.RemoveAll(dir)
	mem := strconv.Itoa(o.memoryMiB)
	specs := []struct {
		name string
		spec func(sock string) measure.Spec
	}{
		{"vmmd", func(sock string) measure.Spec {
			return measure.Spec{Path: env.vmmd, Marker: []byte(readyMarker), Args: []string{"--kernel", env.kernel,
				"--memory", mem + "M", "--cpus", "1", "--serial", "none", "--log-format", "json", "--paused",
				"--qmp", "unix:" + sock}}
		}},
		{"QEMU", func(sock string) measure.Spec {
			return measure.Spec{Path: env.qemu, Marker: []byte(readyMarker), Args: []string{"-enable-kvm", "-M", "microvm",
				"-cpu", "host,-arch-capabilities", "-m", mem, "-smp", "1", "-nodefaults", "-no-user-config",
				"-display", "none", "-serial", "none", "-S", "-kernel", env.kernel,
				"-qmp", "unix:" + sock + ",server=on,wait=off"}}
		}},
	}
	results := make([]qmpResult, len(specs))
	for run := 0; run < o.runs; run++ {
		for i, s := range specs {
			results[i].name = s.name
			sock := filepath.Join(dir, fmt.Sprintf("%s-%d.sock", s.name, run))
			rate, lat, err := qmpOnce(ctx, s.spec(sock), sock)
			if err != nil {
				if results[i].failure == "" {
					results[i].failure = err.Error()
				}
				continue
			}
			results[i].rates = append(results[i].rates, rate)
			results[i].latUS = append(results[i].latUS, lat...)
		}
	}
	return writeQMPReport(w, results, o.runs)
}

// qmpOnce starts a VMM, negotiates and times qmpCalls query-status calls.
func qmpOnce(ctx context.Context, spec measure.Spec, sock string) (float64, []float64, error) {
	in, err := measure.Start(ctx, spec)
	if err != nil {
		return 0, nil, fmt.Errorf("QMP bench: %w", err)
	}
	defer in.Stop(ctx)
	var conn net.Conn
	for deadline := time.Now().Add(10 * time.Second); ; {
		if conn, err = net.Dial("unix", sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return 0, nil, fmt.Errorf("QMP bench: dial %s: %w (stderr: %s)", sock, err, in.Stderr())
		}
		time.Sleep(10 * time.Millisecond)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(60 * time.Second)); err != nil {
		return 0, nil, fmt.Errorf("QMP bench: set deadline: %w", err)
	}
	r := bufio.NewReader(conn)
	if _, err := r.ReadString('\n'); err != nil {
		return 0, nil, fmt.Errorf("QMP bench: read greeting: %w", err)
	}
	call := func(req []byte, want string) error {
		if _, err := conn.Write(req); err != nil {
			return fmt.Errorf("QMP bench: send: %w", err)
		}
		line, err := r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("QMP bench: read reply: %w", err)
		}
		if !strings.Contains(line, want) {
			return fmt.Errorf("QMP bench: unexpected reply %q", line)
		}
		return nil
	}
	if err := call([]byte(`{"execute":"qmp_capabilities"}`), `"return"`); err != nil {
		return 0, nil, err
	}
	req := []byte(`{"execute":"query-status"}`)
	lat := make([]float64, 0, qmpCalls)
	start := time.Now()
	for i := 0; i < qmpCalls; i++ {
		t0 := time.Now()
		if err := call(req, `"status"`); err != nil {
			return 0, nil, err
		}
		lat = append(lat, float64(time.Since(t0).Nanoseconds())/1e3)
	}
	return qmpCalls / time.Since(start).Seconds(), lat, nil
}

func writeQMPReport(w io.Writer, results []qmpResult, runs int) error {
	type row struct {
		rate, p50, p99 float64
		ok             bool
	}
	rows := make([]row, len(results))
	for i, r := range results {
		if len(r.rates) == 0 {
			continue
		}
		rate, err1 := measure.Percentile(r.rates, 50)
		p50, err2 := measure.Percentile(r.latUS, 50)
		p99, err3 := measure.Percentile(r.latUS, 99)
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		rows[i] = row{rate, p50, p99, true}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n### QMP: %d sequential `query-status` round trips on one connection, VM paused\n\n", qmpCalls)
	b.WriteString("| VMM | runs ok | calls/s (median of runs) | p50 (µs) | p99 (µs) |\n|---|---:|---:|---:|---:|\n")
	for i, r := range results {
		if !rows[i].ok {
			fmt.Fprintf(&b, "| %s | 0/%d | failed | – | – |\n", r.name, runs)
			continue
		}
		fmt.Fprintf(&b, "| %s | %d/%d | %.0f | %.1f | %.1f |\n", r.name, len(r.rates), runs, rows[i].rate, rows[i].p50, rows[i].p99)
	}
	var err error
	if len(rows) == 2 && rows[0].ok && rows[1].ok {
		v, q := rows[0], rows[1]
		fmt.Fprintf(&b, "\nGoal: vmmd rate ≥ %.0f× QEMU: **%s** (%.2f×)\n", qmpRateGoal, verdict(v.rate >= qmpRateGoal*q.rate), v.rate/q.rate)
		fmt.Fprintf(&b, "Goal: vmmd p99 ≤ QEMU p50: **%s** (%.1f µs vs %.1f µs, ratio %.2f)\n", verdict(v.p99 <= q.p50), v.p99, q.p50, v.p99/q.p50)
	} else {
		err = fmt.Errorf("QMP bench: no comparison (%s)", firstFailure(results))
	}
	if _, werr := io.WriteString(w, b.String()); werr != nil {
		return fmt.Errorf("write QMP report: %w", werr)
	}
	return err
}

func firstFailure(results []qmpResult) string {
	for _, r := range results {
		if r.failure != "" {
			return r.name + ": " + r.failure
		}
	}
	return "no runs"
}
