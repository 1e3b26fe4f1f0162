package main

import (
	"strconv"

	"github.com/spf13/cobra"
)

// statusInfo is the JSON shape of `status -o json`.
type statusInfo struct {
	Status  string `json:"status"`
	Running bool   `json:"running"`
}

func newStatusCmd(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the guest's run state",
		Long: `Show the guest's run state (QMP query-status).

JSON fields (-o json):
  status   string  run state, e.g. "running", "paused", "shutdown"
  running  bool    whether the vCPUs are running`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer c.close()
			var s statusInfo
			if err := c.run(cmd.Context(), "query-status", nil, &s); err != nil {
				return err
			}
			if o.json() {
				return writeJSON(o.stdout, s)
			}
			return writeTable(o.stdout, []string{"STATUS", "RUNNING"},
				[][]string{{s.Status, strconv.FormatBool(s.Running)}})
		},
	}
}

// newActionCmd builds a command that sends one argument-less QMP command.
func newActionCmd(o *options, use, qmpName, short string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Long:  short + " (QMP " + qmpName + ").",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.simple(cmd.Context(), qmpName, nil)
		},
	}
}
