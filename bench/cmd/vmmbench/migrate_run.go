package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Timeouts of one migration run.
const (
	migrateBootTimeout  = 30 * time.Second
	migrateFillTimeout  = 60 * time.Second // `mem start 200`: ~0.4 s here, unloaded
	migrateConvergeMax  = 30 * time.Second // then migrate_cancel, as the baseline
	migratePollInterval = 50 * time.Millisecond
	migrateDstRunning   = 5 * time.Second // destination to report running after completed
	migrateGuestReply   = 15 * time.Second
	migrateStopGrace    = 3 * time.Second
)

// guestBad are console lines that end a wait for a reply with an error.
var guestBad = regexp.MustCompile(`^(ERR|GUEST-EXCEPTION|MEMCHECK bad)`)

// migrateRun is one migration of one case by one VMM.
type migrateRun struct {
	Case      string `json:"case"`
	Unlimited bool   `json:"unlimited"`
	VMM       string `json:"vmm"`
	Round     int    `json:"round"`
	RAMMiB    int    `json:"ram_mib"`
	// Status is query-migrate's last status on the source.
	Status string `json:"status"`
	// Completed is Status == "completed"; the figures below are set then.
	Completed      bool    `json:"completed"`
	TotalMS        float64 `json:"total_time_ms"`
	DowntimeMS     float64 `json:"downtime_ms"`
	SetupMS        float64 `json:"setup_time_ms"`
	TransferredMiB float64 `json:"transferred_mib"`
	Mbps           float64 `json:"mbps"`
	DirtySyncs     int64   `json:"dirty_sync_count"`
	// NormalPages were sent with their data, DuplicatePages as zero pages
	// (query-migrate's ram.normal and ram.duplicate).
	NormalPages    uint64 `json:"normal_pages"`
	DuplicatePages uint64 `json:"duplicate_pages"`
	// PrecopyBytes were sent while the guest ran, DowntimeBytes after it
	// stopped; nil when the VMM did not say.
	PrecopyBytes  *uint64 `json:"precopy_bytes,omitempty"`
	DowntimeBytes *uint64 `json:"downtime_bytes,omitempty"`
	// BulkGbps is the throughput while the guest ran (bulkGbps); nil when
	// it cannot be worked out.
	BulkGbps *float64 `json:"bulk_gbps,omitempty"`
	// OverallGbps is the throughput of the whole migration, the stop
	// included (overallGbps); nil when it cannot be worked out.
	OverallGbps *float64 `json:"overall_gbps,omitempty"`
	// TouchedPages bounds the pages the guest wrote (migrateCase.touchedPages).
	TouchedPages uint64 `json:"touched_pages_bound"`
	// PauseMS is the guest-visible pause: from the source's STOP event to
	// the destination's RESUME, by the events' own timestamps. PauseError
	// says why it is missing.
	PauseMS    *float64 `json:"pause_ms,omitempty"`
	PauseError string   `json:"pause_error,omitempty"`
	// DowntimeSteps is what vmmd said its downtime was made of; nil for
	// QEMU.
	DowntimeSteps map[string]float64 `json:"downtime_steps,omitempty"`
	// WallMS is from sending migrate to the poll that saw it end.
	WallMS float64 `json:"wall_ms"`
	// Fill says how the filled-idle region was left on the source.
	Fill string `json:"fill,omitempty"`
	// MaxBandwidth and DowntimeLimit are query-migrate-parameters' values
	// just before migrate.
	MaxBandwidth  uint64 `json:"max_bandwidth"`
	DowntimeLimit uint64 `json:"downtime_limit_ms"`
	SrcStatus     string `json:"src_status,omitempty"`
	DstStatus     string `json:"dst_status,omitempty"`
	PingOK        bool   `json:"ping_ok"`
	MemCheck      string `json:"mem_check,omitempty"`
	// Verified is set when every check after completion passed.
	Verified bool `json:"verified"`
	// Failures lists what went wrong, in order.
	Failures []string `json:"failures,omitempty"`
	SrcExit  string   `json:"src_exit,omitempty"`
	DstExit  string   `json:"dst_exit,omitempty"`
	// UncleanExit is set when a VMM did not exit with status 0 on SIGTERM.
	UncleanExit bool   `json:"unclean_exit,omitempty"`
	LastQuery   string `json:"last_query_migrate,omitempty"`
}

