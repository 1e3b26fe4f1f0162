// Package monitor maps QMP commands onto the machine and its drives. It
// holds no VM logic of its own: run-state rules live in pkg/machine, disk
// rules in pkg/block, the wire protocol in pkg/qmp.
package monitor

import (
	"context"
	"errors"
	"fmt"

	"github.com/rs/zerolog"

	"github.com/vmmd/vmmd/pkg/block"
	"github.com/vmmd/vmmd/pkg/machine"
	"github.com/vmmd/vmmd/pkg/migrate"
	"github.com/vmmd/vmmd/pkg/qmp"
)

// Config is what the monitor needs besides the machine.
type Config struct {
	// Name is the VM name for query-name ("" answers {} as QEMU does).
	Name string
	// Quit is called, after quit's reply has been queued, to stop vmmd.
	Quit func()
	Log  zerolog.Logger
	// Migrator runs migrate and migrate-incoming; nil gives one with
	// QEMU's defaults and no incoming migration.
	Migrator *migrate.Migrator
}

// Monitor serves the QMP commands vmmd implements.
type Monitor struct {
	m   *machine.Machine
	srv *qmp.Server
	cfg Config

	mig *migrate.Migrator
}

// New registers every command on srv.
func New(srv *qmp.Server, m *machine.Machine, cfg Config) (*Monitor, error) {
	mig := cfg.Migrator
	if mig == nil {
		mig = migrate.New(migrate.Config{VM: m, Emit: m.Emit, Log: cfg.Log, Autostart: true})
	}
	mon := &Monitor{m: m, srv: srv, cfg: cfg, mig: mig}
	for _, c := range mon.commands() {
		if err := srv.Register(c.name, c.schema, c.handler); err != nil {
			return nil, fmt.Errorf("register QMP command %s: %w", c.name, err)
		}
	}
	return mon, nil
}

type command struct {
	name    string
	schema  qmp.ArgSchema
	handler qmp.Handler
}

func noArgs(name string, h qmp.Handler) command { return command{name: name, handler: h} }

func (mon *Monitor) commands() []command {
	cmds := []command{
		noArgs("query-version", mon.queryVersion),
		noArgs("query-name", mon.queryName),
		noArgs("query-status", mon.queryStatus),
		noArgs("query-kvm", mon.queryKVM),
		noArgs("query-cpus-fast", mon.queryCPUsFast),
		noArgs("stop", mon.stop),
		noArgs("cont", mon.cont),
		noArgs("system_reset", mon.systemReset),
		noArgs("system_powerdown", mon.systemPowerdown),
		noArgs("quit", mon.quit),
		noArgs("query-block", mon.queryBlock),
		noArgs("x-vmmd-query-gate", mon.queryGate),
		{name: "blockdev-set-active", schema: qmp.ArgSchema{Members: []qmp.Arg{
			{Name: "node-name", Type: qmp.TypeStr, Optional: true},
			{Name: "active", Type: qmp.TypeBool},
		}}, handler: mon.blockdevSetActive},
		{name: "x-block-inject-error", schema: injectSchema(), handler: mon.injectError},
		{name: "x-block-clear-injections", schema: qmp.ArgSchema{Members: []qmp.Arg{
			{Name: "device", Type: qmp.TypeStr, Optional: true},
		}}, handler: mon.clearInjections},
		{name: "human-monitor-command", schema: qmp.ArgSchema{Members: []qmp.Arg{
			{Name: "command-line", Type: qmp.TypeStr},
			{Name: "cpu-index", Type: qmp.TypeInt, Optional: true},
		}}, handler: mon.hmp},
	}
	return append(cmds, mon.migrationCommands()...)
}

// qerr turns machine errors into QMP errors with QEMU's texts.
func qerr(err error) error {
	if err == nil {
		return nil
	}
	var te *machine.TransitionError
	if errors.As(err, &te) {
		return qmp.Errorf(qmp.GenericError, "%s", err.Error())
	}
	var ge *machine.GateError
	if errors.As(err, &ge) {
		// QEMU passes the block layer's message; ours names the drive too.
		return qmp.Errorf(qmp.GenericError, "%s", ge.Err.Error())
	}
	return qmp.Errorf(qmp.GenericError, "%s", err.Error())
}

func (mon *Monitor) queryVersion(context.Context, qmp.Args) (any, error) {
	v := mon.srv.Version()
	return versionInfo{QEMU: versionTriple{Major: v.QEMU.Major, Minor: v.QEMU.Minor, Micro: v.QEMU.Micro}, Package: v.Package}, nil
}

// versionTriple and versionInfo list members in QAPI schema order: the QMP
// writer breaks ties in QEMU's hash order by insertion order, so this is
// what makes the reply byte-identical to QEMU's.
type versionTriple struct {
	Major int `json:"major"`
	Minor int `json:"minor"`
	Micro int `json:"micro"`
}

