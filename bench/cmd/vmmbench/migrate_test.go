package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseSections(t *testing.T) {
	all, err := parseSections("")
	if err != nil || len(all) != 4 || !all[sectionMigrate] || !all[sectionBoot] {
		t.Errorf(`parseSections("") = %v, %v; want all four`, all, err)
	}
	got, err := parseSections("migrate, qmp")
	if err != nil || len(got) != 2 || !got[sectionMigrate] || !got[sectionQMP] {
		t.Errorf(`parseSections("migrate, qmp") = %v, %v`, got, err)
	}
	if _, err := parseSections("migrate,boots"); err == nil || !strings.Contains(err.Error(), `"boots"`) {
		t.Errorf(`parseSections("migrate,boots") error = %v, want one naming "boots"`, err)
	}
	for _, args := range [][]string{{"-only", "nope"}, {"-migrate-runs", "0"}, {"-migrate-cases", "1G-idle"}} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != 2 || stdout.Len() != 0 {
			t.Errorf("run(%q) = %d with stdout %q, want 2 and no output", args, code, stdout.String())
		}
	}
}

// qemuCompleted is a real QEMU 7.2 reply (qemu-baseline.md §4).
const qemuCompleted = `{"status": "completed", "setup-time": 3, "downtime": 109, "total-time": 371, "ram": {"total": 1073819648, "postcopy-requests": 0, "dirty-sync-count": 3, "multifd-bytes": 0, "pages-per-second": 712097, "downtime-bytes": 210128916, "page-size": 4096, "remaining": 0, "postcopy-bytes": 0, "mbps": 9178.971173913043, "transferred": 422213930, "dirty-sync-missed-zero-copy": 0, "precopy-bytes": 212085014, "duplicate": 210948, "dirty-pages-rate": 0, "skipped": 0, "normal-bytes": 419495936, "normal": 102416}}`

func TestRecordQueryMigrate(t *testing.T) {
	decode := func(s string) queryMigrate {
		t.Helper()
		var q queryMigrate
		if err := json.Unmarshal([]byte(s), &q); err != nil {
			t.Fatalf("decode %s: %v", s, err)
		}
		return q
	}
	var r migrateRun
	q := decode(qemuCompleted)
	if !q.finished() {
		t.Fatal("completed is not finished")
	}
	r.record(q)
	if !r.Completed || r.TotalMS != 371 || r.DowntimeMS != 109 || r.SetupMS != 3 || r.DirtySyncs != 3 ||
		r.TransferredMiB < 402.6 || r.TransferredMiB > 402.7 || len(r.Failures) != 0 {
		t.Errorf("record(QEMU completed) = %+v", r)
	}

	// Completed without figures must not count as a 0 ms migration.
	r = migrateRun{}
	r.record(decode(`{"status":"completed","total-time":5}`))
	if r.Completed || len(r.Failures) != 1 {
		t.Errorf("record(completed, no figures) = %+v, want a failure", r)
	}

	r = migrateRun{}
	r.record(decode(`{"status":"failed","error-desc":"Unable to write to socket: Broken pipe"}`))
	if r.Completed || len(r.Failures) != 1 || !strings.Contains(r.Failures[0], "Broken pipe") {
		t.Errorf("record(failed) = %+v", r)
	}
	if r.DowntimeSteps != nil {
		t.Errorf("QEMU's reply gave downtime steps: %+v", r.DowntimeSteps)
	}
	r = migrateRun{}
	r.record(decode(`{"status":"completed","total-time":10,"downtime":2,"setup-time":0,"ram":{"transferred":1},` +
		`"x-vmmd-downtime-steps":{"stop":0.2,"inactivate":0.01,"last-pages":0.06,"device-state":0.3,"destination-load":0.5,"commit":0.02}}`))
	want := map[string]float64{"stop": 0.2, "inactivate": 0.01, "last-pages": 0.06, "device-state": 0.3, "destination-load": 0.5, "commit": 0.02}
	if !maps.Equal(r.DowntimeSteps, want) {
		t.Errorf("vmmd's downtime steps recorded as %v, want %v", r.DowntimeSteps, want)
	}
	if decode(`{"status":"active"}`).finished() || decode(`{"status":"setup"}`).finished() {
		t.Error("active or setup counted as finished")
	}
}