func (r *migrateRun) fail(format string, args ...any) {
	r.Failures = append(r.Failures, fmt.Sprintf(format, args...))
}

// queryMigrate is the part of QEMU's MigrationInfo both VMMs fill in.
type queryMigrate struct {
	Status    string `json:"status"`
	TotalTime *int64 `json:"total-time"`
	Downtime  *int64 `json:"downtime"`
	SetupTime *int64 `json:"setup-time"`
	RAM       *struct {
		Transferred    uint64  `json:"transferred"`
		Mbps           float64 `json:"mbps"`
		DirtySyncCount int64   `json:"dirty-sync-count"`
		Normal         uint64  `json:"normal"`
		Duplicate      uint64  `json:"duplicate"`
		PrecopyBytes   *uint64 `json:"precopy-bytes"`
		DowntimeBytes  *uint64 `json:"downtime-bytes"`
	} `json:"ram"`
	ErrorDesc string `json:"error-desc"`
	// Steps is vmmd's x-vmmd-downtime-steps, ms by step (a completed
	// source; QEMU has no such member).
	Steps map[string]float64 `json:"x-vmmd-downtime-steps"`
}

// downtimeSteps are the members of x-vmmd-downtime-steps, in order.
func downtimeSteps() []string {
	return []string{"stop", "inactivate", "last-pages", "device-state", "destination-load", "commit"}
}

// finished reports whether status is final.
func (q queryMigrate) finished() bool {
	switch q.Status {
	case "completed", "failed", "cancelled":
		return true
	}
	return false
}

// record copies q's figures into r; a completed migration lacking one of
// them is a failure, not a zero.
func (r *migrateRun) record(q queryMigrate) {
	r.Status = q.Status
	if q.Status != "completed" {
		if q.ErrorDesc != "" {
			r.fail("migration %s: %s", q.Status, q.ErrorDesc)
		} else {
			r.fail("migration %s", q.Status)
		}
		return
	}
	if q.TotalTime == nil || q.Downtime == nil || q.SetupTime == nil || q.RAM == nil {
		r.fail("query-migrate says completed but lacks total-time, downtime, setup-time or ram: %s", r.LastQuery)
		return
	}
	r.Completed = true
	r.TotalMS, r.DowntimeMS, r.SetupMS = float64(*q.TotalTime), float64(*q.Downtime), float64(*q.SetupTime)
	r.TransferredMiB = float64(q.RAM.Transferred) / (1 << 20)
	r.Mbps, r.DirtySyncs = q.RAM.Mbps, q.RAM.DirtySyncCount
	r.NormalPages, r.DuplicatePages = q.RAM.Normal, q.RAM.Duplicate
	r.PrecopyBytes, r.DowntimeBytes = q.RAM.PrecopyBytes, q.RAM.DowntimeBytes
	r.DowntimeSteps = q.Steps
	if r.PrecopyBytes != nil {
		if g, ok := bulkGbps(*r.PrecopyBytes, r.TotalMS, r.SetupMS, r.DowntimeMS); ok {
			r.BulkGbps = &g
		}
	}
	if g, ok := overallGbps(q.RAM.Transferred, r.TotalMS, r.SetupMS); ok {
		r.OverallGbps = &g
	}
}

// migratePair is a source and a destination VMM with their QMP sockets.
type migratePair struct {
	src, dst       *consoleVMM
	srcQMP, dstQMP *qmpClient
}

// close ends both VMMs (SIGTERM: a source in postmigrate and a
// destination still waiting cannot power off) and records how they exited.
func (p *migratePair) close(r *migrateRun) {
	for _, c := range []*qmpClient{p.srcQMP, p.dstQMP} {
		if c != nil {
			c.close()
		}
	}
	for _, x := range []struct {
		g    *consoleVMM
		exit *string
	}{{p.src, &r.SrcExit}, {p.dst, &r.DstExit}} {
		if x.g == nil {
			continue
		}
		st, clean := x.g.terminate(migrateStopGrace)
		*x.exit = st
		if !clean {
			r.UncleanExit = true
		}
	}
}

