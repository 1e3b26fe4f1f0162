package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// qmpRAM is query-migrate's "ram" member with QEMU's field names.
type qmpRAM struct {
	Transferred    uint64  `json:"transferred"`
	Remaining      uint64  `json:"remaining"`
	Total          uint64  `json:"total"`
	Duplicate      uint64  `json:"duplicate"`
	Normal         uint64  `json:"normal"`
	NormalBytes    uint64  `json:"normal-bytes"`
	DirtySyncCount uint64  `json:"dirty-sync-count"`
	Mbps           float64 `json:"mbps"`
	PagesPerSecond uint64  `json:"pages-per-second"`
	DirtyPagesRate uint64  `json:"dirty-pages-rate"`
}

// qmpMigrationInfo is the part of query-migrate's return vmmctl reads.
type qmpMigrationInfo struct {
	Status           string     `json:"status"`
	SetupTime        *int64     `json:"setup-time"`
	TotalTime        *int64     `json:"total-time"`
	Downtime         *int64     `json:"downtime"`
	ExpectedDowntime *int64     `json:"expected-downtime"`
	ErrorDesc        string     `json:"error-desc"`
	RAM              *qmpRAM    `json:"ram"`
	XBZRLE           *qmpXBZRLE `json:"xbzrle-cache"`
	Steps            *qmpSteps  `json:"x-vmmd-downtime-steps"`
}

// qmpSteps is vmmd's query-migrate member "x-vmmd-downtime-steps" (a
// completed source): where the downtime went, in milliseconds.
type qmpSteps struct {
	Stop            float64 `json:"stop"`
	Inactivate      float64 `json:"inactivate"`
	LastPages       float64 `json:"last-pages"`
	DeviceState     float64 `json:"device-state"`
	DestinationLoad float64 `json:"destination-load"`
	Commit          float64 `json:"commit"`
}

// stepsStatus is the JSON shape of migrate-status's "downtime_steps"; it
// has qmpSteps's fields, with vmmctl's names.
type stepsStatus struct {
	Stop            float64 `json:"stop_ms"`
	Inactivate      float64 `json:"inactivate_ms"`
	LastPages       float64 `json:"last_pages_ms"`
	DeviceState     float64 `json:"device_state_ms"`
	DestinationLoad float64 `json:"destination_load_ms"`
	Commit          float64 `json:"commit_ms"`
}

// qmpXBZRLE is query-migrate's "xbzrle-cache" member (page deltas).
type qmpXBZRLE struct {
	CacheSize     uint64  `json:"cache-size"`
	Bytes         uint64  `json:"bytes"`
	Pages         uint64  `json:"pages"`
	CacheMiss     uint64  `json:"cache-miss"`
	CacheMissRate float64 `json:"cache-miss-rate"`
	Overflow      uint64  `json:"overflow"`
}

// xbzrleStatus is the JSON shape of migrate-status's "xbzrle" member; it
// has qmpXBZRLE's fields, with vmmctl's names.
type xbzrleStatus struct {
	CacheSize     uint64  `json:"cache_size"`
	Bytes         uint64  `json:"bytes"`
	Pages         uint64  `json:"pages"`
	CacheMiss     uint64  `json:"cache_miss"`
	CacheMissRate float64 `json:"cache_miss_rate"`
	Overflow      uint64  `json:"overflow"`
}

// ramStatus is the JSON shape of migrate-status's "ram" member. It has
// qmpRAM's fields so one converts to the other; only the names differ.
type ramStatus struct {
	Transferred    uint64  `json:"transferred"`
	Remaining      uint64  `json:"remaining"`
	Total          uint64  `json:"total"`
	Duplicate      uint64  `json:"duplicate"`
	Normal         uint64  `json:"normal"`
	NormalBytes    uint64  `json:"normal_bytes"`
	DirtySyncCount uint64  `json:"dirty_sync_count"`
	Mbps           float64 `json:"mbps"`
	PagesPerSecond uint64  `json:"pages_per_second"`
	DirtyPagesRate uint64  `json:"dirty_pages_rate"`
}