// okMigration is a completed, checked run of c: pause 0.5 ms over the
// downtime, the region's bytes sent before the stop and 0.7 MiB more in
// all, setup 1 ms, and as many pages with data as the region plus 35.
func okMigration(vmm string, c migrateCase, total, down float64) migrateRun {
	pause := down + 0.5
	pre := uint64(c.MemMiB) << 20
	r := migrateRun{Case: c.Name, Unlimited: c.Unlimited, VMM: vmm, Status: "completed", Completed: true,
		Verified: true, TotalMS: total, DowntimeMS: down, SetupMS: 1, TransferredMiB: float64(c.MemMiB) + 0.7,
		NormalPages: uint64(c.MemMiB)*256 + 35, PauseMS: &pause, PrecopyBytes: &pre, TouchedPages: c.touchedPages()}
	if g, ok := bulkGbps(pre, total, 1, down); ok {
		r.BulkGbps = &g
	}
	if g, ok := overallGbps(uint64(r.TransferredMiB*(1<<20)), total, 1); ok {
		r.OverallGbps = &g
	}
	if vmm == "vmmd" {
		// A tenth of the downtime each, device state half of it.
		r.DowntimeSteps = map[string]float64{"stop": down / 10, "inactivate": down / 10, "last-pages": down / 10,
			"device-state": down / 2, "destination-load": down / 10, "commit": down / 10}
	}
	return r
}

