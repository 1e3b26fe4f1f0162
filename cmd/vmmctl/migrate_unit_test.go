package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
	}{
		{"0", 0}, {"1048576", 1 << 20}, {"512K", 512 << 10}, {"512k", 512 << 10}, {"100M", 100 << 20},
		{"1G", 1 << 30}, {"1GiB", 1 << 30}, {"1gb", 1 << 30}, {"2T", 2 << 40}, {"10b", 10}, {" 7 ", 7},
	} {
		got, err := parseSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "G", "1X", "-1", "1.5G", "1ib", "1 G B", "99999999999999999999", "16777216T"} {
		if got, err := parseSize(in); err == nil || !strings.Contains(err.Error(), "invalid size") {
			t.Errorf("parseSize(%q) = %d, %v; want an invalid size error", in, got, err)
		}
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 455115: "444.4 KiB",
		134295552: "128.1 MiB", 1 << 30: "1.0 GiB", 1 << 50: "1.0 PiB", 1<<63 + 1<<62: "12288.0 PiB"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestCheckURI(t *testing.T) {
	for _, ok := range []string{"unix:/run/x.mig", "tcp:10.0.0.2:4444", "file:/tmp/vm.state", "fd:mig", "exec:cat > /dev/null"} {
		if err := checkURI(ok); err != nil {
			t.Errorf("checkURI(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "/run/x.mig", "unix:", ":x", "Unix:/x"} {
		var ue *usageError
		if err := checkURI(bad); !errors.As(err, &ue) {
			t.Errorf("checkURI(%q) = %v, want a usage error", bad, err)
		}
	}
}

// qemuReply is a query-migrate return captured from QEMU 7.2 mid-migration.
const qemuReply = `{"expected-downtime": 300, "status": "active", "setup-time": 0, "total-time": 1010, "ram": {"total": 134295552, "postcopy-requests": 0, "dirty-sync-count": 1, "multifd-bytes": 0, "pages-per-second": 380, "downtime-bytes": 0, "page-size": 4096, "remaining": 130318336, "postcopy-bytes": 0, "mbps": 1.0116000000000001, "transferred": 131689, "dirty-sync-missed-zero-copy": 0, "precopy-bytes": 131689, "duplicate": 941, "dirty-pages-rate": 0, "skipped": 0, "normal-bytes": 122880, "normal": 30}}`

func decodeStatus(t *testing.T, reply string) migrateStatus {
	t.Helper()
	var in qmpMigrationInfo
	if err := json.Unmarshal([]byte(reply), &in); err != nil {
		t.Fatal(err)
	}
	return fromQMP(in)
}

// fixtures are statuses covering every shape the renderers handle.
func fixtures(t *testing.T) map[string]migrateStatus {
	return map[string]migrateStatus{
		"none":      decodeStatus(t, `{}`),
		"setup":     decodeStatus(t, `{"status":"setup"}`),
		"active":    decodeStatus(t, qemuReply),
		"completed": decodeStatus(t, `{"status":"completed","setup-time":3,"downtime":1,"total-time":2809,"ram":{"total":134295552,"dirty-sync-count":3,"mbps":1.3496593014967926,"transferred":455115,"duplicate":32749,"normal":39,"normal-bytes":159744,"pages-per-second":150}}`),
		"failed":    decodeStatus(t, `{"status":"failed","error-desc":"Failed to connect to '/tmp/x.sock': No such file or directory"}`),
		"cancelled": decodeStatus(t, `{"status":"cancelled"}`),
	}
}

func TestFromQMP(t *testing.T) {
	s := decodeStatus(t, qemuReply)
	if s.Status != "active" || s.TotalTimeMS == nil || *s.TotalTimeMS != 1010 || s.DowntimeMS != nil ||
		s.RAM == nil || s.RAM.Transferred != 131689 || s.RAM.NormalBytes != 122880 || s.pass() != 1 {
		t.Fatalf("fromQMP: %+v", s)
	}
	if p := s.percent(); p < 2.96 || p > 2.97 {
		t.Errorf("percent = %v, want 2.96..2.97", p)
	}
	if s.terminal() {
		t.Error("active is terminal")
	}
	fx := fixtures(t)
	if fx["none"].Status != statusNone || fx["none"].terminal() || fx["none"].percent() != 0 {
		t.Errorf("empty reply: %+v", fx["none"])
	}
	for _, k := range []string{"completed", "failed", "cancelled"} {
		if !fx[k].terminal() {
			t.Errorf("%s is not terminal", k)
		}
	}
	if fx["completed"].percent() != 100 {
		t.Errorf("completed percent %v", fx["completed"].percent())
	}
	// Remaining above total (a server mid-resize) must not go negative.
	odd := decodeStatus(t, `{"status":"active","ram":{"total":10,"remaining":20}}`)
	if odd.percent() != 0 {
		t.Errorf("remaining > total: percent %v", odd.percent())
	}
}

// TestMigrateStatusJSONFields pins the JSON field names scripts rely on.
func TestMigrateStatusJSONFields(t *testing.T) {
	for name, s := range fixtures(t) {
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		assertStatusKeys(t, name, b)
	}
}

// assertStatusKeys checks that b is a migrate-status object with exactly
// the documented fields.
func assertStatusKeys(t *testing.T, what string, b []byte) {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v in %s", what, err, b)
	}
	want := []string{"error_desc", "downtime_ms", "downtime_steps", "expected_downtime_ms", "ram", "setup_time_ms", "status", "total_time_ms", "xbzrle"}
	if got := sortedKeys(m); strings.Join(got, ",") != strings.Join(sortedStrings(want), ",") {
		t.Errorf("%s: fields %v, want %v", what, got, sortedStrings(want))
	}
	if x := m["xbzrle"]; string(x) != "null" {
		var xm map[string]json.RawMessage
		if err := json.Unmarshal(x, &xm); err != nil {
			t.Fatalf("%s: xbzrle: %v", what, err)
		}
		wantX := []string{"bytes", "cache_miss", "cache_miss_rate", "cache_size", "overflow", "pages"}
		if got := sortedKeys(xm); strings.Join(got, ",") != strings.Join(wantX, ",") {
			t.Errorf("%s: xbzrle fields %v, want %v", what, got, wantX)
		}
	}
	if x := m["downtime_steps"]; string(x) != "null" {
		var xm map[string]json.RawMessage
		if err := json.Unmarshal(x, &xm); err != nil {
			t.Fatalf("%s: downtime_steps: %v", what, err)
		}
		wantS := []string{"commit_ms", "destination_load_ms", "device_state_ms", "inactivate_ms", "last_pages_ms", "stop_ms"}
		if got := sortedKeys(xm); strings.Join(got, ",") != strings.Join(wantS, ",") {
			t.Errorf("%s: downtime_steps fields %v, want %v", what, got, wantS)
		}
	}
	if string(m["ram"]) == "null" {
		return
	}
	var ram map[string]json.RawMessage
	if err := json.Unmarshal(m["ram"], &ram); err != nil {
		t.Fatalf("%s: ram: %v", what, err)
	}
	wantRAM := []string{"dirty_pages_rate", "dirty_sync_count", "duplicate", "mbps", "normal", "normal_bytes",
		"pages_per_second", "remaining", "total", "transferred"}
	if got := sortedKeys(ram); strings.Join(got, ",") != strings.Join(wantRAM, ",") {
		t.Errorf("%s: ram fields %v, want %v", what, got, wantRAM)
	}
}

func sortedStrings(s []string) []string {
	m := map[string]bool{}
	for _, k := range s {
		m[k] = true
	}
	return sortedKeys(m)
}

func TestStatusTableGolden(t *testing.T) {
	fx := fixtures(t)
	for _, name := range []string{"none", "active", "completed", "failed"} {
		var b bytes.Buffer
		if err := writeStatusTable(&b, fx[name]); err != nil {
			t.Fatal(err)
		}
		golden(t, "migrate-status-"+name+".golden", b.String())
	}
}

func TestProgressGolden(t *testing.T) {
	fx := fixtures(t)
	seq := []migrateStatus{fx["none"], fx["setup"], fx["active"], fx["completed"]}
	var lines, bar bytes.Buffer
	lr := &lineReporter{w: &lines}
	br := &barReporter{w: &bar, width: 200}
	for _, s := range seq {
		if err := lr.update(s); err != nil {
			t.Fatal(err)
		}
		if err := br.update(s); err != nil {
			t.Fatal(err)
		}
	}
	_ = lr.finish(fx["completed"])
	_ = br.finish(fx["completed"])
	_ = lr.finish(fx["failed"])
	golden(t, "progress-lines.golden", lines.String())
	// The escape and carriage return are made visible so the golden file
	// reads as text.
	golden(t, "progress-bar.golden", strings.NewReplacer("\r", "<CR>", "\x1b[K", "<EL>").Replace(bar.String()))

	for _, l := range strings.Split(strings.TrimSpace(lines.String()), "\n") {
		if !progressLineRE().MatchString(l) && !summaryLineRE().MatchString(l) {
			t.Errorf("line %q does not match the documented format", l)
		}
	}
}

func TestBarFitsTerminal(t *testing.T) {
	var b bytes.Buffer
	r := &barReporter{w: &b, width: 40}
	if err := r.update(fixtures(t)["active"]); err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSuffix(strings.TrimPrefix(b.String(), "\r"), "\x1b[K")
	if len(line) != 39 {
		t.Errorf("bar on a 40-column terminal is %d columns: %q", len(line), line)
	}
	// An interrupted bar must leave the cursor on a fresh line, once.
	r.abort()
	r.abort()
	if !strings.HasSuffix(b.String(), "\x1b[K\n") || strings.HasSuffix(b.String(), "\n\n") {
		t.Errorf("abort output %q", b.String())
	}
}

func TestSummaryText(t *testing.T) {
	fx := fixtures(t)
	for name, want := range map[string]string{
		"completed": "Migration completed in 2809 ms: downtime 1 ms, 444.4 KiB transferred, 3 passes.",
		"cancelled": "Migration cancelled.",
		"active":    "Migration active after 1010 ms: 128.6 KiB transferred, 1 pass.",
	} {
		if got := summaryText(fx[name]); got != want {
			t.Errorf("summaryText(%s) = %q, want %q", name, got, want)
		}
	}
}

// knownSettings mimics a server's capability and parameter lists.
func knownSettings() migrationSettings {
	return migrationSettings{
		caps: map[string]bool{"events": false, "xbzrle": true},
		params: map[string]json.RawMessage{
			"downtime-limit": json.RawMessage(`300`), "max-bandwidth": json.RawMessage(`134217728`),
			"tls-creds": json.RawMessage(`""`), "block-incremental": json.RawMessage(`false`),
			"block-bitmap-mapping": json.RawMessage(`[]`),
		},
	}
}

func TestParseSettings(t *testing.T) {
	ch, err := parseSettings(knownSettings(), []string{"downtime-limit=100", "max-bandwidth=1G", "events=on",
		"xbzrle=off", "tls-creds=tls0", "block-incremental=yes"})
	if err != nil {
		t.Fatal(err)
	}
	if ch.params["downtime-limit"] != uint64(100) || ch.params["max-bandwidth"] != uint64(1<<30) ||
		ch.params["tls-creds"] != "tls0" || ch.params["block-incremental"] != true ||
		!ch.caps["events"] || ch.caps["xbzrle"] || len(ch.caps) != 2 || len(ch.params) != 4 {
		t.Errorf("parsed %+v", ch)
	}
	if strings.Join(ch.names, " ") != "downtime-limit max-bandwidth events xbzrle tls-creds block-incremental" {
		t.Errorf("names %v", ch.names)
	}
	for _, tc := range []struct{ arg, want string }{
		{"nosuch=1", `unknown migration setting "nosuch"`},
		{"nosuch=1", "capabilities: events, xbzrle"},
		{"nosuch=1", "parameters: block-bitmap-mapping, block-incremental, downtime-limit, max-bandwidth, tls-creds"},
		{"events", "want NAME=VALUE"},
		{"=1", "want NAME=VALUE"},
		{"events=maybe", "capability events: invalid state"},
		{"downtime-limit=1G", "parameter downtime-limit: invalid value"},
		{"downtime-limit=-5", "parameter downtime-limit: invalid value"},
		{"max-bandwidth=lots", "parameter max-bandwidth: invalid size"},
		{"block-bitmap-mapping=x", "cannot be set here"},
	} {
		_, err := parseSettings(knownSettings(), []string{tc.arg})
		var ue *usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseSettings(%q) = %v, want a usage error containing %q", tc.arg, err, tc.want)
		}
	}
	if _, err := parseSettings(knownSettings(), []string{"events=on", "events=off"}); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("duplicate setting: %v", err)
	}
}

