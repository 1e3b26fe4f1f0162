package monitor

import (
	"context"
	"sync"

	"github.com/vmmd/vmmd/pkg/qmp"
)

// The migration commands are registered with QEMU's argument schemas now;
// the machinery arrives with the migration issue. Until then migrate and
// migrate-incoming answer a clear GenericError, and capabilities and
// parameters are kept and reported like QEMU's.

func capabilityNames() []string {
	return []string{"xbzrle", "rdma-pin-all", "auto-converge", "zero-blocks", "events",
		"postcopy-ram", "x-colo", "release-ram", "return-path", "pause-before-switchover", "multifd",
		"dirty-bitmaps", "postcopy-blocktime", "late-block-activate", "x-ignore-shared", "validate-uuid",
		"background-snapshot", "zero-copy-send", "postcopy-preempt", "switchover-ack", "dirty-limit", "mapped-ram"}
}

// migrationState is the per-daemon migration settings.
type migrationState struct {
	mu     sync.Mutex
	caps   map[string]bool
	params migrationParams
}

type migrationParams struct {
	DowntimeLimit uint64 `json:"downtime-limit"`
	MaxBandwidth  uint64 `json:"max-bandwidth"`
}

var errMigrationNotYet = qmp.Errorf(qmp.GenericError, "live migration is not available in this vmmd build yet")

func migrationCommands(ms *migrationState) []command {
	uriChannels := []qmp.Arg{
		{Name: "uri", Type: qmp.TypeStr, Optional: true},
		{Name: "channels", Type: qmp.TypeArray, Optional: true, Elem: &qmp.Arg{Type: qmp.TypeAny}},
	}
	return []command{
		{name: "migrate", schema: qmp.ArgSchema{Members: append(uriChannels,
			qmp.Arg{Name: "resume", Type: qmp.TypeBool, Optional: true})}, handler: migrateHandler},
		{name: "migrate-incoming", schema: qmp.ArgSchema{Members: append(append([]qmp.Arg(nil), uriChannels...),
			qmp.Arg{Name: "exit-on-error", Type: qmp.TypeBool, Optional: true})}, handler: migrateHandler},
		noArgs("migrate_cancel", func(context.Context, qmp.Args) (any, error) { return nil, nil }),
		noArgs("query-migrate", func(context.Context, qmp.Args) (any, error) { return struct{}{}, nil }),
		noArgs("query-migrate-capabilities", ms.queryCaps),
		{name: "migrate-set-capabilities", schema: qmp.ArgSchema{Members: []qmp.Arg{
			{Name: "capabilities", Type: qmp.TypeArray, Elem: &qmp.Arg{Type: qmp.TypeObject, Object: &qmp.ArgSchema{Members: []qmp.Arg{
				{Name: "capability", Type: qmp.TypeEnum, Values: capabilityNames()},
				{Name: "state", Type: qmp.TypeBool},
			}}}},
		}}, handler: ms.setCaps},
		noArgs("query-migrate-parameters", ms.queryParams),
		{name: "migrate-set-parameters", schema: qmp.ArgSchema{Members: []qmp.Arg{
			{Name: "downtime-limit", Type: qmp.TypeUint64, Optional: true},
			{Name: "max-bandwidth", Type: qmp.TypeSize, Optional: true},
		}}, handler: ms.setParams},
	}
}

func migrateHandler(_ context.Context, args qmp.Args) (any, error) {
	if args.Has("uri") == args.Has("channels") {
		return nil, qmp.Errorf(qmp.GenericError, "need either 'uri' or 'channels' argument")
	}
	return nil, errMigrationNotYet
}

func newMigrationState() *migrationState {
	return &migrationState{caps: map[string]bool{}, params: migrationParams{DowntimeLimit: 300, MaxBandwidth: 128 << 20}}
}

type capState struct {
	Capability string `json:"capability"`
	State      bool   `json:"state"`
}

func (ms *migrationState) queryCaps(context.Context, qmp.Args) (any, error) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	names := capabilityNames()
	out := make([]capState, len(names))
	for i, c := range names {
		out[i] = capState{Capability: c, State: ms.caps[c]}
	}
	return out, nil
}

func (ms *migrationState) setCaps(_ context.Context, args qmp.Args) (any, error) {
	var in struct {
		Capabilities []capState `json:"capabilities"`
	}
	if err := args.Decode(&in); err != nil {
		return nil, qmp.Errorf(qmp.GenericError, "%v", err)
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	for _, c := range in.Capabilities {
		ms.caps[c.Capability] = c.State
	}
	return nil, nil
}

func (ms *migrationState) queryParams(context.Context, qmp.Args) (any, error) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return ms.params, nil
}

func (ms *migrationState) setParams(_ context.Context, args qmp.Args) (any, error) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if v, ok := args.Uint("downtime-limit"); ok {
		if v > 2_000_000 {
			return nil, qmp.Errorf(qmp.GenericError,
				"Parameter 'downtime_limit' expects an integer in the range of 0 to 2000 seconds")
		}
		ms.params.DowntimeLimit = v
	}
	if v, ok := args.Uint("max-bandwidth"); ok {
		ms.params.MaxBandwidth = v
	}
	return nil, nil
}

func (mon *Monitor) migrateText() string { return "" }
