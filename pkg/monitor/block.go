package monitor

import (
	"context"
	"errors"
	"time"

	"github.com/vmmd/vmmd/pkg/block"
	"github.com/vmmd/vmmd/pkg/machine"
	"github.com/vmmd/vmmd/pkg/qmp"
)

type blockCache struct {
	Writeback bool `json:"writeback"`
	Direct    bool `json:"direct"`
	NoFlush   bool `json:"no-flush"`
}

type imageInfo struct {
	Filename    string `json:"filename"`
	Format      string `json:"format"`
	VirtualSize int64  `json:"virtual-size"`
}

// blockDeviceInfo is QEMU's BlockDeviceInfo with the members that apply.
type blockDeviceInfo struct {
	File             string     `json:"file"`
	NodeName         string     `json:"node-name"`
	RO               bool       `json:"ro"`
	Drv              string     `json:"drv"`
	BackingFileDepth int        `json:"backing_file_depth"`
	Active           bool       `json:"active"`
	Encrypted        bool       `json:"encrypted"`
	DetectZeroes     string     `json:"detect_zeroes"`
	Bps              int        `json:"bps"`
	BpsRd            int        `json:"bps_rd"`
	BpsWr            int        `json:"bps_wr"`
	Iops             int        `json:"iops"`
	IopsRd           int        `json:"iops_rd"`
	IopsWr           int        `json:"iops_wr"`
	Image            imageInfo  `json:"image"`
	Cache            blockCache `json:"cache"`
	WriteThreshold   int        `json:"write_threshold"`
}

type blockInfo struct {
	Device    string          `json:"device"`
	Qdev      string          `json:"qdev"`
	Type      string          `json:"type"`
	Removable bool            `json:"removable"`
	Locked    bool            `json:"locked"`
	Inserted  blockDeviceInfo `json:"inserted"`
	IOStatus  string          `json:"io-status"`
}

func (mon *Monitor) queryBlock(context.Context, qmp.Args) (any, error) {
	drives := mon.m.Drives()
	out := make([]blockInfo, 0, len(drives))
	for i, d := range drives {
		in := d.Info()
		out = append(out, blockInfo{
			Device: d.Name(), Qdev: "/machine/peripheral-anon/device[" + itoa(i) + "]/virtio-backend",
			Type: "unknown", IOStatus: string(in.IOStatus),
			Inserted: blockDeviceInfo{
				File: d.Spec().File, NodeName: d.Name(), RO: d.ReadOnly(), Drv: "raw",
				Active: d.Active(), DetectZeroes: "off",
				Image: imageInfo{Filename: d.Spec().File, Format: "raw", VirtualSize: d.Size()},
				Cache: blockCache{Writeback: true, Direct: d.Spec().Cache == block.CacheNone},
			},
		})
	}
	return out, nil
}

// blockdevSetActive is QEMU 10.0's command. One difference by design: vmmd
// refuses to inactivate a disk while the guest runs, because guest CPUs
// never run with an inactive disk.
func (mon *Monitor) blockdevSetActive(ctx context.Context, args qmp.Args) (any, error) {
	active, _ := args.Bool("active")
	gate := mon.m.Gate()
	var targets []*block.Drive
	if name, ok := args.Str("node-name"); ok {
		d, err := mon.drive(name)
		if err != nil {
			return nil, qmp.Errorf(qmp.GenericError, "Failed to find node with node-name='%s'", name)
		}
		targets = []*block.Drive{d}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var err error
	switch {
	case targets == nil && active:
		err = gate.ReactivateAll(ctx)
	case active:
		err = gate.Activate(ctx, targets[0])
	default:
		// Inactivation holds the run state: no resume may slip in between
		// the check that the guest is stopped and the disks letting go.
		err = mon.m.WhileStopped(func() error {
			if targets == nil {
				return gate.InactivateAll(ctx)
			}
			return gate.Inactivate(ctx, targets[0])
		})
		switch {
		case err == nil, errors.Is(err, machine.ErrRunning):
		case targets == nil:
			return nil, qmp.Errorf(qmp.GenericError, "Failed to inactivate all nodes: %v", err)
		default:
			return nil, qmp.Errorf(qmp.GenericError, "Failed to inactivate node: %v", err)
		}
	}
	if err != nil {
		return nil, qmp.Errorf(qmp.GenericError, "%v", err)
	}
	return nil, nil
}

func injectSchema() qmp.ArgSchema {
	return qmp.ArgSchema{Members: []qmp.Arg{
		{Name: "device", Type: qmp.TypeStr},
		{Name: "operation", Type: qmp.TypeEnum, Values: []string{"read", "write", "flush", "inactivate", "activate"}},
		{Name: "errno", Type: qmp.TypeStr, Optional: true},
		{Name: "count", Type: qmp.TypeInt, Optional: true},
		{Name: "delay-ms", Type: qmp.TypeInt, Optional: true},
	}}
}

// injectError adds a fault rule to a drive (for tests and for operators
// rehearsing storage failures). The rule sits between the drive and its
// backend, so every path meets it.
func (mon *Monitor) injectError(_ context.Context, args qmp.Args) (any, error) {
	name, _ := args.Str("device")
	d, err := mon.drive(name)
	if err != nil {
		return nil, err
	}
	op, _ := args.Str("operation")
	spec := "op=" + op
	if e, ok := args.Str("errno"); ok {
		spec += ",errno=" + e
	}
	if c, ok := args.Int("count"); ok {
		spec += ",count=" + itoa(int(c))
	}
	if ms, ok := args.Int("delay-ms"); ok {
		spec += ",delay-ms=" + itoa(int(ms))
	}
	rule, err := block.ParseFaultRule(spec)
	if err != nil {
		return nil, qmp.Errorf(qmp.GenericError, "%v", err)
	}
	if err := d.Inject(rule); err != nil {
		return nil, qmp.Errorf(qmp.GenericError, "%v", err)
	}
	return nil, nil
}

func (mon *Monitor) clearInjections(_ context.Context, args qmp.Args) (any, error) {
	if name, ok := args.Str("device"); ok {
		d, err := mon.drive(name)
		if err != nil {
			return nil, err
		}
		d.ClearInjections()
		return nil, nil
	}
	for _, d := range mon.m.Drives() {
		d.ClearInjections()
	}
	return nil, nil
}
