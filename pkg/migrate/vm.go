package migrate

import (
	"context"

	"github.com/vmmd/vmmd/pkg/block"
	"github.com/vmmd/vmmd/pkg/machine"
	"github.com/vmmd/vmmd/pkg/memory"
)

// VM is what the engines need from the machine. *machine.Machine
// implements it; unit tests use a fake without KVM. There is deliberately
// no way here to start vCPUs except Resume, which asks the gate.
//
// The RAM of a VM waiting for an incoming migration is all zero until the
// stream writes it (machine.New discards what building it wrote): the
// destination skips zero pages it has not written.
type VM interface {
	State() machine.RunState
	Pause(ctx context.Context, s machine.RunState) error
	StopForMigration(ctx context.Context) (machine.RunState, error)
	Resume(ctx context.Context, c machine.Cause) error
	EnterState(s machine.RunState) error
	Gate() *block.Gate
	MigrationConfig() machine.MigrationConfig
	SaveState(ctx context.Context, was machine.RunState) (*machine.State, error)
	LoadState(ctx context.Context, s *machine.State) error
	StartDirtyLog() error
	StopDirtyLog() error
	SyncDirty(fn func(r memory.Region, bits []uint64) error) error
	RAM() *memory.Memory
}

var _ VM = (*machine.Machine)(nil)