// migrateStatus is the JSON shape of `migrate-status -o json`. Every field
// is always present; numbers the server did not report are null.
type migrateStatus struct {
	Status             string        `json:"status"`
	SetupTimeMS        *int64        `json:"setup_time_ms"`
	TotalTimeMS        *int64        `json:"total_time_ms"`
	DowntimeMS         *int64        `json:"downtime_ms"`
	ExpectedDowntimeMS *int64        `json:"expected_downtime_ms"`
	ErrorDesc          string        `json:"error_desc"`
	RAM                *ramStatus    `json:"ram"`
	XBZRLE             *xbzrleStatus `json:"xbzrle"`
	DowntimeSteps      *stepsStatus  `json:"downtime_steps"`
}

// statusNone is shown when the server reports no migration (QEMU answers
// query-migrate with an empty object then).
const statusNone = "none"

// migrateStatusHelp documents the JSON fields; migrate --wait shares it.
const migrateStatusHelp = `JSON fields (-o json; numbers the server did not report are null):
  status                string  none, setup, active, device, pre-switchover,
                                cancelling, cancelled, completed, failed, ...
  setup_time_ms         int     time spent setting up
  total_time_ms         int     time since the migration started
  downtime_ms           int     guest stop time (after completion)
  expected_downtime_ms  int     estimate while active
  error_desc            string  why it failed ("" otherwise)
  ram                   object  null when not reported:
    transferred       int    bytes sent
    remaining         int    bytes still to send
    total             int    guest RAM bytes
    duplicate         int    zero pages (sent as a flag)
    normal            int    pages sent in full
    normal_bytes      int    bytes of those pages
    dirty_sync_count  int    RAM passes so far
    mbps              float  throughput in megabits per second
    pages_per_second  int    pages sent per second
    dirty_pages_rate  int    pages dirtied per second
  xbzrle                object  page deltas (capability xbzrle); null when off:
    cache_size        int    the source's cache of sent pages, bytes
    pages             int    pages sent (received) as deltas
    bytes             int    stream bytes of those deltas
    cache_miss        int    dirty pages sent whole for want of a cached copy
    cache_miss_rate   float  cache_miss / (cache_miss + pages)
    overflow          int    pages that changed too much for a delta
  downtime_steps        object  where the downtime went, in ms (a completed vmmd
                                source; null otherwise):
    stop_ms              float  stopping the vCPUs, draining disk I/O
    inactivate_ms        float  flushing the disks and handing them over
    last_pages_ms        float  the final dirty pass
    device_state_ms      float  reading and sending the device state
    destination_load_ms  float  until the destination had loaded the guest
    commit_ms            float  sending the commit`

// fromQMP converts the server's reply into vmmctl's output shape.
func fromQMP(in qmpMigrationInfo) migrateStatus {
	out := migrateStatus{
		Status:             in.Status,
		SetupTimeMS:        in.SetupTime,
		TotalTimeMS:        in.TotalTime,
		DowntimeMS:         in.Downtime,
		ExpectedDowntimeMS: in.ExpectedDowntime,
		ErrorDesc:          in.ErrorDesc,
	}
	if out.Status == "" {
		out.Status = statusNone
	}
	if in.RAM != nil {
		r := ramStatus(*in.RAM)
		out.RAM = &r
	}
	if in.XBZRLE != nil {
		x := xbzrleStatus(*in.XBZRLE)
		out.XBZRLE = &x
	}
	if in.Steps != nil {
		st := stepsStatus(*in.Steps)
		out.DowntimeSteps = &st
	}
	return out
}

// terminal reports whether the migration has ended one way or the other.
func (s migrateStatus) terminal() bool {
	return s.Status == "completed" || s.Status == "failed" || s.Status == "cancelled"
}

// pass is the RAM pass in progress (QEMU's dirty-sync-count), 0 when unknown.
func (s migrateStatus) pass() uint64 {
	if s.RAM == nil {
		return 0
	}
	return s.RAM.DirtySyncCount
}

// percent is how much of guest RAM no longer needs sending, 0..100.
func (s migrateStatus) percent() float64 {
	if s.Status == "completed" {
		return 100
	}
	if s.RAM == nil || s.RAM.Total == 0 || s.RAM.Remaining > s.RAM.Total {
		return 0
	}
	return float64(s.RAM.Total-s.RAM.Remaining) * 100 / float64(s.RAM.Total)
}

// queryMigrate runs query-migrate.
func queryMigrate(ctx context.Context, c *client) (migrateStatus, error) {
	var in qmpMigrationInfo
	if err := c.run(ctx, "query-migrate", nil, &in); err != nil {
		return migrateStatus{}, err
	}
	return fromQMP(in), nil
}

