package main

import (
	"fmt"
	"strconv"

	"github.com/spf13/cobra"
)

// blockInfo is the JSON shape of one entry of `block list -o json`.
type blockInfo struct {
	Device   string `json:"device"`
	NodeName string `json:"node_name"`
	Inserted bool   `json:"inserted"`
	File     string `json:"file"`
	Active   bool   `json:"active"`
	ReadOnly bool   `json:"read_only"`
	IOStatus string `json:"io_status"`
}

// qmpBlock is the part of a query-block entry vmmctl reads.
type qmpBlock struct {
	Device   string `json:"device"`
	IOStatus string `json:"io-status"`
	Inserted *struct {
		NodeName string `json:"node-name"`
		File     string `json:"file"`
		RO       bool   `json:"ro"`
		// Active is absent on QEMUs before 10.0, which have no inactive
		// state shown; treat absent as active.
		Active *bool `json:"active"`
	} `json:"inserted"`
}

func newBlockCmd(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "block",
		Short: "Inspect and control block devices",
		Args:  args(cobra.NoArgs),
	}
	cmd.AddCommand(newBlockListCmd(o), newBlockSetActiveCmd(o), newBlockInjectCmd(o), newBlockClearCmd(o))
	return cmd
}

func newBlockListCmd(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List block devices",
		Long: `List block devices (QMP query-block).

JSON fields (-o json), an array of:
  device     string  device id (--drive id=...)
  node_name  string  block node name ("" when no medium)
  inserted   bool    whether a medium is inserted
  file       string  image file name
  active     bool    whether the node is active (writable by this process)
  read_only  bool    whether the node is read-only
  io_status  string  "ok", "failed" or "nospace" ("" when unknown)`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer c.close()
			var raw []qmpBlock
			if err := c.run(cmd.Context(), "query-block", nil, &raw); err != nil {
				return err
			}
			list := make([]blockInfo, 0, len(raw))
			for _, b := range raw {
				bi := blockInfo{Device: b.Device, IOStatus: b.IOStatus}
				if in := b.Inserted; in != nil {
					bi.Inserted = true
					bi.NodeName = in.NodeName
					bi.File = in.File
					bi.ReadOnly = in.RO
					bi.Active = in.Active == nil || *in.Active
				}
				list = append(list, bi)
			}
			if o.json() {
				return writeJSON(o.stdout, list)
			}
			rows := make([][]string, 0, len(list))
			for _, b := range list {
				active := strconv.FormatBool(b.Active)
				if !b.Inserted {
					active = "-"
				}
				rows = append(rows, []string{b.Device, orDash(b.NodeName), orDash(b.File), active,
					strconv.FormatBool(b.ReadOnly), orDash(b.IOStatus)})
			}
			return writeTable(o.stdout, []string{"DEVICE", "NODE", "FILE", "ACTIVE", "RO", "IO-STATUS"}, rows)
		},
	}
}

// orDash shows empty table cells as "-" so columns stay parseable.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newBlockSetActiveCmd(o *options) *cobra.Command {
	var node string
	cmd := &cobra.Command{
		Use:   "set-active [--node NAME] true|false",
		Short: "Activate or inactivate block nodes (all when --node is not given)",
		Long: `Activate or inactivate block nodes (QMP blockdev-set-active).

Without --node every node is changed. vmmd refuses to inactivate disks while
the guest runs: stop it first. cont reactivates them.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			active, err := strconv.ParseBool(a[0])
			if err != nil {
				return usagef(fmt.Errorf("invalid state %q: want true or false", a[0]))
			}
			qargs := map[string]any{"active": active}
			if node != "" {
				qargs["node-name"] = node
			}
			return o.simple(cmd.Context(), "blockdev-set-active", qargs)
		},
	}
	cmd.Flags().StringVar(&node, "node", "", "block node name (default all nodes)")
	return cmd
}

// injectOps returns the operations x-block-inject-error accepts.
func injectOps() []string { return []string{"read", "write", "flush", "inactivate", "activate"} }

func newBlockInjectCmd(o *options) *cobra.Command {
	var (
		errno   string
		count   int
		delayMS int
	)
	cmd := &cobra.Command{
		Use:   "inject DEVICE read|write|flush|inactivate|activate",
		Short: "Make a block operation fail (vmmd testing extension)",
		Long: `Make a block operation on DEVICE fail or stall (vmmd's
x-block-inject-error). --count limits how many operations fail (default:
until cleared); --delay-ms delays them.`,
		Args: args(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, a []string) error {
			op := a[1]
			known := false
			for _, k := range injectOps() {
				known = known || k == op
			}
			if !known {
				return usagef(fmt.Errorf("invalid operation %q: want one of %v", op, injectOps()))
			}
			qargs := map[string]any{"device": a[0], "operation": op}
			if errno != "" {
				qargs["errno"] = errno
			}
			if cmd.Flags().Changed("count") {
				if count < 0 {
					return usagef(fmt.Errorf("invalid --count %d: must not be negative", count))
				}
				qargs["count"] = count
			}
			if cmd.Flags().Changed("delay-ms") {
				if delayMS < 0 {
					return usagef(fmt.Errorf("invalid --delay-ms %d: must not be negative", delayMS))
				}
				qargs["delay-ms"] = delayMS
			}
			return o.simple(cmd.Context(), "x-block-inject-error", qargs)
		},
	}
	f := cmd.Flags()
	f.StringVar(&errno, "errno", "", "error to return, e.g. EIO or ENOSPC (server default when empty)")
	f.IntVar(&count, "count", 0, "number of operations to fail")
	f.IntVar(&delayMS, "delay-ms", 0, "delay before each injected failure, in milliseconds")
	return cmd
}

func newBlockClearCmd(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "clear-injections [DEVICE]",
		Short: "Remove injected block errors (on DEVICE, or everywhere)",
		Args:  args(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			qargs := map[string]any{}
			if len(a) == 1 {
				qargs["device"] = a[0]
			}
			return o.simple(cmd.Context(), "x-block-clear-injections", qargs)
		},
	}
}
