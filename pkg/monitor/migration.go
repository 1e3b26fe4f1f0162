package monitor

import (
	"context"
	"fmt"
	"strings"

	"github.com/vmmd/vmmd/pkg/migrate"
	"github.com/vmmd/vmmd/pkg/qmp"
)

// The migration commands keep QEMU's names, argument schemas and error
// texts; the work is pkg/migrate's.

func (mon *Monitor) migrationCommands() []command {
	uriChannels := []qmp.Arg{
		{Name: "uri", Type: qmp.TypeStr, Optional: true},
		{Name: "channels", Type: qmp.TypeArray, Optional: true, Elem: &qmp.Arg{Type: qmp.TypeAny}},
	}
	return []command{
		{name: "migrate", schema: qmp.ArgSchema{Members: append(uriChannels,
			qmp.Arg{Name: "detach", Type: qmp.TypeBool, Optional: true},
			qmp.Arg{Name: "resume", Type: qmp.TypeBool, Optional: true})}, handler: mon.migrate},
		{name: "migrate-incoming", schema: qmp.ArgSchema{Members: append(append([]qmp.Arg(nil), uriChannels...),
			qmp.Arg{Name: "exit-on-error", Type: qmp.TypeBool, Optional: true})}, handler: mon.migrateIncoming},
		noArgs("migrate_cancel", func(context.Context, qmp.Args) (any, error) { mon.mig.Cancel(); return nil, nil }),
		noArgs("query-migrate", func(context.Context, qmp.Args) (any, error) { return mon.mig.Info(), nil }),
		noArgs("query-migrate-capabilities", func(context.Context, qmp.Args) (any, error) {
			return mon.mig.Capabilities(), nil
		}),
		{name: "migrate-set-capabilities", schema: qmp.ArgSchema{Members: []qmp.Arg{
			{Name: "capabilities", Type: qmp.TypeArray, Elem: &qmp.Arg{Type: qmp.TypeObject, Object: &qmp.ArgSchema{Members: []qmp.Arg{
				{Name: "capability", Type: qmp.TypeEnum, Values: migrate.CapabilityNames()},
				{Name: "state", Type: qmp.TypeBool},
			}}}},
		}}, handler: mon.setCaps},
		noArgs("query-migrate-parameters", func(context.Context, qmp.Args) (any, error) {
			return mon.mig.Parameters(), nil
		}),
		{name: "migrate-set-parameters", schema: qmp.ArgSchema{Members: []qmp.Arg{
			{Name: "downtime-limit", Type: qmp.TypeUint64, Optional: true},
			{Name: "max-bandwidth", Type: qmp.TypeSize, Optional: true},
			{Name: "x-inactivate-timeout", Type: qmp.TypeUint64, Optional: true},
			{Name: "x-handover-timeout", Type: qmp.TypeUint64, Optional: true},
			{Name: "xbzrle-cache-size", Type: qmp.TypeSize, Optional: true},
		}}, handler: mon.setParams},
	}
}

// uriArg returns the single URI of migrate/migrate-incoming.
func uriArg(args qmp.Args) (string, error) {
	if args.Has("uri") == args.Has("channels") {
		return "", qmp.Errorf(qmp.GenericError, "need either 'uri' or 'channels' argument")
	}
	if args.Has("channels") {
		return "", qmp.Errorf(qmp.GenericError, "vmmd takes the migration address as 'uri' (unix:PATH, tcp:HOST:PORT or file:PATH); 'channels' is not supported")
	}
	uri, _ := args.Str("uri")
	return uri, nil
}

func (mon *Monitor) migrate(ctx context.Context, args qmp.Args) (any, error) {
	uri, err := uriArg(args)
	if err != nil {
		return nil, err
	}
	if r, ok := args.Bool("resume"); ok && r {
		return nil, qmp.Errorf(qmp.GenericError, "Cannot resume if there is no paused migration")
	}
	return nil, qerr(mon.mig.Migrate(ctx, uri))
}

func (mon *Monitor) migrateIncoming(ctx context.Context, args qmp.Args) (any, error) {
	uri, err := uriArg(args)
	if err != nil {
		return nil, err
	}
	return nil, qerr(mon.mig.Incoming(ctx, uri))
}

func (mon *Monitor) setCaps(_ context.Context, args qmp.Args) (any, error) {
	var in struct {
		Capabilities []migrate.Capability `json:"capabilities"`
	}
	if err := args.Decode(&in); err != nil {
		return nil, qmp.Errorf(qmp.GenericError, "%v", err)
	}
	return nil, qerr(mon.mig.SetCapabilities(in.Capabilities))
}

func (mon *Monitor) setParams(_ context.Context, args qmp.Args) (any, error) {
	return nil, qerr(mon.mig.SetParameters(func(p *migrate.Parameters) {
		if v, ok := args.Uint("downtime-limit"); ok {
			p.DowntimeLimit = v
		}
		if v, ok := args.Uint("max-bandwidth"); ok {
			p.MaxBandwidth = v
		}
		if v, ok := args.Uint("x-inactivate-timeout"); ok {
			p.InactivateTimeout = v
		}
		if v, ok := args.Uint("x-handover-timeout"); ok {
			p.HandoverTimeout = v
		}
		if v, ok := args.Uint("xbzrle-cache-size"); ok {
			p.XBZRLECacheSize = v
		}
	}))
}

// migrateText is HMP's "info migrate", in QEMU's layout.
func (mon *Monitor) migrateText() string {
	in := mon.mig.Info()
	if in.Status == "" {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Status: \t\t%s\n", in.Status)
	if in.TotalTime != nil {
		fmt.Fprintf(&b, "Time (ms): \t\ttotal=%d", *in.TotalTime)
		if in.SetupTime != nil {
			fmt.Fprintf(&b, ", setup=%d", *in.SetupTime)
		}
		if in.ExpectedDowntime != nil {
			fmt.Fprintf(&b, ", exp_down=%d", *in.ExpectedDowntime)
		}
		if in.Downtime != nil {
			fmt.Fprintf(&b, ", down=%d", *in.Downtime)
		}
		b.WriteString("\n")
	}
	if r := in.RAM; r != nil {
		fmt.Fprintf(&b, "RAM info:\n  Throughput (Mbps): \t%.2f\n  Sizes: \t\tpagesize=%d, total=%d\n",
			r.Mbps, r.PageSize, r.Total)
		fmt.Fprintf(&b, "  Transfers: \t\ttransferred=%d, remain=%d\n", r.Transferred, r.Remaining)
		fmt.Fprintf(&b, "  Channels: \t\tprecopy=%d, postcopy=%d\n", r.PrecopyBytes, r.PostcopyBytes)
		fmt.Fprintf(&b, "  Page Types: \t\tzero=%d, normal=%d\n", r.Duplicate, r.Normal)
		fmt.Fprintf(&b, "  Page Rates (pps): \ttransfer=%d, dirty=%d\n", r.PagesPerSecond, r.DirtyPagesRate)
		fmt.Fprintf(&b, "  Others: \t\tdirty_syncs=%d\n", r.DirtySyncCount)
	}
	if in.ErrorDesc != "" {
		fmt.Fprintf(&b, "Error: \t\t\t%s\n", in.ErrorDesc)
	}
	return b.String()
}