// msOrDash renders an optional millisecond count.
func msOrDash(v *int64) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatInt(*v, 10) + " ms"
}

// writeStatusTable prints one status as "field: value" lines; a migration
// has too many fields for one row.
func writeStatusTable(w io.Writer, s migrateStatus) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	row("Status", s.Status)
	if s.Status != statusNone {
		row("Total time", msOrDash(s.TotalTimeMS))
		row("Setup time", msOrDash(s.SetupTimeMS))
		row("Downtime", msOrDash(s.DowntimeMS))
		if st := s.DowntimeSteps; st != nil {
			row("Downtime steps", fmt.Sprintf("stop %.3f, inactivate %.3f, last pages %.3f, device state %.3f, destination load %.3f, commit %.3f ms",
				st.Stop, st.Inactivate, st.LastPages, st.DeviceState, st.DestinationLoad, st.Commit))
		}
		row("Expected downtime", msOrDash(s.ExpectedDowntimeMS))
		if r := s.RAM; r != nil {
			row("Progress", fmt.Sprintf("%.1f%%", s.percent()))
			row("Transferred", fmt.Sprintf("%d (%s)", r.Transferred, formatBytes(r.Transferred)))
			row("Remaining", fmt.Sprintf("%d (%s)", r.Remaining, formatBytes(r.Remaining)))
			row("Total", fmt.Sprintf("%d (%s)", r.Total, formatBytes(r.Total)))
			row("Pass", strconv.FormatUint(r.DirtySyncCount, 10))
			row("Throughput", fmt.Sprintf("%.1f Mbit/s", r.Mbps))
			row("Pages/s", strconv.FormatUint(r.PagesPerSecond, 10))
			row("Dirty pages/s", strconv.FormatUint(r.DirtyPagesRate, 10))
			row("Zero pages", strconv.FormatUint(r.Duplicate, 10))
			row("Normal pages", strconv.FormatUint(r.Normal, 10))
		}
		if x := s.XBZRLE; x != nil {
			row("Delta pages", fmt.Sprintf("%d (%s)", x.Pages, formatBytes(x.Bytes)))
			row("Delta cache misses", fmt.Sprintf("%d (%.1f%%), %d too changed", x.CacheMiss, x.CacheMissRate*100, x.Overflow))
		}
		row("Error", orDash(s.ErrorDesc))
	}
	return tw.Flush()
}

func newMigrateStatusCmd(o *options) *cobra.Command {
	var (
		watch    bool
		interval time.Duration
	)
	cmd := &cobra.Command{
		Use:   "migrate-status [--watch]",
		Short: "Show the state of the current or last migration",
		Long: `Show the state of the current or last migration (QMP query-migrate), on the
source or the destination.

With --watch, poll until the migration reaches completed, failed or
cancelled, showing progress as migrate --wait does (a bar on a terminal,
one line per poll otherwise, one JSON object per poll with -o json); the
exit code is then 0 for completed and 1 for failed or cancelled. A status of
"none" (no migration yet) is watched until one starts and ends.

` + progressLineHelp + `

` + migrateStatusHelp,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if interval <= 0 {
				return usagef(fmt.Errorf("invalid --interval %v: must be positive", interval))
			}
			ctx := cmd.Context()
			c, err := o.connect(ctx)
			if err != nil {
				return err
			}
			defer c.close()
			if !watch {
				s, err := queryMigrate(ctx, c)
				if err != nil {
					return err
				}
				if o.json() {
					return writeJSON(o.stdout, s)
				}
				return writeStatusTable(o.stdout, s)
			}
			w := &waiter{c: c, o: o, interval: interval, report: newReporter(o)}
			s, err := w.wait(ctx)
			if err != nil {
				if ctx.Err() != nil {
					// Ctrl-C ends a watch like it ends `events`.
					return nil
				}
				return err
			}
			return w.outcome(ctx, s)
		},
	}
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "poll until the migration ends")
	cmd.Flags().DurationVar(&interval, "interval", 500*time.Millisecond, "poll interval for --watch")
	return cmd
}

// encodeLine writes v as one compact JSON line (for --watch and --wait).
func encodeLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode JSON output: %w", err)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
