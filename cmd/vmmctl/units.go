package main

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// sizePattern matches a byte count with an optional binary suffix, as
// QEMU's size parser accepts them (K = 1024, not 1000): 512K, 100M, 1G, 1GiB.
func sizePattern() *regexp.Regexp {
	return regexp.MustCompile(`^([0-9]+)\s*(?:([kmgt])(?:i?b)?|b)?$`)
}

// parseSize reads a byte count such as "1048576", "512K", "100M", "1G" or
// "1GiB". Suffixes are binary and case-insensitive.
func parseSize(s string) (uint64, error) {
	m := sizePattern().FindStringSubmatch(strings.ToLower(strings.TrimSpace(s)))
	if m == nil {
		return 0, fmt.Errorf("invalid size %q: want a byte count such as 1048576, 512K, 100M or 1G", s)
	}
	v, err := strconv.ParseUint(m[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q: %w", s, err)
	}
	shift := map[string]uint{"": 0, "k": 10, "m": 20, "g": 30, "t": 40}[m[2]]
	if v > math.MaxUint64>>shift {
		return 0, fmt.Errorf("invalid size %q: larger than 2^64 bytes", s)
	}
	return v << shift, nil
}

// formatBytes renders a byte count with a binary unit and one decimal.
func formatBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatUint(n, 10) + " B"
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// parseOnOff reads a capability state: on/off, true/false, yes/no, 1/0.
func parseOnOff(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "on", "true", "yes", "1":
		return true, nil
	case "off", "false", "no", "0":
		return false, nil
	}
	return false, fmt.Errorf("invalid state %q: want on or off", s)
}
