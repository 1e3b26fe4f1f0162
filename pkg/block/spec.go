package block

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// DefaultTimeout bounds every backend operation of a drive whose spec sets
// no timeout. A hung storage server turns into an I/O error after this long.
const DefaultTimeout = 5 * time.Second

// maxTimeout keeps a typo such as timeout=5000 (seconds) from meaning
// "never time out" in practice.
const maxTimeout = time.Hour

// Format is the image format. Only raw exists.
type Format string

// FormatRaw is a plain image: guest sector N is at byte N*512 of the file or
// export.
const FormatRaw Format = "raw"

// CacheMode selects the host page cache behaviour of a drive.
type CacheMode string

// The cache modes. Both report a write cache to the guest and honour its
// flushes; they differ in whether the host page cache is used.
const (
	// CacheWriteback uses the host page cache; flush is fdatasync.
	CacheWriteback CacheMode = "writeback"
	// CacheNone bypasses the host page cache (O_DIRECT); flush is
	// still fdatasync, for the disk's own cache. For NBD it changes nothing.
	CacheNone CacheMode = "none"
)

// DriveSpec is one --drive option, parsed.
type DriveSpec struct {
	// ID names the drive (QMP "device", errors, logs). Required.
	ID string
	// File is a path, or an NBD URI (nbd://HOST[:PORT]/EXPORT or
	// nbd+unix:///EXPORT?socket=PATH). A file whose name starts with
	// "nbd" and a colon must be written as ./nbd:...
	File string
	// Format is always FormatRaw.
	Format Format
	// Cache is CacheWriteback (default) or CacheNone.
	Cache CacheMode
	// ReadOnly opens the image read-only and refuses guest writes.
	ReadOnly bool
	// WError is the action on a failed write or flush. The default is
	// ActionReport; QEMU's default, enospc, does not exist here.
	WError Action
	// RError is the action on a failed read; default ActionReport.
	RError Action
	// Timeout bounds each backend operation; 0 means DefaultTimeout.
	// Written timeout=5s (a Go duration, or whole seconds). A vmmd
	// extension; QEMU has no such option.
	Timeout time.Duration
}

// IsNBD reports whether the drive's file is an NBD URI.
func (s DriveSpec) IsNBD() bool { return isNBDURI(s.File) }

// IOTimeout returns the timeout for each backend operation.
func (s DriveSpec) IOTimeout() time.Duration {
	if s.Timeout <= 0 {
		return DefaultTimeout
	}
	return s.Timeout
}

// ParseDriveSpec parses the value of a --drive option:
//
//	file=PATH|nbd-URI,id=NAME[,format=raw][,cache=writeback|none][,readonly=on|off]
//	[,werror=report|stop|ignore][,rerror=report|stop|ignore][,timeout=DURATION]
//
// As in QEMU, ",," stands for a comma inside a value. Errors name the bad
// option and start with "--drive: ".
func ParseDriveSpec(s string) (DriveSpec, error) {
	spec, err := parseDriveSpec(s)
	if err != nil {
		return DriveSpec{}, fmt.Errorf("--drive: %w", err)
	}
	return spec, nil
}

func parseDriveSpec(s string) (DriveSpec, error) {
	opts, err := splitOptions(s)
	if err != nil {
		return DriveSpec{}, err
	}
	spec := DriveSpec{Format: FormatRaw, Cache: CacheWriteback, WError: ActionReport, RError: ActionReport}
	seen := make(map[string]bool, len(opts))
	var haveFile, haveID bool
	for _, o := range opts {
		if seen[o.key] {
			return DriveSpec{}, fmt.Errorf("option '%s' given twice", o.key)
		}
		seen[o.key] = true
		switch o.key {
		case "file":
			if err := checkFile(o.value); err != nil {
				return DriveSpec{}, err
			}
			spec.File, haveFile = o.value, true
		case "id":
			if err := checkID(o.value); err != nil {
				return DriveSpec{}, err
			}
			spec.ID, haveID = o.value, true
		case "format":
			if o.value != string(FormatRaw) {
				return DriveSpec{}, fmt.Errorf("format=%s is not supported: only raw", o.value)
			}
		case "cache":
			switch c := CacheMode(o.value); c {
			case CacheWriteback, CacheNone:
				spec.Cache = c
			default:
				return DriveSpec{}, fmt.Errorf("cache=%s is not supported: use writeback or none", o.value)
			}
		case "readonly":
			switch o.value {
			case "on":
				spec.ReadOnly = true
			case "off":
				spec.ReadOnly = false
			default:
				return DriveSpec{}, fmt.Errorf("readonly=%s is not valid: use on or off", o.value)
			}
		case "werror", "rerror":
			a, err := ParseAction(o.value)
			if err != nil {
				return DriveSpec{}, fmt.Errorf("%s=%s: %w", o.key, o.value, err)
			}
			if o.key == "werror" {
				spec.WError = a
			} else {
				spec.RError = a
			}
		case "timeout":
			d, err := parseTimeout(o.value)
			if err != nil {
				return DriveSpec{}, err
			}
			spec.Timeout = d
		default:
			return DriveSpec{}, fmt.Errorf("unknown option '%s'", o.key)
		}
	}
	if !haveFile {
		return DriveSpec{}, errors.New("file is required")
	}
	if !haveID {
		return DriveSpec{}, errors.New("id is required")
	}
	return spec, nil
}

