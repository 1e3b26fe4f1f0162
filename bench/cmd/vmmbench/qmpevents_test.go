package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestQMPTimestamp(t *testing.T) {
	for _, tc := range []struct {
		json string
		want time.Time
		err  string
	}{
		{`{"seconds": 1795637537, "microseconds": 956659}`, time.Unix(1795637537, 956659000), ""},
		{`{"seconds": 1795637537, "microseconds": 0}`, time.Unix(1795637537, 0), ""},
		{`{"seconds": -1, "microseconds": -1}`, time.Time{}, "out of range"},
		{`{"seconds": 1795637537, "microseconds": 1000000}`, time.Time{}, "out of range"},
		{`{"seconds": 1795637537}`, time.Time{}, "lacks"},
		{`null`, time.Time{}, "no timestamp"},
	} {
		var ts *qmpTimestamp
		if err := json.Unmarshal([]byte(tc.json), &ts); err != nil {
			t.Fatalf("decode %s: %v", tc.json, err)
		}
		got, err := ts.time()
		switch {
		case tc.err == "" && (err != nil || !got.Equal(tc.want)):
			t.Errorf("time(%s) = %v, %v; want %v", tc.json, got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("time(%s) error = %v, want one containing %q", tc.json, err, tc.err)
		}
	}
}

func TestQMPClientEvents(t *testing.T) {
	ctx := context.Background()
	sock := fakeQMP(t, map[string][]string{
		"qmp_capabilities": {`{"return": {}}`, `{"timestamp": {"seconds": 1700000000, "microseconds": 1}, "event": "RESUME"}`},
		// STOP arrives before the reply, RESUME after it: one is read by the
		// call, the other only by waitEvent.
		"query-migrate": {`{"timestamp": {"seconds": 1700000001, "microseconds": 250000}, "event": "STOP"}`,
			`{"return": {"status": "completed"}}`,
			`{"timestamp": {"seconds": 1700000001, "microseconds": 262500}, "event": "RESUME"}`},
	})
	c, err := dialQMP(ctx, sock, 2*time.Second, make(chan struct{}))
	if err != nil {
		t.Fatalf("dialQMP: %v", err)
	}
	defer c.close()
	if err := c.call(ctx, "query-migrate", nil, nil); err != nil {
		t.Fatalf("query-migrate: %v", err)
	}
	if len(c.events) != 2 || c.events[0].Name != "RESUME" || c.events[1].Name != "STOP" {
		t.Fatalf("events kept = %+v, want RESUME (after negotiation) then STOP", c.events)
	}
	// STOP is kept; the RESUME before it is forgotten with it, so the next
	// RESUME is the one still unread on the connection.
	stop, err := c.waitEvent(ctx, "STOP", time.Second)
	if err != nil || !stop.Time.Equal(time.Unix(1700000001, 250000000)) {
		t.Fatalf("waitEvent(STOP) = %+v, %v", stop, err)
	}
	resume, err := c.waitEvent(ctx, "RESUME", time.Second)
	if err != nil || !resume.Time.Equal(time.Unix(1700000001, 262500000)) {
		t.Fatalf("waitEvent(RESUME) = %+v, %v", resume, err)
	}
	if ms, err := pauseMS(stop, resume); err != nil || ms != 12.5 {
		t.Errorf("pauseMS = %v, %v; want 12.5", ms, err)
	}
	if _, err := pauseMS(resume, stop); err == nil || !strings.Contains(err.Error(), "before the source's STOP") {
		t.Errorf("pauseMS(reversed) error = %v", err)
	}
	start := time.Now()
	if _, err := c.waitEvent(ctx, "SHUTDOWN", 100*time.Millisecond); err == nil {
		t.Error("waitEvent(SHUTDOWN) found an event never sent")
	} else if time.Since(start) > 5*time.Second {
		t.Errorf("waitEvent took %v for a 100 ms wait", time.Since(start))
	}
}

func TestQMPClientBadEventTimestamp(t *testing.T) {
	ctx := context.Background()
	sock := fakeQMP(t, map[string][]string{
		"qmp_capabilities": {`{"return": {}}`},
		"query-status": {`{"timestamp": {"seconds": -1, "microseconds": -1}, "event": "STOP"}`,
			`{"return": {"status": "postmigrate"}}`},
	})
	c, err := dialQMP(ctx, sock, 2*time.Second, make(chan struct{}))
	if err != nil {
		t.Fatalf("dialQMP: %v", err)
	}
	defer c.close()
	if err := c.call(ctx, "query-status", nil, nil); err != nil {
		t.Fatalf("query-status: %v", err)
	}
	if _, err := c.waitEvent(ctx, "STOP", time.Second); err == nil || !strings.Contains(err.Error(), "QMP event STOP") {
		t.Errorf("waitEvent(STOP with timestamp -1) error = %v, want one naming the event", err)
	}
}