// migrateOnce boots a source, prepares the guest for case c, migrates it
// to a fresh destination over a unix socket and checks the result. A
// failed migration or check is recorded in the result; an error is
// returned only when a VMM cannot be started or ctx is done.
func migrateOnce(ctx context.Context, v migrateVMM, c migrateCase, dir string, seq int) (r migrateRun, err error) {
	r = migrateRun{Case: c.Name, Unlimited: c.Unlimited, VMM: v.Name, RAMMiB: c.RAMMiB, TouchedPages: c.touchedPages()}
	base := filepath.Join(dir, fmt.Sprintf("%d", seq))
	srcSock, dstSock, migSock := base+"-src.qmp", base+"-dst.qmp", base+".mig"
	migURI := "unix:" + migSock
	var p migratePair
	// r is the named result, so the exits recorded here reach the caller.
	defer p.close(&r)
	if p.src, err = startConsoleVMM(v.config(c.RAMMiB, srcSock, "")); err != nil {
		return r, fmt.Errorf("source: %w", err)
	}
	if p.dst, err = startConsoleVMM(v.config(c.RAMMiB, dstSock, migURI)); err != nil {
		return r, fmt.Errorf("destination: %w", err)
	}
	if r.Fill, err = prepareGuest(ctx, p.src, c); err != nil {
		r.fail("source: %v", err)
		return r, ctx.Err()
	}
	if p.srcQMP, err = dialQMP(ctx, srcSock, 10*time.Second, p.src.exited); err != nil {
		r.fail("source: %v", err)
		return r, ctx.Err()
	}
	if p.dstQMP, err = dialQMP(ctx, dstSock, 10*time.Second, p.dst.exited); err != nil {
		r.fail("destination: %v (stderr: %s)", err, p.dst.stderr.String())
		return r, ctx.Err()
	}
	if err := setParameters(ctx, p.srcQMP, v, c, &r); err != nil {
		r.fail("source: %v", err)
		return r, ctx.Err()
	}
	if err := waitSocket(ctx, migSock, 10*time.Second); err != nil {
		r.fail("destination: %v", err)
		return r, ctx.Err()
	}
	// Only events from here on tell when the guest stopped and resumed.
	p.srcQMP.dropEvents()
	p.dstQMP.dropEvents()
	if err := migrate(ctx, p.srcQMP, migURI, &r); err != nil {
		r.fail("source: %v", err)
		return r, ctx.Err()
	}
	if !r.Completed {
		return r, ctx.Err()
	}
	verify(ctx, &p, c, &r)
	r.Verified = len(r.Failures) == 0
	if r.Verified {
		measurePause(ctx, &p, &r)
	}
	return r, ctx.Err()
}

// prepareGuest waits for the guest to boot and puts it in c's state; it
// returns how the filled region was left (for the JSON results).
func prepareGuest(ctx context.Context, g *consoleVMM, c migrateCase) (string, error) {
	if _, err := g.waitLineWithin(ctx, regexp.MustCompile(`^GUEST-READY`), nil, migrateBootTimeout); err != nil {
		return "", fmt.Errorf("boot: %w", err)
	}
	if c.MemMiB == 0 {
		return "", nil
	}
	start := fmt.Sprintf("mem start %d", c.MemMiB)
	if _, err := guestCommand(ctx, g, start, "^OK "+start+"$", migrateFillTimeout); err != nil {
		return "", err
	}
	if c.Dirtying {
		return "", nil
	}
	return fillRegion(ctx, g, c.MemMiB)
}

// fillRegion stops the workload with no zero page left in the region.
// `mem stop` right after `OK mem start` would leave the pages the first
// pass has not reached yet at 0, that is all-zero pages, which both VMMs
// send as zero flags: the "filled" guest would be half empty, by chance.
// So it waits for a complete pass, stops, and checks that the first and
// the last page are non-zero (all others equal one of them); if not (the
// byte wrapped to 0), it resumes briefly and tries again.
func fillRegion(ctx context.Context, g *consoleVMM, mib int) (string, error) {
	passesRE := regexp.MustCompile(`^MEM (running|stopped) passes=(\d+)$`)
	last := mib<<8 - 1
	for attempt := 1; attempt <= 5; attempt++ {
		if attempt > 1 {
			start := fmt.Sprintf("mem start %d", mib)
			if _, err := guestCommand(ctx, g, start, "^OK "+start+"$", migrateGuestReply); err != nil {
				return "", err
			}
		}
		var passes int
		for deadline := time.Now().Add(migrateFillTimeout); passes < 1; {
			line, err := guestCommand(ctx, g, "mem status", passesRE.String(), migrateGuestReply)
			if err != nil {
				return "", err
			}
			if passes, err = strconv.Atoi(passesRE.FindStringSubmatch(line)[2]); err != nil {
				return "", fmt.Errorf("mem status %q: %w", line, err)
			}
			if time.Now().After(deadline) {
				return "", fmt.Errorf("mem: no complete pass within %v", migrateFillTimeout)
			}
		}
		if _, err := guestCommand(ctx, g, "mem stop", "^OK mem stop$", migrateGuestReply); err != nil {
			return "", err
		}
		first, err := peekPage(ctx, g, 0)
		if err != nil {
			return "", err
		}
		end, err := peekPage(ctx, g, last)
		if err != nil {
			return "", err
		}
		if first != 0 && end != 0 {
			return fmt.Sprintf("passes>=%d page0=%d page%d=%d attempts=%d", passes, first, last, end, attempt), nil
		}
	}
	return "", errors.New("mem: the region kept holding zero pages after 5 stops")
}