type versionInfo struct {
	QEMU    versionTriple `json:"qemu"`
	Package string        `json:"package"`
}

func (mon *Monitor) queryName(context.Context, qmp.Args) (any, error) {
	if mon.cfg.Name == "" {
		return struct{}{}, nil
	}
	return map[string]string{"name": mon.cfg.Name}, nil
}

// queryStatus answers QEMU 9.0+'s StatusInfo (singlestep was removed in
// 9.0), members in QAPI order. It is built as a qmp.Object because clients
// poll it: encoding/json would cost more than the rest of the round trip.
func (mon *Monitor) queryStatus(context.Context, qmp.Args) (any, error) {
	s := mon.m.State()
	return qmp.Object{{Name: "running", Value: s.Running()}, {Name: "status", Value: string(s)}}, nil
}

func (mon *Monitor) queryKVM(context.Context, qmp.Args) (any, error) {
	return map[string]bool{"enabled": true, "present": true}, nil
}

type cpuProps struct {
	CoreID   int `json:"core-id"`
	ThreadID int `json:"thread-id"`
	SocketID int `json:"socket-id"`
}

type cpuInfoFast struct {
	CPUIndex int      `json:"cpu-index"`
	QOMPath  string   `json:"qom-path"`
	ThreadID int      `json:"thread-id"`
	Props    cpuProps `json:"props"`
	Target   string   `json:"target"`
}

// queryCPUsFast reports one socket per vCPU, as QEMU's default -smp N does.
func (mon *Monitor) queryCPUsFast(context.Context, qmp.Args) (any, error) {
	tids := mon.m.VCPUThreads()
	out := make([]cpuInfoFast, len(tids))
	for i, tid := range tids {
		out[i] = cpuInfoFast{CPUIndex: i, QOMPath: fmt.Sprintf("/machine/unattached/device[%d]", i),
			ThreadID: tid, Props: cpuProps{SocketID: i}, Target: "x86_64"}
	}
	return out, nil
}

func (mon *Monitor) stop(ctx context.Context, _ qmp.Args) (any, error) {
	// While a guest is still to arrive, stop only means "do not start it"
	// (QEMU's autostart); once it has arrived, stop stops it.
	if mon.mig.SetAutostart(false) {
		return nil, nil
	}
	return nil, qerr(mon.m.Pause(ctx, machine.StatePaused))
}

func (mon *Monitor) cont(ctx context.Context, _ qmp.Args) (any, error) {
	// QEMU (since 2024): cont during an incoming migration only asks for
	// the guest to start once it has arrived; nothing is activated now.
	if mon.mig.SetAutostart(true) {
		return nil, nil
	}
	return nil, qerr(mon.m.Resume(ctx, machine.CauseCont))
}

// Autostart reports whether the guest should start when an incoming
// migration completes (changed by stop/cont during inmigrate).
func (mon *Monitor) Autostart() bool { return mon.mig.Autostart() }

func (mon *Monitor) systemReset(ctx context.Context, _ qmp.Args) (any, error) {
	return nil, qerr(mon.m.Reset(ctx, "host-qmp-system-reset"))
}

// systemPowerdown asks the guest to power off. The event is sent as QEMU
// does; the ACPI power button that Linux listens to comes with the ACPI
// tables (the Linux issue), so guests without it ignore the request.
func (mon *Monitor) systemPowerdown(context.Context, qmp.Args) (any, error) {
	mon.m.Emit("POWERDOWN", nil)
	return nil, nil
}

func (mon *Monitor) quit(context.Context, qmp.Args) (any, error) {
	return &qmp.Deferred{After: func() {
		mon.m.Emit("SHUTDOWN", map[string]any{"guest": false, "reason": "host-qmp-quit"})
		if mon.cfg.Quit != nil {
			mon.cfg.Quit()
		}
	}}, nil
}

func (mon *Monitor) drive(name string) (*block.Drive, error) {
	for _, d := range mon.m.Drives() {
		if d.Name() == name {
			return d, nil
		}
	}
	return nil, qmp.Errorf(qmp.DeviceNotFound, "Device '%s' not found", name)
}

// gateInfo is x-vmmd-query-gate's reply: the block reactivation gate as
// operators and the fault tests see it.
type gateInfo struct {
	MayBeInactive       bool   `json:"may-be-inactive"`
	AllActive           bool   `json:"all-active"`
	InvariantViolations uint64 `json:"invariant-violations"`
}

// queryGate reports the gate and the invariant counter (vCPU starts that
// found a disk inactive), which must always be 0.
func (mon *Monitor) queryGate(context.Context, qmp.Args) (any, error) {
	g := mon.m.Gate()
	return gateInfo{MayBeInactive: g.MayBeInactive(), AllActive: g.AllActive(),
		InvariantViolations: mon.m.InvariantViolations()}, nil
}
