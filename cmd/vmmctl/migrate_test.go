package main

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// statusJSON runs migrate-status -o json, checks its field names and
// decodes it.
func (h *harness) migrateStatus(t *testing.T) migrateStatus {
	t.Helper()
	out := h.ok(t, "migrate-status", "-o", "json")
	assertStatusKeys(t, "migrate-status -o json", []byte(out))
	var s migrateStatus
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("migrate-status -o json: %v in %q", err, out)
	}
	return s
}

// settings runs migrate-set -o json with args.
func (h *harness) settings(t *testing.T, args ...string) migrateSettingsJSON {
	t.Helper()
	out := h.ok(t, append([]string{"-o", "json", "migrate-set"}, args...)...)
	var s migrateSettingsJSON
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("migrate-set -o json: %v in %q", err, out)
	}
	return s
}

// number decodes a parameter value.
func number(t *testing.T, s migrateSettingsJSON, name string) uint64 {
	t.Helper()
	raw, ok := s.Parameters[name]
	if !ok {
		t.Fatalf("parameter %s missing from %+v", name, s.Parameters)
	}
	n, err := strconv.ParseUint(string(raw), 10, 64)
	if err != nil {
		t.Fatalf("parameter %s = %s: %v", name, raw, err)
	}
	return n
}

// checkMigrateSet exercises migrate-set's round trip and its refusals on
// any server that has the standard capabilities and parameters.
func checkMigrateSet(t *testing.T, h *harness) {
	t.Helper()
	got := h.settings(t, "downtime-limit=150", "max-bandwidth=1G", "events=on")
	if len(got.Capabilities) != 1 || !got.Capabilities["events"] || len(got.Parameters) != 2 ||
		number(t, got, "downtime-limit") != 150 || number(t, got, "max-bandwidth") != 1<<30 {
		t.Errorf("migrate-set reply: %+v", got)
	}
	all := h.settings(t)
	if !all.Capabilities["events"] || number(t, all, "downtime-limit") != 150 || number(t, all, "max-bandwidth") != 1<<30 {
		t.Errorf("migrate-set without arguments after setting: %+v", all)
	}
	if _, ok := all.Capabilities["xbzrle"]; !ok {
		t.Errorf("migrate-set without arguments lacks the capability xbzrle: %+v", all.Capabilities)
	}
	table := h.ok(t, "migrate-set", "events=off", "downtime-limit=300")
	for _, re := range []string{`(?m)^NAME\s+KIND\s+VALUE$`, `(?m)^events\s+capability\s+off$`, `(?m)^downtime-limit\s+parameter\s+300$`} {
		if !regexp.MustCompile(re).MatchString(table) {
			t.Errorf("migrate-set table %q does not match %s", table, re)
		}
	}
	r := h.ctl(t, "migrate-set", "no-such-thing=1")
	if r.code != exitUsage || !strings.Contains(r.stderr, `unknown migration setting "no-such-thing"`) || !strings.Contains(r.stderr, "downtime-limit") {
		t.Errorf("unknown setting: exit %d stderr %q, want exit 2 naming it and listing the known ones", r.code, r.stderr)
	}
	r = h.ctl(t, "migrate-set", "downtime-limit=soon")
	if r.code != exitUsage || !strings.Contains(r.stderr, "downtime-limit") {
		t.Errorf("bad value: exit %d stderr %q, want exit 2", r.code, r.stderr)
	}
}

// progressLines splits migrate --wait's pipe output into the progress
// lines and the summary, failing on anything else.
func progressLines(t *testing.T, out string) (progress []string, summary []string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	for i, l := range lines {
		if i == len(lines)-1 {
			summary = summaryLineRE().FindStringSubmatch(l)
			if summary == nil {
				t.Fatalf("last line %q is not a summary line; output:\n%s", l, out)
			}
			break
		}
		if !progressLineRE().MatchString(l) {
			t.Fatalf("line %q is not a progress line; output:\n%s", l, out)
		}
		progress = append(progress, l)
	}
	return progress, summary
}