func TestMigrateReport(t *testing.T) {
	env := environment{vmmd: "/x/vmmd", qemu: "/usr/bin/qemu", kernel: "/x/guest.elf", hostKernel: "6.x", qemuVersion: "QEMU 7.2"}
	vmms := migrateVMMs(env)
	cases := migrateCases()
	idle, filled := cases[0], cases[3]
	if idle.Name != "256M-idle" || idle.Unlimited || filled.Name != "256M-filled-idle" || filled.MemMiB != 200 {
		t.Fatalf("cases 0 and 3 are %+v and %+v", idle, filled)
	}
	rep := migrateReport{Cases: []migrateCase{idle, filled}, RunsPerCase: 3, Warmup: 1, OtherLoad: 0.6, DurationS: 12,
		DowntimeLimitMS: 300}
	for i, total := range []float64{100, 300, 200} {
		rep.Runs = append(rep.Runs, okMigration("vmmd", filled, total, 2), okMigration("QEMU", filled, 2*total, 0))
		rep.Runs = append(rep.Runs, okMigration("vmmd", idle, 30, 4), okMigration("QEMU", idle, 20, 2))
		rep.Runs[len(rep.Runs)-1].Round = i + 1
	}
	bad := okMigration("vmmd", idle, 25, 3)
	bad.Verified, bad.Round, bad.Failures = false, 4, []string{"destination ping: no PONG"}
	rep.Runs = append(rep.Runs, bad)

	var out bytes.Buffer
	ok, err := writeMigrateReport(&out, &rep, vmms, env)
	if err != nil {
		t.Fatalf("writeMigrateReport: %v", err)
	}
	if ok {
		t.Error("ok with a run that failed its checks")
	}
	text := out.String()
	for _, want := range []string{
		"NOISY: other work kept 60% of the",
		"downtime-limit 300 ms",
		// The failed check's run counts in the figures, not in the pause; an idle case has no bulk figure.
		"| 256M-idle | 256 MiB, idle | 128 MiB/s | vmmd | 4/4 | 3/4 | 30 (25–30) | 4 (3–4) | 4.5 (4.5–4.5) | 1 (1–1) | 0.7 (0.7–0.7) | – | – | 35 (35–35) ≤ 4096 |",
		"| 256M-idle | 256 MiB, idle | 128 MiB/s | QEMU | 3/3 | 3/3 | 20 (20–20) | 2 (2–2) | 2.5 (2.5–2.5) | 1 (1–1) |",
		// vmmd's bulk: 200 MiB over 97, 297 and 197 ms; overall: 200.7 MiB
		// over 99, 299 and 199 ms.
		"| 256M-filled-idle | 256 MiB, 200 MiB filled, idle | unlimited | vmmd | 3/3 | 3/3 | 200 (100–300) | 2 (2–2) | 2.5 (2.5–2.5) | 1 (1–1) | 200.7 (200.7–200.7) | 8.52 (5.65–17.30) | 8.46 (5.63–17.01) | 51235 (51235–51235) ≤ 55296 |",
		// QEMU's overall: 200.7 MiB over 199, 599 and 399 ms.
		"| unlimited | QEMU | 3/3 | 3/3 | 400 (200–600) | 0 (0–0) | 0.5 (0.5–0.5) | 1 (1–1) | 200.7 (200.7–200.7) | 4.20 (2.80–8.43) | 4.22 (2.81–8.46) |",
		"| 256M-idle | 128 MiB/s | 1.50× | 2.00× | 1.80× | n/a | n/a | 1.00× |",
		"| 256M-filled-idle | unlimited | 0.50× | n/a (QEMU 0) | 5.00× | 2.03× | 2.01× | 1.00× |",
		"| 256M-idle (128 MiB/s) | n/a: the goals are at unlimited bandwidth |",
		"| 256M-filled-idle | 2.03× **NOT MET** | 2.01× **NOT MET** | 5.00× **NOT MET** | n/a (QEMU's median is 0 ms) | never: **MET** (at most 51235 pages with data ≤ 55296 touched) |",
		"Goals met: bulk throughput in 0 of 1 cases, overall throughput in 0 of 1, guest-visible pause in 0 of 1, QMP downtime in 0 of 0, untouched pages never sent in 1 of 1.",
		"Both are shown because QEMU switches over once what is left of its first pass fits in downtime-limit",
		"- vmmd 256M-idle (128 MiB/s) run 4: destination ping: no PONG",
		"Runs per VMM and case: 3 (+1 warm-up round",
		"#### Where vmmd's downtime went (query-migrate's x-vmmd-downtime-steps; medians, ms)",
		"| case | max-bandwidth | runs | stop | inactivate | last-pages | device-state | destination-load | commit | downtime (QMP) |",
		// The idle case's runs have downtimes 4, 4, 4 and 3 ms.
		"| 256M-idle | 128 MiB/s | 4 | 0.400 | 0.400 | 0.400 | 2.000 | 0.400 | 0.400 | 4 |",
		"| 256M-filled-idle | unlimited | 3 | 0.200 | 0.200 | 0.200 | 1.000 | 0.200 | 0.200 | 2 |",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
	if len(rep.Goals) != 2 || rep.Goals[1].Throughput.Met || !rep.Goals[1].Untouched.Met {
		t.Errorf("goals stored in the report = %+v", rep.Goals)
	}

	// Without the failed run every case is complete and checked.
	rep.Runs, rep.OtherLoad = rep.Runs[:len(rep.Runs)-1], 0.1
	out.Reset()
	if ok, err := writeMigrateReport(&out, &rep, vmms, env); err != nil || !ok {
		t.Errorf("writeMigrateReport = %v, %v; want ok", ok, err)
	}
	if strings.Contains(out.String(), "NOISY") {
		t.Errorf("quiet host marked noisy:\n%s", out.String())
	}

	// One migration that failed fails the benchmark, though the case has
	// completed runs.
	failed := migrateRun{Case: filled.Name, Unlimited: true, VMM: "QEMU", Round: 4, Status: "failed",
		Failures: []string{"migration failed: Broken pipe"}}
	rep.Runs = append(rep.Runs, failed)
	out.Reset()
	if ok, err := writeMigrateReport(&out, &rep, vmms, env); err != nil || ok {
		t.Errorf("writeMigrateReport with a failed migration = %v, %v; want not ok", ok, err)
	}
	if want := "| QEMU | 3/4 | 3/3 |"; !strings.Contains(out.String(), want) {
		t.Errorf("report lacks %q:\n%s", want, out.String())
	}

	// A case with no completed run on one VMM is incomplete.
	rep.Runs = rep.Runs[:2]
	if ok, err := writeMigrateReport(io.Discard, &rep, vmms, env); err != nil || ok {
		t.Errorf("writeMigrateReport with the idle case missing = %v, %v; want not ok", ok, err)
	}
}

func TestParseProcStat(t *testing.T) {
	got, err := parseProcStat("cpu  100 5 50 800 20 1 2 3 0 0\ncpu0 50 2 25 400 10 0 1 1 0 0\nintr 1\n")
	if err != nil || got.total != 981 || got.busy != 161 {
		t.Errorf("parseProcStat = %+v, %v; want total 981 busy 161", got, err)
	}
	for _, bad := range []string{"intr 1\n", "cpu 1 2\n", "cpu 1 2 x 4 5\n"} {
		if _, err := parseProcStat(bad); err == nil {
			t.Errorf("parseProcStat(%q) succeeded", bad)
		}
	}
}

// fakeQMP serves one QMP connection on a unix socket with canned replies.
func fakeQMP(t *testing.T, replies map[string][]string) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "q.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		io.WriteString(conn, `{"QMP": {"version": {}, "capabilities": []}}`+"\r\n")
		dec := json.NewDecoder(conn)
		for {
			var req struct {
				Execute string `json:"execute"`
			}
			if dec.Decode(&req) != nil {
				return
			}
			for _, line := range replies[req.Execute] {
				io.WriteString(conn, line+"\r\n")
			}
		}
	}()
	return sock
}