// String renders the spec in --drive syntax; ParseDriveSpec of the result
// gives the same spec back.
func (s DriveSpec) String() string {
	var b strings.Builder
	b.WriteString("file=")
	b.WriteString(strings.ReplaceAll(s.File, ",", ",,"))
	b.WriteString(",id=")
	b.WriteString(s.ID)
	if s.Format != "" {
		b.WriteString(",format=" + string(s.Format))
	}
	if s.Cache != "" {
		b.WriteString(",cache=" + string(s.Cache))
	}
	if s.ReadOnly {
		b.WriteString(",readonly=on")
	} else {
		b.WriteString(",readonly=off")
	}
	if s.WError != "" {
		b.WriteString(",werror=" + string(s.WError))
	}
	if s.RError != "" {
		b.WriteString(",rerror=" + string(s.RError))
	}
	if s.Timeout != 0 {
		b.WriteString(",timeout=" + s.Timeout.String())
	}
	return b.String()
}

type option struct{ key, value string }

// splitOptions splits QEMU-style key=value,key=value text; ",," is a
// literal comma in a value. A single trailing comma is accepted, as QEMU does.
func splitOptions(s string) ([]option, error) {
	if s == "" {
		return nil, errors.New("empty drive description: need at least file=...,id=...")
	}
	var opts []option
	for i := 0; i < len(s); {
		eq := strings.IndexAny(s[i:], "=,")
		if eq < 0 || s[i+eq] == ',' {
			key := s[i:]
			if eq >= 0 {
				key = s[i : i+eq]
			}
			if key == "" {
				return nil, fmt.Errorf("empty option at byte %d", i)
			}
			return nil, fmt.Errorf("option '%s' needs a value (%s=...)", key, key)
		}
		key := s[i : i+eq]
		if key == "" {
			return nil, fmt.Errorf("option with an empty name at byte %d", i)
		}
		i += eq + 1
		var v strings.Builder
		for i < len(s) {
			if s[i] == ',' {
				if i+1 < len(s) && s[i+1] == ',' {
					v.WriteByte(',')
					i += 2
					continue
				}
				i++
				break
			}
			v.WriteByte(s[i])
			i++
		}
		opts = append(opts, option{key: key, value: v.String()})
	}
	return opts, nil
}

// checkID applies QEMU's id_wellformed rule, which also keeps ids usable in
// QMP and log fields.
func checkID(id string) error {
	if id == "" {
		return errors.New("id is empty")
	}
	for i, c := range id {
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		ok := letter || i > 0 && (c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_')
		if !ok {
			return fmt.Errorf("id %q is not well formed: it must start with a letter and contain only letters, digits, '-', '.' and '_'", id)
		}
	}
	return nil
}

func checkFile(f string) error {
	if f == "" {
		return errors.New("file is empty")
	}
	if strings.IndexByte(f, 0) >= 0 {
		return errors.New("file contains a NUL byte")
	}
	if isNBDURI(f) {
		if _, err := ParseNBDURI(f); err != nil {
			return fmt.Errorf("file=%s: %w", f, err)
		}
	}
	return nil
}

func parseTimeout(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		n, nerr := strconv.ParseUint(v, 10, 32)
		if nerr != nil {
			return 0, fmt.Errorf("timeout=%s is not valid: use a duration such as 5s or 500ms", v)
		}
		d = time.Duration(n) * time.Second
	}
	if d <= 0 || d > maxTimeout {
		return 0, fmt.Errorf("timeout=%s is out of range: use more than 0 and at most %s", v, maxTimeout)
	}
	return d, nil
}

// Normalize fills in defaults for unset fields of a spec built in code and
// checks every field, so OpenDrive accepts exactly what ParseDriveSpec could
// have produced.
func (s DriveSpec) Normalize() (DriveSpec, error) {
	if s.Format == "" {
		s.Format = FormatRaw
	}
	if s.Cache == "" {
		s.Cache = CacheWriteback
	}
	if s.WError == "" {
		s.WError = ActionReport
	}
	if s.RError == "" {
		s.RError = ActionReport
	}
	if err := checkID(s.ID); err != nil {
		return DriveSpec{}, err
	}
	if err := checkFile(s.File); err != nil {
		return DriveSpec{}, err
	}
	if s.Format != FormatRaw {
		return DriveSpec{}, fmt.Errorf("format=%s is not supported: only raw", s.Format)
	}
	if s.Cache != CacheWriteback && s.Cache != CacheNone {
		return DriveSpec{}, fmt.Errorf("cache=%s is not supported: use writeback or none", s.Cache)
	}
	for _, a := range []struct {
		key string
		v   Action
	}{{"werror", s.WError}, {"rerror", s.RError}} {
		if _, err := ParseAction(string(a.v)); err != nil {
			return DriveSpec{}, fmt.Errorf("%s=%s: %w", a.key, a.v, err)
		}
	}
	if s.Timeout < 0 || s.Timeout > maxTimeout {
		return DriveSpec{}, fmt.Errorf("timeout %s is out of range: use 0 (default) to %s", s.Timeout, maxTimeout)
	}
	return s, nil
}
