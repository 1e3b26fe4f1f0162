package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/vmmd/vmmd/bench/internal/measure"
)

// runResult is one measured boot of one configuration.
type runResult struct {
	Config string `json:"config"`
	Round  int    `json:"round"`
	OK     bool   `json:"ok"`
	// BootMS is the time from just before exec to the stdout read that
	// completed the marker.
	BootMS    float64        `json:"boot_ms,omitempty"`
	ReadyLine string         `json:"ready_line,omitempty"`
	Memory    *measure.Usage `json:"memory,omitempty"`
	Exit      measure.Exit   `json:"exit"`
	Error     string         `json:"error,omitempty"`
}

// runAll runs every configuration once per round, one VMM at a time. The
// order rotates each round (A B C, B C A, ...) so no VMM always runs right
// after the same other one. Warm-up rounds are run but not returned.
func runAll(ctx context.Context, cfgs []vmmConfig, o options, progress io.Writer) ([]runResult, error) {
	var results []runResult
	rounds := o.warmup + o.runs
	for round := range rounds {
		for k := range cfgs {
			c := cfgs[(round+k)%len(cfgs)]
			r, err := runOnce(ctx, c, o)
			if err != nil {
				return nil, err
			}
			label := "warm-up"
			if round >= o.warmup {
				r.Round = round - o.warmup + 1
				results = append(results, r)
				label = fmt.Sprintf("%d/%d", r.Round, o.runs)
			}
			fmt.Fprintf(progress, "  [%-7s] %-16s %s\n", label, c.Name, describeRun(r))
		}
	}
	return results, nil
}

func describeRun(r runResult) string {
	if !r.OK {
		return "FAILED: " + r.Error
	}
	s := fmt.Sprintf("boot %7.1f ms  overhead %6.1f MiB  (RSS %6.1f MiB, guest RAM %5.1f MiB)",
		r.BootMS, mib(r.Memory.OverheadKiB), mib(r.Memory.TotalRSSKiB), mib(r.Memory.GuestRAMRSSKiB))
	if !r.Exit.Clean {
		s += "  exit: " + r.Exit.Status
	}
	return s
}

// runOnce boots c, measures it and stops it. A boot that fails is recorded
// in the result; an error is returned only when the benchmark cannot go on:
// the VMM cannot be started, the guest RAM cannot be told apart from the
// VMM's own memory, or ctx is done.
func runOnce(ctx context.Context, c vmmConfig, o options) (r runResult, err error) {
	r.Config = c.Name
	in, err := measure.Start(ctx, measure.Spec{Path: c.Path, Args: c.Args, Marker: []byte(readyMarker)})
	if err != nil {
		return r, fmt.Errorf("%s: %w", c.Name, err)
	}
	defer func() {
		r.Exit = in.Stop(ctx)
		// Only now is the rest of the ready line sure to have been read.
		r.ReadyLine = in.ReadyLine()
	}()

	boot, err := in.WaitReady(ctx, o.timeout)
	if err != nil {
		if ctx.Err() != nil {
			return r, fmt.Errorf("%s: %w", c.Name, err)
		}
		r.Error = err.Error()
		return r, nil
	}
	r.BootMS = float64(boot) / float64(time.Millisecond)

	t := time.NewTimer(o.settle)
	select {
	case <-t.C:
	case <-ctx.Done():
		t.Stop()
		return r, fmt.Errorf("%s: settle after boot: %w", c.Name, ctx.Err())
	}
	maps, err := measure.ReadSmaps(in.Pid())
	if err != nil {
		r.Error = fmt.Sprintf("%v after GUEST-READY (stderr: %q)", err, in.Stderr())
		return r, nil
	}
	u, err := measure.GuestRAMUsage(maps, uint64(o.memoryMiB)<<20)
	if err != nil {
		var nr *measure.NoGuestRAMError
		if errors.As(err, &nr) {
			return r, fmt.Errorf("%s (pid %d): cannot find its guest RAM, so its overhead cannot be measured: %w", c.Name, in.Pid(), err)
		}
		return r, fmt.Errorf("%s: %w", c.Name, err)
	}
	r.Memory = &u
	r.OK = true
	return r, nil
}

func mib(kib uint64) float64 { return float64(kib) / 1024 }
