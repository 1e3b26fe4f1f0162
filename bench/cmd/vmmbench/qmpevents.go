package main

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// qmpEvent is an event a VMM sent, with the time it stamped on it.
type qmpEvent struct {
	Name string
	// Time is the event's own timestamp; zero when Err is set.
	Time time.Time
	// Err says why the timestamp is unusable.
	Err error
}

// qmpTimestamp is an event's "timestamp" member: the host's wall clock
// when the VMM emitted it.
type qmpTimestamp struct {
	Seconds      *int64 `json:"seconds"`
	Microseconds *int64 `json:"microseconds"`
}

// time converts the timestamp, refusing a missing or malformed one (QEMU
// stamps -1, -1 when it could not read the clock).
func (t *qmpTimestamp) time() (time.Time, error) {
	switch {
	case t == nil:
		return time.Time{}, errors.New("no timestamp")
	case t.Seconds == nil || t.Microseconds == nil:
		return time.Time{}, errors.New("timestamp lacks seconds or microseconds")
	case *t.Seconds <= 0 || *t.Microseconds < 0 || *t.Microseconds >= 1e6:
		return time.Time{}, fmt.Errorf("timestamp {seconds %d, microseconds %d} out of range", *t.Seconds, *t.Microseconds)
	}
	return time.Unix(*t.Seconds, *t.Microseconds*1e3), nil
}

// keep records the event in r.
func (c *qmpClient) keep(r qmpReply) {
	ev := qmpEvent{Name: r.Event}
	if ev.Time, ev.Err = r.Timestamp.time(); ev.Err != nil {
		ev.Err = fmt.Errorf("QMP event %s: %w", r.Event, ev.Err)
	}
	c.events = append(c.events, ev)
}

// dropEvents forgets the events received so far.
func (c *qmpClient) dropEvents() { c.events = nil }

// waitEvent returns the first event named name among those received since
// the last dropEvents or waitEvent, reading more from the connection for up
// to within if there is none yet. It forgets the events up to the one
// returned. No command may be outstanding. After an error the connection
// is of no further use (the decoder keeps the error).
func (c *qmpClient) waitEvent(ctx context.Context, name string, within time.Duration) (qmpEvent, error) {
	_ = c.conn.SetDeadline(time.Now().Add(within))
	stop := context.AfterFunc(ctx, func() { _ = c.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	for {
		for i, ev := range c.events {
			if ev.Name == name {
				c.events = c.events[i+1:]
				return ev, ev.Err
			}
		}
		var r qmpReply
		if err := c.dec.Decode(&r); err != nil {
			if ctx.Err() != nil {
				return qmpEvent{}, fmt.Errorf("wait for QMP event %s: %w", name, ctx.Err())
			}
			return qmpEvent{}, fmt.Errorf("wait for QMP event %s: %w", name, err)
		}
		if r.Event == "" {
			return qmpEvent{}, fmt.Errorf("wait for QMP event %s: a reply with no command outstanding", name)
		}
		c.keep(r)
	}
}
