package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// noisyLoad is the share of all CPUs that other work may keep busy before
// a table is marked noisy.
const noisyLoad = 0.25

// cpuTimes are the aggregate counters of /proc/stat's "cpu" line, in ticks.
type cpuTimes struct {
	busy, total uint64
}

// parseProcStat reads the aggregate "cpu" line of /proc/stat. Idle and
// iowait count as not busy; guest time is already inside user time.
func parseProcStat(data string) (cpuTimes, error) {
	sc := bufio.NewScanner(strings.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != "cpu" {
			continue
		}
		if len(f) < 5 {
			return cpuTimes{}, fmt.Errorf("parse /proc/stat: cpu line has %d fields, want at least 5", len(f)-1)
		}
		var t cpuTimes
		// user nice system idle iowait irq softirq steal [guest guest_nice]
		for i, s := range f[1:min(len(f), 9)] {
			v, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return cpuTimes{}, fmt.Errorf("parse /proc/stat: cpu field %d %q: %w", i+1, s, err)
			}
			t.total += v
			if i != 3 && i != 4 {
				t.busy += v
			}
		}
		return t, nil
	}
	return cpuTimes{}, errors.New("parse /proc/stat: no aggregate cpu line")
}

func readCPUTimes() (cpuTimes, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}, fmt.Errorf("read /proc/stat: %w", err)
	}
	return parseProcStat(string(data))
}

// otherCPULoad returns the share (0-1) of all CPUs that were busy during
// the next d. Called when the benchmark runs no VMM, it measures what
// other work on the machine would take from the VMMs under test.
func otherCPULoad(ctx context.Context, d time.Duration) (float64, error) {
	a, err := readCPUTimes()
	if err != nil {
		return 0, err
	}
	t := time.NewTimer(d)
	select {
	case <-t.C:
	case <-ctx.Done():
		t.Stop()
		return 0, fmt.Errorf("measure host load: %w", ctx.Err())
	}
	b, err := readCPUTimes()
	if err != nil {
		return 0, err
	}
	if b.total <= a.total || b.busy < a.busy {
		return 0, errors.New("measure host load: /proc/stat counters did not advance")
	}
	return float64(b.busy-a.busy) / float64(b.total-a.total), nil
}
