package measure

import (
	"bufio"
	"bytes"
	"cmp"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Mapping is one virtual memory area of /proc/PID/smaps, reduced to the
// fields the benchmark uses. Sizes are in KiB, as the kernel reports them.
type Mapping struct {
	Start   uint64 `json:"start"`
	End     uint64 `json:"end"`
	Perms   string `json:"perms"`
	Path    string `json:"path,omitempty"`
	SizeKiB uint64 `json:"size_kib"`
	RSSKiB  uint64 `json:"rss_kib"`
	PSSKiB  uint64 `json:"pss_kib"`
}

// Usage is a VMM's memory use split into guest RAM and everything else.
type Usage struct {
	TotalRSSKiB    uint64 `json:"total_rss_kib"`
	TotalPSSKiB    uint64 `json:"total_pss_kib"`
	GuestRAMRSSKiB uint64 `json:"guest_ram_rss_kib"`
	// GuestRAMMappings counts the mappings taken for guest RAM (normally 1).
	GuestRAMMappings int `json:"guest_ram_mappings"`
	// OverheadKiB is TotalRSSKiB minus GuestRAMRSSKiB: what the VMM costs
	// beyond the memory the guest touched.
	OverheadKiB uint64 `json:"overhead_kib"`
}

// NoGuestRAMError reports that no mapping looked like the guest RAM, which
// would make an overhead figure meaningless.
type NoGuestRAMError struct {
	WantKiB uint64
	// Largest lists the largest writable anonymous mappings that were seen.
	Largest []Mapping
}

// Error describes the size looked for and what was found instead.
func (e *NoGuestRAMError) Error() string {
	var seen []string
	for _, m := range e.Largest {
		seen = append(seen, fmt.Sprintf("%x-%x %s %d kB", m.Start, m.End, m.Perms, m.SizeKiB))
	}
	if len(seen) == 0 {
		seen = append(seen, "none")
	}
	return fmt.Sprintf("no writable anonymous mapping of exactly %d kB (the guest RAM size) in smaps; largest writable anonymous mappings: %s",
		e.WantKiB, strings.Join(seen, ", "))
}

// ReadSmaps reads and parses /proc/PID/smaps.
func ReadSmaps(pid int) ([]Mapping, error) {
	path := fmt.Sprintf("/proc/%d/smaps", pid)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	maps, err := ParseSmaps(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	return maps, nil
}

// ParseSmaps parses smaps text (see proc(5)). It keeps Size, Rss and Pss of
// every mapping and rejects text whose mappings lack them or whose Size
// disagrees with the address range, since figures from such text cannot be
// trusted.
func ParseSmaps(r io.Reader) ([]Mapping, error) {
	var (
		maps    []Mapping
		cur     *Mapping
		seen    map[string]bool
		lineNum int
	)
	finish := func() error {
		if cur == nil {
			return nil
		}
		for _, k := range []string{"Size", "Rss", "Pss"} {
			if !seen[k] {
				return fmt.Errorf("mapping %x-%x: no %s line", cur.Start, cur.End, k)
			}
		}
		if cur.SizeKiB*1024 != cur.End-cur.Start {
			return fmt.Errorf("mapping %x-%x: Size %d kB does not match the address range (%d bytes)",
				cur.Start, cur.End, cur.SizeKiB, cur.End-cur.Start)
		}
		maps = append(maps, *cur)
		return nil
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		lineNum++
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if !strings.HasSuffix(fields[0], ":") {
			if err := finish(); err != nil {
				return nil, err
			}
			m, err := parseHeader(line)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", lineNum, err)
			}
			cur, seen = &m, map[string]bool{}
			continue
		}
		key := strings.TrimSuffix(fields[0], ":")
		if key != "Size" && key != "Rss" && key != "Pss" {
			continue
		}
		if cur == nil {
			return nil, fmt.Errorf("line %d: %s line before any mapping header", lineNum, key)
		}
		if len(fields) != 3 || fields[2] != "kB" {
			return nil, fmt.Errorf("line %d: malformed %s line %q (want \"%s: N kB\")", lineNum, key, line, key)
		}
		v, err := strconv.ParseUint(fields[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("line %d: %s value %q: %w", lineNum, key, fields[1], err)
		}
		switch key {
		case "Size":
			cur.SizeKiB = v
		case "Rss":
			cur.RSSKiB = v
		case "Pss":
			cur.PSSKiB = v
		}
		seen[key] = true
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read smaps: %w", err)
	}
	if err := finish(); err != nil {
		return nil, err
	}
	if len(maps) == 0 {
		return nil, fmt.Errorf("no mappings in smaps text")
	}
	return maps, nil
}

// parseHeader parses "start-end perms offset dev inode [path]". The path is
// the rest of the line and may contain spaces.
func parseHeader(line string) (Mapping, error) {
	rest := line
	var f [5]string
	for i := range f {
		rest = strings.TrimLeft(rest, " \t")
		j := strings.IndexAny(rest, " \t")
		if j < 0 {
			j = len(rest)
		}
		f[i], rest = rest[:j], rest[j:]
	}
	if f[4] == "" {
		return Mapping{}, fmt.Errorf("malformed mapping header %q", line)
	}
	lo, hi, ok := strings.Cut(f[0], "-")
	if !ok {
		return Mapping{}, fmt.Errorf("malformed address range %q in %q", f[0], line)
	}
	start, err := strconv.ParseUint(lo, 16, 64)
	if err != nil {
		return Mapping{}, fmt.Errorf("mapping start %q: %w", lo, err)
	}
	end, err := strconv.ParseUint(hi, 16, 64)
	if err != nil {
		return Mapping{}, fmt.Errorf("mapping end %q: %w", hi, err)
	}
	if end <= start {
		return Mapping{}, fmt.Errorf("mapping %q ends before it starts", f[0])
	}
	if len(f[1]) != 4 {
		return Mapping{}, fmt.Errorf("malformed permissions %q in %q", f[1], line)
	}
	return Mapping{Start: start, End: end, Perms: f[1], Path: strings.TrimSpace(rest)}, nil
}

// anonymous reports whether m is backed by no file. Named anonymous memory
// ("[anon:...]", PR_SET_VMA_ANON_NAME) and memfd memory ("/memfd:...", how
// VMMs share guest RAM) count; heap and stack never reach guest RAM sizes.
func (m Mapping) anonymous() bool {
	return m.Path == "" || strings.HasPrefix(m.Path, "[anon:") || strings.HasPrefix(m.Path, "/memfd:")
}

// GuestRAMUsage totals maps and splits off the guest RAM: every readable,
// writable anonymous mapping whose size is exactly ramBytes. It returns a
// *NoGuestRAMError when there is none.
func GuestRAMUsage(maps []Mapping, ramBytes uint64) (Usage, error) {
	if ramBytes == 0 || ramBytes%1024 != 0 {
		return Usage{}, fmt.Errorf("guest RAM size %d bytes is not a positive multiple of 1 KiB", ramBytes)
	}
	want := ramBytes / 1024
	var u Usage
	var anon []Mapping
	for _, m := range maps {
		u.TotalRSSKiB += m.RSSKiB
		u.TotalPSSKiB += m.PSSKiB
		if !m.anonymous() || !strings.HasPrefix(m.Perms, "rw") {
			continue
		}
		anon = append(anon, m)
		if m.SizeKiB == want {
			u.GuestRAMRSSKiB += m.RSSKiB
			u.GuestRAMMappings++
		}
	}
	if u.GuestRAMMappings == 0 {
		slices.SortFunc(anon, func(a, b Mapping) int { return cmp.Compare(b.SizeKiB, a.SizeKiB) })
		return Usage{}, &NoGuestRAMError{WantKiB: want, Largest: anon[:min(3, len(anon))]}
	}
	u.OverheadKiB = u.TotalRSSKiB - u.GuestRAMRSSKiB
	return u, nil
}
