package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/digitalocean/go-qemu/qmp"
)

// client adapts go-qemu's SocketMonitor, which has no contexts, to calls
// that each end by their context or the per-call timeout.
type client struct {
	mon     *qmp.SocketMonitor
	socket  string
	timeout time.Duration
}

// dial connects to the QMP socket and completes the capabilities handshake.
func dial(ctx context.Context, socket string, timeout time.Duration) (*client, error) {
	mon, err := qmp.NewSocketMonitor("unix", socket, timeout)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Err != nil {
			err = op.Err
		}
		return nil, &connectError{socket: socket, err: err}
	}
	c := &client{mon: mon, socket: socket, timeout: timeout}
	if err := c.bounded(ctx, mon.Connect); err != nil {
		_ = mon.Disconnect()
		return nil, &connectError{socket: socket, err: fmt.Errorf("QMP handshake: %w", err)}
	}
	return c, nil
}

// bounded runs f, which may block forever on a silent server, and gives up
// when ctx or the timeout ends; the connection is then closed so f returns.
func (c *client) bounded(ctx context.Context, f func() error) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		_ = c.mon.Disconnect()
		return ctx.Err()
	}
}

// close ends the connection.
func (c *client) close() { _ = c.mon.Disconnect() }

// serverVersion returns the version from the server's greeting.
func (c *client) serverVersion() *qmp.Version { return c.mon.Version }

// runRaw sends a complete QMP command and returns the reply's "return".
func (c *client) runRaw(ctx context.Context, name string, command []byte) (json.RawMessage, error) {
	var out []byte
	err := c.bounded(ctx, func() error {
		var err error
		out, err = c.mon.Run(command)
		return err
	})
	if err != nil {
		return nil, &qmpError{cmd: name, err: err}
	}
	var reply struct {
		Return json.RawMessage `json:"return"`
	}
	if err := json.Unmarshal(out, &reply); err != nil {
		return nil, &qmpError{cmd: name, err: fmt.Errorf("decode %s reply: %w", name, err)}
	}
	return reply.Return, nil
}

// run executes name with args (nil for none) and decodes the return into
// out when out is not nil.
func (c *client) run(ctx context.Context, name string, args any, out any) error {
	b, err := json.Marshal(qmp.Command{Execute: name, Args: args})
	if err != nil {
		return fmt.Errorf("encode %s: %w", name, err)
	}
	ret, err := c.runRaw(ctx, name, b)
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(ret, out); err != nil {
		return &qmpError{cmd: name, err: fmt.Errorf("decode %s return: %w", name, err)}
	}
	return nil
}