func TestMigrate(t *testing.T) { forEachBackend(t, testMigrate) }

func testMigrate(t *testing.T, b backend) {
	p := startPair(t, b, true)
	bin := buildVmmctl(t)
	src := &harness{vmmctl: bin, socket: p.src}
	dst := &harness{vmmctl: bin, socket: p.dst}

	golden(t, "migrate-status-none.golden", src.ok(t, "migrate-status"))
	if s := src.migrateStatus(t); s.Status != statusNone || s.RAM != nil {
		t.Fatalf("before any migration: %+v", s)
	}
	checkMigrateSet(t, src)

	if s := statusOf(t, dst); s.Status != "inmigrate" {
		t.Fatalf("destination with -incoming defer: %+v", s)
	}
	dst.ok(t, "migrate-incoming", p.uri)

	r := src.ctl(t, "migrate", p.uri, "--wait", "--interval", "200ms", "--downtime-limit", "100", "--max-bandwidth", "300K")
	if r.code != 0 {
		t.Fatalf("migrate --wait: exit %d\nstdout:\n%s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	progress, summary := progressLines(t, r.stdout)
	active := 0
	for _, l := range progress {
		if strings.Contains(l, "status=active ") && !strings.Contains(l, "percent=100.0") {
			active++
		}
	}
	if active < 2 {
		t.Errorf("want at least 2 progress lines of an active migration at 300 KiB/s, got %d:\n%s", active, r.stdout)
	}
	if summary[1] != "completed" || summary[4] == "-" || summary[4] == "0" || summary[5] == "-" || summary[5] == "0" || summary[2] == "-" {
		t.Errorf("summary %q: want completed with bytes, passes and time", summary[0])
	}
	set := src.settings(t)
	if number(t, set, "max-bandwidth") != 300<<10 || number(t, set, "downtime-limit") != 100 {
		t.Errorf("--max-bandwidth 300K --downtime-limit 100 did not set the parameters: %+v", set.Parameters)
	}

	s := src.migrateStatus(t)
	if s.Status != "completed" || s.RAM == nil || strconv.FormatUint(s.RAM.Transferred, 10) != summary[4] ||
		s.DowntimeMS == nil || s.TotalTimeMS == nil || s.RAM.Total < 128<<20 || s.RAM.Remaining != 0 {
		t.Errorf("source migrate-status after completion: %+v (summary %q)", s, summary[0])
	}
	if d := dst.migrateStatus(t); d.Status != "completed" {
		t.Errorf("destination migrate-status: %+v", d)
	}
	if st := statusOf(t, dst); st.Status != "running" || !st.Running {
		t.Errorf("destination after migration: %+v, want running", st)
	}
	if st := statusOf(t, src); st.Status != "postmigrate" {
		t.Errorf("source after migration: %+v, want postmigrate", st)
	}
	table := src.ok(t, "migrate-status")
	for _, re := range []string{`^Status:\s+completed\n`, `\nTransferred:\s+` + summary[4] + ` \(`, `\nPass:\s+\d+\n`, `\nError:\s+-\n$`} {
		if !regexp.MustCompile(re).MatchString(table) {
			t.Errorf("migrate-status table does not match %s:\n%s", re, table)
		}
	}
	// Watching a migration that has already ended returns at once.
	r = src.ctl(t, "migrate-status", "--watch")
	if _, sum := progressLines(t, r.stdout); r.code != 0 || sum[1] != "completed" {
		t.Errorf("migrate-status --watch after completion: exit %d, stdout %q", r.code, r.stdout)
	}
}

func TestMigrateCancel(t *testing.T) { forEachBackend(t, testMigrateCancel) }

func testMigrateCancel(t *testing.T, b backend) {
	p := startPair(t, b, false)
	bin := buildVmmctl(t)
	src := &harness{vmmctl: bin, socket: p.src}

	// 32 KiB/s keeps the migration going for about 15 s.
	src.ok(t, "migrate", p.uri, "--max-bandwidth", "32K")
	deadline := time.Now().Add(10 * time.Second)
	for s := src.migrateStatus(t); s.Status != "active"; s = src.migrateStatus(t) {
		if s.terminal() || time.Now().After(deadline) {
			t.Fatalf("migration did not become active: %+v", s)
		}
		time.Sleep(20 * time.Millisecond)
	}
	src.ok(t, "migrate-cancel")
	r := src.ctl(t, "-o", "json", "migrate-status", "--watch", "--interval", "50ms")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	for _, l := range lines {
		assertStatusKeys(t, "migrate-status --watch -o json line", []byte(l))
	}
	var last migrateStatus
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || last.Status != "cancelled" {
		t.Fatalf("last --watch line %q (%v), want status cancelled", lines[len(lines)-1], err)
	}
	if r.code != exitQMP || !strings.Contains(r.stderr, "error: migration cancelled") || !strings.Contains(r.stderr, "this VM is running") {
		t.Errorf("watch of a cancelled migration: exit %d stderr %q, want exit 1 naming the outcome and the run state", r.code, r.stderr)
	}
	if st := statusOf(t, src); st.Status != "running" {
		t.Errorf("source after cancel: %+v, want running", st)
	}
}

func TestMigrateFailure(t *testing.T) { forEachBackend(t, testMigrateFailure) }

func testMigrateFailure(t *testing.T, b backend) {
	dir := shortDir(t)
	bin := buildVmmctl(t)
	src := &harness{vmmctl: bin, socket: b.start(t, dir, "src", "")}
	nowhere := "unix:" + filepath.Join(dir, "nobody.sock")

	r := src.ctl(t, "migrate", nowhere, "--wait", "--interval", "50ms")
	_, summary := progressLines(t, r.stdout)
	if r.code != exitQMP || summary[1] != "failed" || !strings.Contains(summary[6], "nobody.sock") {
		t.Errorf("migrate --wait to nowhere: exit %d stdout %q, want exit 1 and a failed summary with the cause", r.code, r.stdout)
	}
	if !strings.HasPrefix(r.stderr, "error: migration failed: ") || !strings.Contains(r.stderr, "nobody.sock") ||
		!strings.HasSuffix(r.stderr, "; source is running\n") {
		t.Errorf("stderr %q: want the error-desc and the source's run state", r.stderr)
	}

	r = src.ctl(t, "-o", "json", "migrate", nowhere, "--wait", "--interval", "50ms")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	var last migrateStatus
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || last.Status != "failed" || !strings.Contains(last.ErrorDesc, "nobody.sock") || r.code != exitQMP {
		t.Errorf("-o json migrate --wait to nowhere: exit %d stdout %q (%v)", r.code, r.stdout, err)
	}

	// QMP errors from the migration commands themselves exit 1 too.
	r = src.ctl(t, "migrate-incoming", nowhere)
	if r.code != exitQMP || !strings.HasPrefix(r.stderr, "error: ") {
		t.Errorf("migrate-incoming on a VM not started with --incoming: exit %d stderr %q, want exit 1", r.code, r.stderr)
	}
	r = src.ctl(t, "migrate", "nowhere")
	if r.code != exitUsage {
		t.Errorf("migrate without a URI scheme: exit %d stderr %q, want exit 2", r.code, r.stderr)
	}
	r = src.ctl(t, "migrate", nowhere, "--max-bandwidth", "fast")
	if r.code != exitUsage || !strings.Contains(r.stderr, "--max-bandwidth") {
		t.Errorf("bad --max-bandwidth: exit %d stderr %q, want exit 2", r.code, r.stderr)
	}
	if st := statusOf(t, src); st.Status != "running" {
		t.Errorf("source after the failed migrations: %+v, want running", st)
	}
}