func TestSettingsGolden(t *testing.T) {
	var b bytes.Buffer
	o := &options{stdout: &b, output: "table"}
	if err := writeSettings(o, knownSettings(), nil); err != nil {
		t.Fatal(err)
	}
	golden(t, "migrate-set-all.golden", b.String())
	b.Reset()
	o.output = "json"
	if err := writeSettings(o, knownSettings(), []string{"events", "max-bandwidth"}); err != nil {
		t.Fatal(err)
	}
	want := `{
  "capabilities": {
    "events": false
  },
  "parameters": {
    "max-bandwidth": 134217728
  }
}
`
	if b.String() != want {
		t.Errorf("migrate-set -o json:\n%s\nwant:\n%s", b.String(), want)
	}
}

// progressLineRE and summaryLineRE are the documented line formats
// (progressLineHelp); tests hold the output to them.
func progressLineRE() *regexp.Regexp {
	return regexp.MustCompile(`^progress status=[a-z-]+ total_time_ms=(-|\d+) percent=(-|\d+\.\d) transferred=(-|\d+) remaining=(-|\d+) total=(-|\d+) mbps=(-|\d+\.\d) pass=(-|\d+) expected_downtime_ms=(-|\d+)$`)
}

func summaryLineRE() *regexp.Regexp {
	return regexp.MustCompile(`^summary status=([a-z-]+) total_time_ms=(-|\d+) downtime_ms=(-|\d+) transferred=(-|\d+) passes=(-|\d+) error_desc=(".*")$`)
}

