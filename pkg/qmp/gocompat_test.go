package qmp

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/digitalocean/go-qemu/qemu"
	goqmp "github.com/digitalocean/go-qemu/qmp"
	"github.com/digitalocean/go-qemu/qmp/raw"
)

// TestGoQEMUCompat drives the server with github.com/digitalocean/go-qemu,
// unchanged: the socket monitor (which sends no newline and no id), the
// generated raw API, the Domain helper, and the event stream.
func TestGoQEMUCompat(t *testing.T) {
	cfg := ServerConfig{Version: VersionTriple{Major: 9, Minor: 2, Micro: 0}, Package: "vmmd test"}
	s, sock, _ := newTestServer(t, cfg)

	mon, err := goqmp.NewSocketMonitor("unix", sock, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := mon.Connect(); err != nil {
		t.Fatal(err)
	}
	defer mon.Disconnect()
	if v := mon.Version; v == nil || v.String() != "9.2.0" || v.Package != "vmmd test" {
		t.Fatalf("greeting version: %+v", v)
	}
	if len(mon.Capabilities) != 0 {
		t.Fatalf("capabilities: %v", mon.Capabilities)
	}

	// Events must be drained, or go-qemu's reader blocks Run.
	events, err := mon.Events(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan goqmp.Event, 16)
	go func() {
		for e := range events {
			got <- e
		}
		close(got)
	}()

	reply, err := mon.Run([]byte(`{"execute":"query-status"}`))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Return map[string]any `json:"return"`
	}
	if err := json.Unmarshal(reply, &st); err != nil {
		t.Fatalf("%s: %v", reply, err)
	}
	want := map[string]any{"status": "running", "singlestep": false, "running": true}
	for k, v := range want {
		if st.Return[k] != v {
			t.Fatalf("query-status: %s", reply)
		}
	}

	rm := raw.NewMonitor(mon)
	status, err := rm.QueryStatus()
	if err != nil {
		t.Fatal(err)
	}
	if status.Status != raw.RunStateRunning || !status.Running {
		t.Fatalf("raw QueryStatus: %+v", status)
	}
	if err := rm.Stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-got:
		if e.Event != "STOP" || e.Timestamp.Seconds != 1700000000 || e.Timestamp.Microseconds != 123456 {
			t.Fatalf("event: %+v", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no STOP event")
	}
	s.Broadcast("SHUTDOWN", map[string]any{"guest": true, "reason": "guest-shutdown"}, eventTime())
	select {
	case e := <-got:
		if e.Event != "SHUTDOWN" || e.Data["reason"] != "guest-shutdown" || e.Data["guest"] != true {
			t.Fatalf("event: %+v", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no SHUTDOWN event")
	}
	if status, err = rm.QueryStatus(); err != nil || status.Status != raw.RunStatePaused {
		t.Fatalf("after stop: %+v %v", status, err)
	}
	if _, err := mon.Run([]byte(`{"execute":"no-such"}`)); err == nil ||
		err.Error() != "The command no-such has not been found" {
		t.Fatalf("unknown command: %v", err)
	}
	ver, err := rm.QueryVersion()
	if err != nil || ver.Qemu.Major != 9 || ver.Package != "vmmd test" {
		t.Fatalf("QueryVersion: %+v %v", ver, err)
	}
	cmds, err := rm.QueryCommands()
	if err != nil || len(cmds) != len(s.Commands()) {
		t.Fatalf("QueryCommands: %v %v", cmds, err)
	}
	hmp, err := rm.HumanMonitorCommand("info status", nil)
	if err != nil || hmp != "VM status: paused\r\n" {
		t.Fatalf("HumanMonitorCommand: %q %v", hmp, err)
	}
	if _, err := rm.QueryKVM(); err != nil {
		t.Fatal(err)
	}
}

// TestGoQEMUDomain uses the qemu.Domain convenience layer.
func TestGoQEMUDomain(t *testing.T) {
	_, sock, _ := newTestServer(t, ServerConfig{Version: VersionTriple{Major: 10}, Package: "vmmd test"})
	mon, err := goqmp.NewSocketMonitor("unix", sock, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := mon.Connect(); err != nil {
		t.Fatal(err)
	}
	d, err := qemu.NewDomain(mon, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if st, err := d.Status(); err != nil || st != qemu.StatusRunning {
		t.Fatalf("Status: %v %v", st, err)
	}
	if v, err := d.Version(); err != nil || v != "10.0.0" {
		t.Fatalf("Version: %q %v", v, err)
	}
	if p, err := d.PackageVersion(); err != nil || p != "vmmd test" {
		t.Fatalf("PackageVersion: %q %v", p, err)
	}
	ok, err := d.Supported("query-status")
	if err != nil || !ok {
		t.Fatalf("Supported: %v %v", ok, err)
	}
	cmds, err := d.Commands()
	if err != nil || !strings.Contains(strings.Join(cmds, " "), "qmp_capabilities") {
		t.Fatalf("Commands: %v %v", cmds, err)
	}
}
