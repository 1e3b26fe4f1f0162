package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vmmd/vmmd/internal/kvmtest"
	"github.com/vmmd/vmmd/internal/testguest"
)

// diffStep is one exchange: bytes sent (none for the greeting) and the
// number of lines that answer it. Unordered steps compare their lines as a
// set, for requests whose event QEMU emits from its main loop after the reply.
type diffStep struct {
	send      string
	lines     int
	unordered bool
}

// knownDiff is a difference between QEMU 7.2 and vmmd that is accepted, and
// the normalisation that removes it. fix reports whether it changed v.
type knownDiff struct {
	what, reason string
	fix          func(req string, v map[string]any) bool
}

// diffKnown lists every accepted difference; anything else fails the test.
// Version strings and timestamps differ by nature and are normalised too.
func diffKnown() []knownDiff {
	ret := func(v map[string]any) (map[string]any, bool) { r, ok := v["return"].(map[string]any); return r, ok }
	return []knownDiff{
		{"greeting and query-version numbers and package", "vmmd claims QEMU 10.0.0 and names itself in package; QEMU here is Debian 7.2",
			func(req string, v map[string]any) bool {
				var ver map[string]any
				if g, ok := v["QMP"].(map[string]any); ok {
					ver, _ = g["version"].(map[string]any)
				} else if r, ok := ret(v); ok && strings.Contains(req, "query-version") {
					ver = r
				}
				if ver == nil {
					return false
				}
				ver["qemu"] = map[string]any{"major": 0.0, "minor": 0.0, "micro": 0.0}
				ver["package"] = "PKG"
				return true
			}},
		{"event timestamp values", "wall-clock time", func(req string, v map[string]any) bool {
			if _, ok := v["timestamp"]; !ok {
				return false
			}
			v["timestamp"] = map[string]any{"seconds": 0.0, "microseconds": 0.0}
			return true
		}},
		{`greeting capabilities ["oob"] vs []`, "vmmd has no out-of-band commands (QEMU offers oob on socket monitors)", func(req string, v map[string]any) bool {
			g, ok := v["QMP"].(map[string]any)
			if !ok {
				return false
			}
			g["capabilities"] = []any{}
			return true
		}},
		{`query-status "singlestep"`, "deprecated in 8.1, removed in 9.0; vmmd claims 10.0", func(req string, v map[string]any) bool {
			r, ok := ret(v)
			if _, has := r["singlestep"]; !ok || !has {
				return false
			}
			delete(r, "singlestep")
			return true
		}},
		{"query-cpus-fast thread-id, qom-path, arch, qom-type", "thread ids are per process; 7.2 still has the deprecated 'arch' (removed 9.0) and lacks 'qom-type' (10.1); qom-path names QEMU's QOM tree",
			func(req string, v map[string]any) bool {
				l, ok := v["return"].([]any)
				if !ok || !strings.Contains(req, "query-cpus-fast") {
					return false
				}
				for _, c := range l {
					if m, ok := c.(map[string]any); ok {
						m["thread-id"] = 0.0
						m["qom-path"] = "QOM"
						delete(m, "arch")
						delete(m, "qom-type")
					}
				}
				return true
			}},
	}
}

// diffScenario is a named list of exchanges run against a fresh VM.
type diffScenario struct {
	name  string
	qemu  []string // extra QEMU arguments
	vmmd  []string // extra vmmd arguments
	steps []diffStep
}

func qs(id string) diffStep {
	return diffStep{send: `{"execute":"query-status","id":"` + id + `"}`, lines: 1}
}

func diffScenarios() []diffScenario {
	one := func(s string) diffStep { return diffStep{send: s, lines: 1} }
	negotiate := []diffStep{
		{lines: 1}, // greeting
		one(`{"execute":"query-status","id":1}`),
		one(`{"execute":"qmp_capabilities","arguments":{"enable":["bogus"]}}`),
		one(`{"execute":"qmp_capabilities","arguments":{"x":1}}`),
		one(`{"execute":"qmp_capabilities","id":"neg"}`),
		one(`{"execute":"qmp_capabilities"}`),
	}
	return []diffScenario{
		{name: "running", steps: append(append([]diffStep{}, negotiate...),
			qs("running"),
			diffStep{send: `{"execute":"stop"}`, lines: 2},
			qs("paused"),
			one(`{"execute":"stop","id":"again"}`), // already stopped: no event
			diffStep{send: `{"execute":"cont","id":"c"}`, lines: 2},
			one(`{"execute":"cont"}`), // already running: no event
			qs("running2"),
			one(`{"execute":"query-version"}`),
			one(`{"execute":"query-kvm"}`),
			one(`{"execute":"query-cpus-fast"}`),
			one(`{"execute":"query-name"}`),
			one(`{"execute":"no-such-command","id":[1]}`),
			one(`{"execute":"stop","arguments":{"force":true}}`),
			one(`{"execute":"human-monitor-command","id":2}`),
			one(`{"execute":"human-monitor-command","arguments":{"command-line":42}}`),
			one(`{"execute":"human-monitor-command","arguments":{"command-line":"info status"}}`),
			one(`{"execute":}`),
			one(`{"execute" "x"}`),
			one(`[]`),
			one(`{"execute":1}`),
			one(`{"execute":"query-status","arguments":[]}`),
			one(`{"execute":"query-status","bogus":1}`),
			one(`{"arguments":{}}`),
			qs("recovered"),
			diffStep{send: `{"execute":"system_reset","id":"r"}`, lines: 2, unordered: true},
			qs("after-reset"),
		)},
		{name: "prelaunch-named", qemu: []string{"-S", "-name", "diffvm"}, vmmd: []string{"--paused", "--name", "diffvm"},
			steps: append(append([]diffStep{}, negotiate[0], negotiate[4]),
				qs("prelaunch"),
				one(`{"execute":"query-name"}`),
				one(`{"execute":"human-monitor-command","arguments":{"command-line":"info status"}}`),
				one(`{"execute":"stop"}`), // not live: no event
				qs("still-prelaunch"),
				diffStep{send: `{"execute":"cont"}`, lines: 2},
				qs("running"),
				diffStep{send: `{"execute":"stop"}`, lines: 2},
				one(`{"execute":"human-monitor-command","arguments":{"command-line":"info status"}}`),
				diffStep{send: `{"execute":"system_reset"}`, lines: 2, unordered: true},
				qs("reset-from-paused"),
			)},
	}
}