// guestCommand sends cmd and returns the reply line matching want.
func guestCommand(ctx context.Context, g *consoleVMM, cmd, want string, timeout time.Duration) (string, error) {
	if err := g.send(cmd); err != nil {
		return "", err
	}
	line, err := g.waitLineWithin(ctx, regexp.MustCompile(want), guestBad, timeout)
	if err != nil {
		return "", fmt.Errorf("%s: %w", cmd, err)
	}
	return line, nil
}

// peekPage returns byte 0 of one page of the mem region.
func peekPage(ctx context.Context, g *consoleVMM, page int) (int, error) {
	re := regexp.MustCompile(fmt.Sprintf(`^MEM page=%d value=(\d+)$`, page))
	line, err := guestCommand(ctx, g, fmt.Sprintf("mem peek %d", page), re.String(), migrateGuestReply)
	if err != nil {
		return 0, err
	}
	v, err := strconv.Atoi(re.FindStringSubmatch(line)[1])
	if err != nil {
		return 0, fmt.Errorf("mem peek %q: %w", line, err)
	}
	return v, nil
}

// setParameters sets downtime-limit, and max-bandwidth for an unlimited
// case, and records the values the source then reports, which must be the
// ones intended.
func setParameters(ctx context.Context, q *qmpClient, v migrateVMM, c migrateCase, r *migrateRun) error {
	wantBW := uint64(qemuDefaultBandwidth)
	args := map[string]uint64{"downtime-limit": migrateDowntimeLimitMS}
	if c.Unlimited {
		wantBW = v.unlimited
		args["max-bandwidth"] = wantBW
	}
	if err := q.call(ctx, "migrate-set-parameters", args, nil); err != nil {
		return err
	}
	var params struct {
		MaxBandwidth  *uint64 `json:"max-bandwidth"`
		DowntimeLimit *uint64 `json:"downtime-limit"`
	}
	if err := q.call(ctx, "query-migrate-parameters", nil, &params); err != nil {
		return err
	}
	if params.MaxBandwidth == nil || params.DowntimeLimit == nil {
		return errors.New("query-migrate-parameters: no max-bandwidth or downtime-limit")
	}
	r.MaxBandwidth, r.DowntimeLimit = *params.MaxBandwidth, *params.DowntimeLimit
	if r.MaxBandwidth != wantBW {
		return fmt.Errorf("max-bandwidth is %d, want %d", r.MaxBandwidth, wantBW)
	}
	if r.DowntimeLimit != migrateDowntimeLimitMS {
		return fmt.Errorf("downtime-limit is %d, want %d", r.DowntimeLimit, migrateDowntimeLimitMS)
	}
	return nil
}

