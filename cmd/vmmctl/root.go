package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
)

// socketEnv names the environment variable that supplies --socket.
const socketEnv = "VMMCTL_SOCKET"

// options are the global flags shared by every subcommand.
type options struct {
	socket  string
	timeout time.Duration
	output  string
	stdout  io.Writer
	stderr  io.Writer
}

// json reports whether -o json was asked for.
func (o *options) json() bool { return o.output == "json" }

// connect dials the configured socket.
func (o *options) connect(ctx context.Context) (*client, error) {
	if o.socket == "" {
		return nil, usagef(errors.New("no QMP socket: pass --socket PATH or set " + socketEnv))
	}
	return dial(ctx, o.socket, o.timeout)
}

// simple runs one argument-less QMP command and closes the connection.
func (o *options) simple(ctx context.Context, name string, args any) error {
	c, err := o.connect(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	return c.run(ctx, name, args, nil)
}

// newRootCmd builds the whole command tree.
func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	o := &options{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "vmmctl",
		Short: "Control a running vmmd (or QEMU) over QMP",
		Long: `vmmctl drives a running vmmd, or any QEMU, through its QMP socket.

Exit codes: 0 success, 1 QMP error (the server's message is printed as
"error: <desc>"), 2 usage error, 3 cannot connect to the socket.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if o.output != "table" && o.output != "json" {
				return usagef(fmt.Errorf("invalid --output %q: want table or json", o.output))
			}
			if o.timeout <= 0 {
				return usagef(fmt.Errorf("invalid --timeout %v: must be positive", o.timeout))
			}
			return nil
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usagef(err) })
	pf := root.PersistentFlags()
	pf.StringVar(&o.socket, "socket", os.Getenv(socketEnv), "QMP unix socket of vmmd (env "+socketEnv+")")
	pf.DurationVar(&o.timeout, "timeout", 10*time.Second, "timeout for connecting and for each QMP command")
	pf.StringVarP(&o.output, "output", "o", "table", "output format for queries: table or json")

	root.AddCommand(
		newStatusCmd(o),
		newActionCmd(o, "stop", "stop", "Pause the guest's vCPUs"),
		newActionCmd(o, "cont", "cont", "Resume the guest (reactivates inactive disks)"),
		newActionCmd(o, "reset", "system_reset", "Reset the guest"),
		newActionCmd(o, "powerdown", "system_powerdown", "Ask the guest to power down (ACPI)"),
		newActionCmd(o, "quit", "quit", "Make the daemon exit"),
		newBlockCmd(o),
		newMigrateCmd(o),
		newMigrateIncomingCmd(o),
		newMigrateCancelCmd(o),
		newMigrateStatusCmd(o),
		newMigrateSetCmd(o),
		newQMPCmd(o),
		newEventsCmd(o),
		newVersionCmd(o),
	)
	return root
}

// args wraps a cobra argument validator so its failure exits with code 2.
func args(v cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error {
		if err := v(cmd, a); err != nil {
			return usagef(err)
		}
		return nil
	}
}
