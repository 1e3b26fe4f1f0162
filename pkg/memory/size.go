package memory

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseSize parses a memory size as operators write it: a number with an
// optional K, M, G or T suffix (binary units, optional trailing "iB" or "B").
// A bare number is taken as MiB, as QEMU's -m does.
func ParseSize(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("memory size is empty: write it like 512M or 2G")
	}
	upper := strings.ToUpper(t)
	upper = strings.TrimSuffix(upper, "IB")
	upper = strings.TrimSuffix(upper, "B")
	shift := uint(20)
	if n := len(upper); n > 0 {
		switch upper[n-1] {
		case 'K':
			shift, upper = 10, upper[:n-1]
		case 'M':
			shift, upper = 20, upper[:n-1]
		case 'G':
			shift, upper = 30, upper[:n-1]
		case 'T':
			shift, upper = 40, upper[:n-1]
		}
	}
	v, err := strconv.ParseUint(upper, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("memory size %q is not a number with an optional K/M/G/T suffix (like 512M or 2G)", s)
	}
	if v > (^uint64(0))>>shift {
		return 0, fmt.Errorf("memory size %q overflows 64 bits", s)
	}
	return v << shift, nil
}

// FormatSize renders a byte count in the largest binary unit that divides
// it exactly, so that errors echo sizes the way the operator wrote them.
func FormatSize(n uint64) string {
	units := []struct {
		shift uint
		name  string
	}{{40, "TiB"}, {30, "GiB"}, {20, "MiB"}, {10, "KiB"}}
	for _, u := range units {
		if n >= 1<<u.shift && n%(1<<u.shift) == 0 {
			return fmt.Sprintf("%d %s", n>>u.shift, u.name)
		}
	}
	return fmt.Sprintf("%d bytes", n)
}