func TestQMPClient(t *testing.T) {
	sock := fakeQMP(t, map[string][]string{
		"qmp_capabilities": {`{"return": {}}`},
		"query-status":     {`{"event": "RESUME", "data": {}}`, `{"return": {"status": "postmigrate", "running": false}}`},
		"migrate":          {`{"error": {"class": "GenericError", "desc": "There's a migration process in progress"}}`},
		"query-name":       {`{"neither": 1}`},
	})
	ctx := context.Background()
	c, err := dialQMP(ctx, sock, 2*time.Second, make(chan struct{}))
	if err != nil {
		t.Fatalf("dialQMP: %v", err)
	}
	defer c.close()
	var st struct {
		Status string `json:"status"`
	}
	if err := c.call(ctx, "query-status", nil, &st); err != nil || st.Status != "postmigrate" {
		t.Errorf("query-status = %+v, %v; want postmigrate (the event skipped)", st, err)
	}
	err = c.call(ctx, "migrate", map[string]string{"uri": "unix:/x"}, nil)
	if err == nil || !strings.Contains(err.Error(), "GenericError: There's a migration process in progress") {
		t.Errorf("migrate error = %v, want the QMP error", err)
	}
	if err := c.call(ctx, "query-name", nil, nil); err == nil {
		t.Error("a reply with neither return nor error was accepted")
	}

	// Nothing listening: the dial gives up once the VMM has exited.
	exited := make(chan struct{})
	close(exited)
	if _, err := dialQMP(ctx, filepath.Join(t.TempDir(), "none.sock"), time.Minute, exited); err == nil {
		t.Error("dialQMP to nothing succeeded")
	}
}

// fakeMemGuest answers the test guest's mem commands on a consoleVMM whose
// pages wrap to 0 at the first stop, so fillRegion must resume once.
func fakeMemGuest(t *testing.T, mib int) (*consoleVMM, *[]string) {
	t.Helper()
	inR, inW := io.Pipe()
	g := &consoleVMM{cmd: &exec.Cmd{}, stdin: inW, lines: make(chan string, 16), stderr: &strings.Builder{}, exited: make(chan struct{})}
	var seen []string
	t.Cleanup(func() { inW.Close() })
	go func() {
		stops, passes := 0, 0
		sc := bufio.NewScanner(inR)
		for sc.Scan() {
			cmd := sc.Text()
			seen = append(seen, cmd)
			value := 0 // byte 0 of every page after the first stop
			if stops > 1 {
				value = 7
			}
			switch {
			case cmd == fmt.Sprintf("mem start %d", mib):
				g.lines <- "HB 1" // unrelated lines are skipped
				g.lines <- "OK " + cmd
			case cmd == "mem status":
				passes++
				g.lines <- fmt.Sprintf("MEM running passes=%d", passes)
			case cmd == "mem stop":
				stops++
				g.lines <- "OK mem stop"
			case strings.HasPrefix(cmd, "mem peek "):
				g.lines <- fmt.Sprintf("MEM page=%s value=%d", strings.TrimPrefix(cmd, "mem peek "), value)
			default:
				g.lines <- "ERR unknown command: " + cmd
			}
		}
	}()
	return g, &seen
}

func TestFillRegionRetriesZeroPages(t *testing.T) {
	g, seen := fakeMemGuest(t, 200)
	fill, err := fillRegion(context.Background(), g, 200)
	if err != nil {
		t.Fatalf("fillRegion: %v", err)
	}
	if want := "page0=7 page51199=7 attempts=2"; !strings.Contains(fill, want) {
		t.Errorf("fillRegion = %q, want it to contain %q", fill, want)
	}
	want := []string{"mem status", "mem stop", "mem peek 0", "mem peek 51199",
		"mem start 200", "mem status", "mem stop", "mem peek 0", "mem peek 51199"}
	if got := strings.Join(*seen, ","); got != strings.Join(want, ",") {
		t.Errorf("commands = %s\nwant       %s", got, strings.Join(want, ","))
	}
}

// TestMigrateOnceRecordsExits runs migrateOnce with a "VMM" that exits at
// once: the run fails at boot, and how both processes ended must still
// reach the result (recorded by a deferred close after the return value).
func TestMigrateOnceRecordsExits(t *testing.T) {
	v := migrateVMM{Name: "fake", config: func(_ int, qmpSock, incoming string) vmmConfig {
		script := "exit 3"
		if incoming != "" {
			// exec: SIGTERM always lands on sleep itself (a trap could be
			// installed only after the signal arrived).
			script = `exec sleep 30`
		}
		return vmmConfig{Name: "fake", VMM: "fake", Path: "/bin/sh", Args: []string{"-c", script}}
	}}
	r, err := migrateOnce(context.Background(), v, migrateCases()[0], t.TempDir(), 1)
	if err != nil {
		t.Fatalf("migrateOnce: %v", err)
	}
	if r.Completed || len(r.Failures) != 1 || !strings.Contains(r.Failures[0], "boot") {
		t.Errorf("failures = %q, want one boot failure", r.Failures)
	}
	if r.SrcExit != "exit status 3" || r.DstExit != "signal: terminated" || !r.UncleanExit {
		t.Errorf("exits: source %q, destination %q, unclean %v; want exit status 3, signal: terminated, true",
			r.SrcExit, r.DstExit, r.UncleanExit)
	}
}
