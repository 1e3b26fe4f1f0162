package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"
)

// qmpCallTimeout bounds one QMP command and its reply.
const qmpCallTimeout = 10 * time.Second

// qmpClient is a negotiated QMP connection that runs one command at a time.
// Events that arrive are kept, in order, for waitEvent.
type qmpClient struct {
	conn   net.Conn
	dec    *json.Decoder
	events []qmpEvent
}

// qmpReply is any QMP message; events have Event set.
type qmpReply struct {
	Event     string          `json:"event"`
	Timestamp *qmpTimestamp   `json:"timestamp"`
	Return    json.RawMessage `json:"return"`
	Error     *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
}

// dialQMP connects to the unix socket at path, retrying until within has
// passed (the VMM creates the socket some time after it starts) or exited
// is closed, then reads the greeting and negotiates capabilities.
func dialQMP(ctx context.Context, path string, within time.Duration, exited <-chan struct{}) (*qmpClient, error) {
	deadline := time.Now().Add(within)
	for {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "unix", path)
		if err == nil {
			c := &qmpClient{conn: conn, dec: json.NewDecoder(conn)}
			if err := c.handshake(ctx); err != nil {
				conn.Close()
				return nil, err
			}
			return c, nil
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return nil, fmt.Errorf("dial QMP %s: %w", path, err)
		}
		select {
		case <-exited:
			return nil, fmt.Errorf("dial QMP %s: the VMM exited", path)
		case <-ctx.Done():
			return nil, fmt.Errorf("dial QMP %s: %w", path, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (c *qmpClient) handshake(ctx context.Context) error {
	stop := c.deadline(ctx)
	defer stop()
	var greeting struct {
		QMP json.RawMessage `json:"QMP"`
	}
	if err := c.dec.Decode(&greeting); err != nil {
		return fmt.Errorf("read QMP greeting: %w", err)
	}
	if greeting.QMP == nil {
		return errors.New("read QMP greeting: no \"QMP\" member")
	}
	return c.call(ctx, "qmp_capabilities", nil, nil)
}

// deadline sets the connection deadline for one exchange and makes ctx's
// end interrupt it; the returned func undoes the latter.
func (c *qmpClient) deadline(ctx context.Context) func() {
	_ = c.conn.SetDeadline(time.Now().Add(qmpCallTimeout))
	stop := context.AfterFunc(ctx, func() { _ = c.conn.SetDeadline(time.Unix(1, 0)) })
	return func() { stop() }
}

// call runs cmd with args (nil for none) and decodes its return value into
// ret (nil to ignore it). A QMP error reply is returned as an error.
func (c *qmpClient) call(ctx context.Context, cmd string, args, ret any) error {
	stop := c.deadline(ctx)
	defer stop()
	req := struct {
		Execute   string `json:"execute"`
		Arguments any    `json:"arguments,omitempty"`
	}{cmd, args}
	data, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("QMP %s: encode: %w", cmd, err)
	}
	if _, err := c.conn.Write(data); err != nil {
		return fmt.Errorf("QMP %s: send: %w", cmd, err)
	}
	for {
		var r qmpReply
		if err := c.dec.Decode(&r); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("QMP %s: %w", cmd, ctx.Err())
			}
			return fmt.Errorf("QMP %s: read reply: %w", cmd, err)
		}
		switch {
		case r.Event != "":
			c.keep(r)
			continue
		case r.Error != nil:
			return fmt.Errorf("QMP %s: %s: %s", cmd, r.Error.Class, r.Error.Desc)
		case r.Return == nil:
			return fmt.Errorf("QMP %s: reply has neither return nor error", cmd)
		}
		if ret != nil {
			if err := json.Unmarshal(r.Return, ret); err != nil {
				return fmt.Errorf("QMP %s: decode return %s: %w", cmd, r.Return, err)
			}
		}
		return nil
	}
}

// close closes the connection.
func (c *qmpClient) close() error { return c.conn.Close() }
