package main

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/spf13/cobra"
)

// checkURI catches a missing scheme before the server sees the URI, so the
// mistake is reported as a usage error (exit 2).
func checkURI(uri string) error {
	if !regexp.MustCompile(`^[a-z][a-z0-9+.-]*:.`).MatchString(uri) {
		return usagef(fmt.Errorf("invalid migration URI %q: want unix:PATH, tcp:HOST:PORT, file:PATH or fd:NAME", uri))
	}
	return nil
}

func newMigrateCmd(o *options) *cobra.Command {
	var (
		wait          bool
		interval      time.Duration
		downtimeLimit uint64
		maxBandwidth  string
	)
	cmd := &cobra.Command{
		Use:   "migrate URI [--wait] [--downtime-limit MS] [--max-bandwidth BYTES]",
		Short: "Migrate the guest to a destination that is waiting for it",
		Long: `Start a live migration to URI (QMP migrate), for example unix:/run/dst.mig
or tcp:10.0.0.2:4444. The destination must be waiting: started with
--incoming URI, or --incoming defer and then vmmctl migrate-incoming URI.

--downtime-limit and --max-bandwidth are set first (migrate-set-parameters);
they stay set for later migrations. --max-bandwidth is in bytes per second
and takes binary suffixes (512K, 100M, 1G).

Without --wait, vmmctl returns once the migration has started. With --wait
it polls query-migrate every --interval until the migration completes, fails
or is cancelled, shows progress and a summary, and exits 0 only if it
completed; otherwise it exits 1 and prints the server's error-desc and the
source's run state. Ctrl-C stops waiting but not the migration.

` + progressLineHelp + `

` + migrateStatusHelp,
		Example: `  vmmctl --socket /run/src.qmp migrate unix:/run/dst.mig --wait
  vmmctl migrate tcp:10.0.0.2:4444 --wait --downtime-limit 100 --max-bandwidth 1G
  vmmctl -o json migrate unix:/run/dst.mig --wait | tail -n 1 | jq -r .status`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			uri := a[0]
			if err := checkURI(uri); err != nil {
				return err
			}
			if interval <= 0 {
				return usagef(fmt.Errorf("invalid --interval %v: must be positive", interval))
			}
			params := map[string]any{}
			if cmd.Flags().Changed("downtime-limit") {
				params["downtime-limit"] = downtimeLimit
			}
			if cmd.Flags().Changed("max-bandwidth") {
				bw, err := parseSize(maxBandwidth)
				if err != nil {
					return usagef(fmt.Errorf("--max-bandwidth: %w", err))
				}
				params["max-bandwidth"] = bw
			}
			ctx := cmd.Context()
			c, err := o.connect(ctx)
			if err != nil {
				return err
			}
			defer c.close()
			if len(params) > 0 {
				if err := c.run(ctx, "migrate-set-parameters", params, nil); err != nil {
					return err
				}
			}
			if err := c.run(ctx, "migrate", map[string]any{"uri": uri}, nil); err != nil {
				return err
			}
			if !wait {
				return nil
			}
			w := &waiter{c: c, o: o, interval: interval, report: newReporter(o), source: true,
				// A server that answers migrate but then reports no
				// migration at all would otherwise be polled forever.
				noneGrace: o.timeout}
			s, err := w.wait(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return fmt.Errorf("interrupted while the migration is %s; it goes on: watch it with 'vmmctl migrate-status --watch', stop it with 'vmmctl migrate-cancel'", s.Status)
				}
				return err
			}
			return w.outcome(ctx, s)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&wait, "wait", false, "wait for the migration to end, showing progress")
	f.DurationVar(&interval, "interval", 500*time.Millisecond, "poll interval for --wait")
	f.Uint64Var(&downtimeLimit, "downtime-limit", 0, "maximum guest stop time in milliseconds (migrate-set-parameters downtime-limit)")
	f.StringVar(&maxBandwidth, "max-bandwidth", "", "maximum bandwidth in bytes per second, e.g. 100M (migrate-set-parameters max-bandwidth)")
	return cmd
}

func newMigrateIncomingCmd(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "migrate-incoming URI",
		Short: "Make a destination started with --incoming defer listen on URI",
		Long: `Make a destination started with --incoming defer (QEMU: -incoming defer)
listen for the migration on URI (QMP migrate-incoming), e.g. unix:/run/dst.mig.
Set capabilities with migrate-set first when both sides need them.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			if err := checkURI(a[0]); err != nil {
				return err
			}
			return o.simple(cmd.Context(), "migrate-incoming", map[string]any{"uri": a[0]})
		},
	}
}

func newMigrateCancelCmd(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "migrate-cancel",
		Short: "Cancel the migration in progress",
		Long: `Cancel the migration in progress (QMP migrate_cancel). The source goes
back to running unless the handover was already committed. The call
returns at once; 'vmmctl migrate-status --watch' shows the end.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.simple(cmd.Context(), "migrate_cancel", nil)
		},
	}
}

// waiter polls query-migrate until the migration ends.
type waiter struct {
	c        *client
	o        *options
	interval time.Duration
	report   reporter
	// source says the VM polled is the migration's source (migrate --wait);
	// it only changes how the outcome is worded.
	source bool
	// noneGrace bounds how long a status of "none" is accepted; 0 waits
	// for a migration to start for as long as it takes.
	noneGrace time.Duration
}

// wait polls until a terminal status and returns it after the summary.
// On an error the last status seen is returned with it.
func (w *waiter) wait(ctx context.Context) (migrateStatus, error) {
	start := time.Now()
	tick := time.NewTicker(w.interval)
	defer tick.Stop()
	var last migrateStatus
	for {
		s, err := queryMigrate(ctx, w.c)
		if err != nil {
			w.report.abort()
			return last, err
		}
		last = s
		if err := w.report.update(s); err != nil {
			return s, fmt.Errorf("write progress: %w", err)
		}
		if s.terminal() {
			if err := w.report.finish(s); err != nil {
				return s, fmt.Errorf("write summary: %w", err)
			}
			return s, nil
		}
		if w.noneGrace > 0 && s.Status == statusNone && time.Since(start) > w.noneGrace {
			w.report.abort()
			return s, &qmpError{cmd: "query-migrate", err: fmt.Errorf("the server accepted migrate but reports no migration after %v", w.noneGrace)}
		}
		select {
		case <-ctx.Done():
			w.report.abort()
			return s, ctx.Err()
		case <-tick.C:
		}
	}
}

// outcome turns a terminal status into the command's result: nil for
// completed, otherwise an error (exit 1) with the server's error-desc and
// the VM's run state, which tells an operator whether the guest still runs
// here.
func (w *waiter) outcome(ctx context.Context, s migrateStatus) error {
	if s.Status == "completed" {
		return nil
	}
	msg := "migration " + s.Status
	if s.ErrorDesc != "" {
		msg += ": " + s.ErrorDesc
	}
	who := "this VM"
	if w.source {
		who = "source"
	}
	var st statusInfo
	if err := w.c.run(ctx, "query-status", nil, &st); err != nil {
		msg += fmt.Sprintf("; %s run state unknown: %v", who, errors.Unwrap(err))
	} else {
		msg += fmt.Sprintf("; %s is %s", who, st.Status)
	}
	return &qmpError{cmd: "migrate", err: errors.New(msg)}
}
