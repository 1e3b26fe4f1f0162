package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/spf13/cobra"
)

func newQMPCmd(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "qmp 'RAW JSON'",
		Short: "Send any QMP command and print its return as JSON",
		Long: `Send any QMP command, e.g. '{"execute":"query-kvm"}', and print the
reply's "return" member as JSON.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			var req struct {
				Execute string `json:"execute"`
			}
			raw := []byte(a[0])
			if err := json.Unmarshal(raw, &req); err != nil {
				return usagef(fmt.Errorf("invalid QMP command JSON: %w", err))
			}
			if req.Execute == "" {
				return usagef(errors.New(`invalid QMP command: no "execute" member`))
			}
			var compact bytes.Buffer
			if err := json.Compact(&compact, raw); err != nil {
				return usagef(fmt.Errorf("invalid QMP command JSON: %w", err))
			}
			c, err := o.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer c.close()
			ret, err := c.runRaw(cmd.Context(), req.Execute, compact.Bytes())
			if err != nil {
				return err
			}
			if len(ret) == 0 {
				ret = json.RawMessage("{}")
			}
			var out bytes.Buffer
			if err := json.Indent(&out, ret, "", "  "); err != nil {
				return fmt.Errorf("format reply: %w", err)
			}
			out.WriteByte('\n')
			_, err = o.stdout.Write(out.Bytes())
			return err
		},
	}
}

func newEventsCmd(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "events",
		Short: "Print QMP events, one JSON object per line, until interrupted",
		Long: `Print QMP events, one JSON object per line, until interrupted.

Each line has the fields "event" (string), "data" (object) and
"timestamp" ({"seconds", "microseconds"}).`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			c, err := o.connect(ctx)
			if err != nil {
				return err
			}
			defer c.close()
			return streamEvents(ctx, c, o)
		},
	}
}

// streamEvents copies events to stdout until ctx ends or the server goes.
func streamEvents(ctx context.Context, c *client, o *options) error {
	events, err := c.mon.Events(ctx)
	if err != nil {
		return &qmpError{cmd: "events", err: err}
	}
	// go-qemu's reader may be blocked handing us an event when we stop
	// reading; Disconnect waits for that reader, so keep draining until the
	// channel closes.
	defer func() {
		go func() {
			for range events {
			}
		}()
	}()
	enc := json.NewEncoder(o.stdout)
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				return &qmpError{cmd: "events", err: errors.New("connection to vmmd closed")}
			}
			if err := enc.Encode(ev); err != nil {
				return fmt.Errorf("write event: %w", err)
			}
		}
	}
}
