package block

import (
	"strings"
	"testing"
	"time"
)

func TestParseDriveSpec(t *testing.T) {
	def := func(mod func(*DriveSpec)) DriveSpec {
		s := DriveSpec{ID: "disk0", File: "/img/a.raw", Format: FormatRaw, Cache: CacheWriteback, WError: ActionReport, RError: ActionReport}
		mod(&s)
		return s
	}
	tests := []struct {
		in   string
		want DriveSpec
	}{
		{"file=/img/a.raw,id=disk0", def(func(*DriveSpec) {})},
		{"id=disk0,file=/img/a.raw,", def(func(*DriveSpec) {})},
		{"file=/img/a.raw,id=disk0,format=raw,cache=none,readonly=on,werror=stop,rerror=ignore",
			def(func(s *DriveSpec) {
				s.Cache, s.ReadOnly, s.WError, s.RError = CacheNone, true, ActionStop, ActionIgnore
			})},
		{"file=/img/a.raw,id=disk0,readonly=off,cache=writeback", def(func(*DriveSpec) {})},
		{"file=/img/a,,b.raw,id=disk0", def(func(s *DriveSpec) { s.File = "/img/a,b.raw" })},
		{"file=/img/a,,,,b,id=disk0", def(func(s *DriveSpec) { s.File = "/img/a,,b" })},
		{"file=/img/x=y.raw,id=disk0", def(func(s *DriveSpec) { s.File = "/img/x=y.raw" })},
		{"file=nbd://example.org:10810/exp,id=disk0", def(func(s *DriveSpec) { s.File = "nbd://example.org:10810/exp" })},
		{"file=nbd+unix:///exp?socket=/run/nbd.sock,id=disk0", def(func(s *DriveSpec) { s.File = "nbd+unix:///exp?socket=/run/nbd.sock" })},
		{"file=/img/a.raw,id=disk0,timeout=250ms", def(func(s *DriveSpec) { s.Timeout = 250 * time.Millisecond })},
		{"file=/img/a.raw,id=disk0,timeout=7", def(func(s *DriveSpec) { s.Timeout = 7 * time.Second })},
		{"file=/img/a.raw,id=d-1.x_y", def(func(s *DriveSpec) { s.ID = "d-1.x_y" })},
	}
	for _, tt := range tests {
		got, err := ParseDriveSpec(tt.in)
		if err != nil {
			t.Errorf("ParseDriveSpec(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseDriveSpec(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
		again, err := ParseDriveSpec(got.String())
		if err != nil || again != got {
			t.Errorf("round trip of %q via %q = %+v, %v", tt.in, got.String(), again, err)
		}
	}
}

func TestParseDriveSpecErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "--drive: empty drive description"},
		{"file=/a,id=d,foo=1", "--drive: unknown option 'foo'"},
		{"file=/a", "--drive: id is required"},
		{"id=d", "--drive: file is required"},
		{"file=/a,id=d,format=qcow2", "--drive: format=qcow2 is not supported: only raw"},
		{"file=/a,id=d,cache=unsafe", "--drive: cache=unsafe is not supported: use writeback or none"},
		{"file=/a,id=d,readonly=yes", "--drive: readonly=yes is not valid: use on or off"},
		{"file=/a,id=d,werror=enospc", `--drive: werror=enospc: "enospc" is not supported (vmmd has no enospc action)`},
		{"file=/a,id=d,rerror=explode", `--drive: rerror=explode: "explode" is not valid: use report, stop or ignore`},
		{"file=/a,id=d,id=e", "--drive: option 'id' given twice"},
		{"file=/a,id=9d", `--drive: id "9d" is not well formed`},
		{"file=/a,id=d d", `--drive: id "d d" is not well formed`},
		{"file=/a,id=", "--drive: id is empty"},
		{"file=,id=d", "--drive: file is empty"},
		{"file=/a,id=d,readonly", "--drive: option 'readonly' needs a value (readonly=...)"},
		{",file=/a,id=d", "--drive: empty option at byte 0"},
		{"=x,file=/a,id=d", "--drive: option with an empty name at byte 0"},
		{"file=/a,id=d,timeout=soon", "--drive: timeout=soon is not valid"},
		{"file=/a,id=d,timeout=0", "--drive: timeout=0 is out of range"},
		{"file=/a,id=d,timeout=-1s", "--drive: timeout=-1s is out of range"},
		{"file=nbd://h:99999/x,id=d", `--drive: file=nbd://h:99999/x: port "99999" is not a number from 1 to 65535`},
		{"file=nbds://h/x,id=d", "TLS (nbds://) is not supported"},
		{"file=nbd:localhost:10809,id=d", "the legacy nbd: syntax is not supported"},
		{"file=/a\x00b,id=d", "--drive: file contains a NUL byte"},
	}
	for _, tt := range tests {
		_, err := ParseDriveSpec(tt.in)
		if err == nil {
			t.Errorf("ParseDriveSpec(%q) succeeded, want error %q", tt.in, tt.want)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseDriveSpec(%q) error = %q, want it to contain %q", tt.in, err, tt.want)
		}
		if !strings.HasPrefix(err.Error(), "--drive: ") {
			t.Errorf("ParseDriveSpec(%q) error %q does not start with --drive:", tt.in, err)
		}
	}
}

func TestDriveSpecNormalize(t *testing.T) {
	s, err := DriveSpec{ID: "d", File: "/x"}.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	if s.Format != FormatRaw || s.Cache != CacheWriteback || s.WError != ActionReport || s.RError != ActionReport {
		t.Fatalf("defaults not filled in: %+v", s)
	}
	if s.IOTimeout() != DefaultTimeout {
		t.Fatalf("IOTimeout = %s, want %s", s.IOTimeout(), DefaultTimeout)
	}
	for _, bad := range []DriveSpec{
		{ID: "d", File: "/x", WError: "enospc"},
		{ID: "d", File: "/x", Cache: "directsync"},
		{ID: "d", File: "/x", Format: "qcow2"},
		{ID: "", File: "/x"},
		{ID: "d", File: "nbd+unix:///e"},
		{ID: "d", File: "/x", Timeout: -time.Second},
	} {
		if _, err := bad.Normalize(); err == nil {
			t.Errorf("Normalize(%+v) succeeded", bad)
		}
	}
}

func FuzzParseDriveSpec(f *testing.F) {
	for _, s := range []string{
		"file=/img/a.raw,id=disk0",
		"file=/a,,b,id=d,cache=none,readonly=on,werror=stop,rerror=ignore,timeout=1s",
		"file=nbd://h:1/e,id=d",
		"file=nbd+unix:///e?socket=/s,id=d",
		"file=a,id=d,,",
		",,,=",
		"file=nbd://[::1]:5/x%2Fy,id=q",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		spec, err := ParseDriveSpec(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "--drive: ") {
				t.Fatalf("error %q lacks the --drive: prefix", err)
			}
			return
		}
		if spec.ID == "" || spec.File == "" {
			t.Fatalf("accepted %q without id or file: %+v", s, spec)
		}
		again, err := ParseDriveSpec(spec.String())
		if err != nil {
			t.Fatalf("String() of %q = %q does not parse: %v", s, spec.String(), err)
		}
		if again != spec {
			t.Fatalf("round trip of %q: %+v != %+v", s, again, spec)
		}
		if _, err := spec.Normalize(); err != nil {
			t.Fatalf("parsed spec %+v does not normalize: %v", spec, err)
		}
	})
}