// diffQEMU starts QEMU on the test guest with a QMP socket.
func diffQEMU(t *testing.T, qemu, sock string, extra []string) {
	t.Helper()
	kernel := testguest.Path(t, "vmmd-testguest.elf")
	args := append([]string{"-enable-kvm", "-M", "microvm", "-cpu", "host,-arch-capabilities", "-m", "128",
		"-nodefaults", "-no-user-config", "-display", "none", "-serial", "none", "-kernel", kernel,
		"-qmp", "unix:" + sock + ",server=on,wait=off"}, extra...)
	p := startProc(t, exec.Command(qemu, args...))
	_ = p
}

// runDiff performs the steps on a connection and returns the replies,
// one slice of raw lines per step, then checks nothing else was pending.
func runDiff(t *testing.T, sock string, steps []diffStep) [][]string {
	t.Helper()
	q := e2eDial(t, sock)
	var out [][]string
	for _, st := range steps {
		if st.send != "" {
			q.send(st.send)
		}
		var got []string
		for i := 0; i < st.lines; i++ {
			got = append(got, q.recv())
		}
		out = append(out, got)
	}
	q.send(`{"execute":"query-status","id":"end"}`)
	if l := q.recv(); !strings.HasSuffix(l, `"id": "end"}`) {
		t.Errorf("extra output after the last step: %q", l)
	}
	return out
}

// normalise parses a reply line and applies the known differences,
// recording which of them fired.
func normalise(t *testing.T, req, line string, known []knownDiff, fired map[int]bool) string {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal([]byte(line), &v); err != nil {
		t.Errorf("reply %q is not a JSON object: %v", line, err)
		return line
	}
	for i, k := range known {
		if k.fix(req, v) {
			fired[i] = true
		}
	}
	b, _ := json.Marshal(v) // sorted keys: member order is not significant
	return string(b)
}

func TestQMPDiffQEMU(t *testing.T) {
	kvmtest.Require(t)
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		msg := "qemu-system-x86_64 not installed (apt-get install qemu-system-x86): " + err.Error()
		if os.Getenv(kvmtest.RequireEnv) == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	bin := buildVMMD(t)
	known := diffKnown()
	fired := map[int]bool{}
	for _, sc := range diffScenarios() {
		t.Run(sc.name, func(t *testing.T) {
			qsock := e2eSockPath(t, "qemu.sock")
			diffQEMU(t, qemu, qsock, sc.qemu)
			_, vsock := e2eStartVMMD(t, bin, sc.vmmd...)
			// Let a running guest get going in both, so the states compare.
			time.Sleep(300 * time.Millisecond)
			qr := runDiff(t, qsock, sc.steps)
			vr := runDiff(t, vsock, sc.steps)
			for i, st := range sc.steps {
				qn := make([]string, len(qr[i]))
				vn := make([]string, len(vr[i]))
				for j := range qr[i] {
					qn[j] = normalise(t, st.send, qr[i][j], known, fired)
					vn[j] = normalise(t, st.send, vr[i][j], known, fired)
				}
				if st.unordered {
					sort.Strings(qn)
					sort.Strings(vn)
				}
				if !reflect.DeepEqual(qn, vn) {
					t.Errorf("step %d %s:\n qemu: %s\n vmmd: %s\n (raw qemu %q, raw vmmd %q)",
						i, st.send, strings.Join(qn, " | "), strings.Join(vn, " | "), qr[i], vr[i])
				}
			}
		})
	}
	var b strings.Builder
	fmt.Fprintf(&b, "known differences (QEMU 7.2 vs vmmd), normalised before comparing:\n")
	fmt.Fprintf(&b, "| difference | reason | seen |\n|---|---|---|\n")
	for i, k := range known {
		fmt.Fprintf(&b, "| %s | %s | %v |\n", k.what, k.reason, fired[i])
	}
	t.Log(b.String())
}