// query-migrate's xbzrle-cache comes through under vmmctl's names, and the
// table shows it; a server without it (QEMU with xbzrle off) gives null.
func TestStatusXBZRLE(t *testing.T) {
	var in qmpMigrationInfo
	raw := `{"status":"completed","ram":{"total":4096},"xbzrle-cache":{"cache-size":67108864,"bytes":2400,"pages":100,"cache-miss":25,"cache-miss-rate":0.2,"overflow":3}}`
	if err := json.Unmarshal([]byte(raw), &in); err != nil {
		t.Fatal(err)
	}
	s := fromQMP(in)
	if s.XBZRLE == nil || *s.XBZRLE != (xbzrleStatus{CacheSize: 64 << 20, Bytes: 2400, Pages: 100, CacheMiss: 25, CacheMissRate: 0.2, Overflow: 3}) {
		t.Fatalf("xbzrle = %+v", s.XBZRLE)
	}
	var b strings.Builder
	if err := writeStatusTable(&b, s); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Delta pages:", "100 (2.3 KiB)", "25 (20.0%), 3 too changed"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
	if s := fromQMP(qmpMigrationInfo{Status: "active"}); s.XBZRLE != nil {
		t.Errorf("no xbzrle-cache from the server, but %+v", s.XBZRLE)
	}
}