// waitSocket waits for the destination's migration socket to appear.
func waitSocket(ctx context.Context, path string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		st, err := os.Stat(path)
		if err == nil && st.Mode()&os.ModeSocket != 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no listening socket %s after %v", path, within)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w", path, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// migrate starts the migration and polls query-migrate until it ends,
// cancelling it after migrateConvergeMax.
func migrate(ctx context.Context, q *qmpClient, uri string, r *migrateRun) error {
	t0 := time.Now()
	if err := q.call(ctx, "migrate", map[string]string{"uri": uri}, nil); err != nil {
		return err
	}
	for {
		var raw json.RawMessage
		if err := q.call(ctx, "query-migrate", nil, &raw); err != nil {
			return err
		}
		var st queryMigrate
		if err := json.Unmarshal(raw, &st); err != nil {
			return fmt.Errorf("query-migrate: decode %s: %w", raw, err)
		}
		r.LastQuery = string(raw)
		if st.finished() {
			r.WallMS = float64(time.Since(t0).Microseconds()) / 1e3
			r.record(st)
			return nil
		}
		if time.Since(t0) > migrateConvergeMax {
			r.fail("no convergence in %v (last query-migrate: %s)", migrateConvergeMax, r.LastQuery)
			if err := q.call(ctx, "migrate_cancel", nil, nil); err != nil {
				return err
			}
			r.Status = "cancelled by the benchmark"
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("poll query-migrate: %w", ctx.Err())
		case <-time.After(migratePollInterval):
		}
	}
}

// verify checks a completed migration: source postmigrate, destination
// running, and a guest on the destination that answers with its memory
// intact.
func verify(ctx context.Context, p *migratePair, c migrateCase, r *migrateRun) {
	var st struct {
		Status string `json:"status"`
	}
	if err := p.srcQMP.call(ctx, "query-status", nil, &st); err != nil {
		r.fail("source: %v", err)
	} else if r.SrcStatus = st.Status; st.Status != "postmigrate" {
		r.fail("source status %q, want postmigrate", st.Status)
	}
	// The destination starts its vCPUs once it has the commit (vmmd) or
	// the whole stream (QEMU), which may be just after the source's
	// completed.
	for deadline := time.Now().Add(migrateDstRunning); ; {
		if err := p.dstQMP.call(ctx, "query-status", nil, &st); err != nil {
			r.fail("destination: %v", err)
			break
		}
		r.DstStatus = st.Status
		if st.Status == "running" {
			break
		}
		if time.Now().After(deadline) {
			r.fail("destination status %q after %v, want running", st.Status, migrateDstRunning)
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := p.dst.send("ping"); err != nil {
		r.fail("destination: %v", err)
		return
	}
	if _, err := p.dst.waitLineWithin(ctx, regexp.MustCompile(`^PONG$`), guestBad, migrateGuestReply); err != nil {
		r.fail("destination ping: %v", err)
		return
	}
	r.PingOK = true
	if c.MemMiB == 0 {
		return
	}
	if err := p.dst.send("mem check"); err != nil {
		r.fail("destination: %v", err)
		return
	}
	line, err := p.dst.waitLineWithin(ctx, regexp.MustCompile(`^MEMCHECK `), regexp.MustCompile(`^(ERR|GUEST-EXCEPTION)`), migrateGuestReply)
	if err != nil {
		r.fail("destination mem check: %v", err)
		return
	}
	r.MemCheck = line
	if !strings.HasPrefix(line, "MEMCHECK ok ") {
		r.fail("destination: %s", line)
	}
}

// migrateEventWait bounds the wait for STOP and RESUME once the migration
// is over and the destination answered: by then both have been sent.
const migrateEventWait = 2 * time.Second

// measurePause records the guest-visible pause: the source's STOP event to
// the destination's RESUME, both stamped by the VMMs with the host's wall
// clock. QEMU's downtime stops at the source's last byte; vmmd's at its
// commit; this is the same span for both. A missing event leaves the pause
// unmeasured, with the reason, but is not a failed migration.
func measurePause(ctx context.Context, p *migratePair, r *migrateRun) {
	stop, err := p.srcQMP.waitEvent(ctx, "STOP", migrateEventWait)
	if err != nil {
		r.PauseError = fmt.Sprintf("source: %v", err)
		return
	}
	resume, err := p.dstQMP.waitEvent(ctx, "RESUME", migrateEventWait)
	if err != nil {
		r.PauseError = fmt.Sprintf("destination: %v", err)
		return
	}
	ms, err := pauseMS(stop, resume)
	if err != nil {
		r.PauseError = err.Error()
		return
	}
	r.PauseMS = &ms
}

// pauseMS is the time from stop to resume in milliseconds; a resume before
// the stop means the timestamps cannot be trusted.
func pauseMS(stop, resume qmpEvent) (float64, error) {
	d := resume.Time.Sub(stop.Time)
	if d < 0 {
		return 0, fmt.Errorf("destination RESUME at %s is %v before the source's STOP at %s",
			resume.Time.Format(time.RFC3339Nano), -d, stop.Time.Format(time.RFC3339Nano))
	}
	return float64(d.Microseconds()) / 1e3, nil
}