// query-migrate's x-vmmd-downtime-steps comes through under vmmctl's
// names and in the table; QEMU (which has no such member) gives null.
func TestStatusDowntimeSteps(t *testing.T) {
	var in qmpMigrationInfo
	raw := `{"status":"completed","downtime":2,"x-vmmd-downtime-steps":{"stop":0.12,"inactivate":0.015,"last-pages":0.06,"device-state":0.31,"destination-load":0.52,"commit":0.01}}`
	if err := json.Unmarshal([]byte(raw), &in); err != nil {
		t.Fatal(err)
	}
	s := fromQMP(in)
	want := stepsStatus{Stop: 0.12, Inactivate: 0.015, LastPages: 0.06, DeviceState: 0.31, DestinationLoad: 0.52, Commit: 0.01}
	if s.DowntimeSteps == nil || *s.DowntimeSteps != want {
		t.Fatalf("downtime steps = %+v, want %+v", s.DowntimeSteps, want)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	assertStatusKeys(t, "with downtime steps", b)
	var tb strings.Builder
	if err := writeStatusTable(&tb, s); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"Downtime steps:", "stop 0.120, inactivate 0.015, last pages 0.060, device state 0.310, destination load 0.520, commit 0.010 ms"} {
		if !strings.Contains(tb.String(), w) {
			t.Errorf("table lacks %q:\n%s", w, tb.String())
		}
	}
	if s := fromQMP(qmpMigrationInfo{Status: "completed"}); s.DowntimeSteps != nil {
		t.Errorf("no steps from the server, but %+v", s.DowntimeSteps)
	}
}
