package migrate

import (
	"fmt"
	"time"
)

// Parameters are the tunables of migrate-set-parameters. The QEMU names
// keep QEMU's units; the x- ones are vmmd's and say what QEMU lacks.
type Parameters struct {
	// DowntimeLimit is the longest the guest may stay stopped at switchover,
	// in milliseconds. Pre-copy iterates until the expected downtime fits.
	DowntimeLimit uint64 `json:"downtime-limit"`
	// MaxBandwidth caps the pre-copy rate in bytes per second (QEMU's default
	// 128 MiB/s). 0 means unlimited. The final pass is never limited: the
	// guest is stopped then, and a cap would only lengthen the downtime.
	MaxBandwidth uint64 `json:"max-bandwidth"`
	// InactivateTimeout bounds, in milliseconds, how long the source waits
	// for its disks to flush and let go at switchover. A hung storage server
	// fails the migration (and the source resumes) instead of hanging it.
	InactivateTimeout uint64 `json:"x-inactivate-timeout"`
	// HandoverTimeout bounds, in milliseconds, how long the source waits for
	// the destination's ready once everything is sent.
	HandoverTimeout uint64 `json:"x-handover-timeout"`
	// XBZRLECacheSize bounds, in bytes, the source's copies of the pages it
	// sends as deltas (capability xbzrle): pages dirtied again after the
	// first pass, up to this much. New sets a quarter of guest RAM, at
	// least 64 MiB (QEMU's fixed default) and at most 1 GiB.
	XBZRLECacheSize uint64 `json:"xbzrle-cache-size"`
}

// Limits of the parameters, with QEMU's for the QEMU ones.
const (
	maxDowntimeLimit = 2_000_000 // ms, QEMU's bound
	maxTimeout       = 3_600_000 // ms
	maxCacheSize     = 64 << 30  // bytes
)

// DefaultParameters returns QEMU's defaults plus vmmd's timeouts.
func DefaultParameters() Parameters {
	return Parameters{DowntimeLimit: 300, MaxBandwidth: 128 << 20, InactivateTimeout: 10_000, HandoverTimeout: 30_000,
		XBZRLECacheSize: defaultCacheMin}
}

// defaultCacheMin is QEMU's xbzrle-cache-size default, vmmd's floor;
// defaultCacheMax bounds the default for large guests (the cache is RSS on
// the source while a migration runs).
const (
	defaultCacheMin = 64 << 20
	defaultCacheMax = 1 << 30
)

// defaultCacheSize is the xbzrle-cache-size for a guest of ram bytes.
func defaultCacheSize(ram uint64) uint64 {
	return min(max(min(ram/4, defaultCacheMax), defaultCacheMin), ram) / pageSize * pageSize
}

// Validate checks p, with QEMU's wording for the QEMU parameters.
func (p Parameters) Validate() error {
	if p.DowntimeLimit > maxDowntimeLimit {
		return fmt.Errorf("Parameter 'downtime_limit' expects an integer in the range of 0 to 2000 seconds")
	}
	if p.InactivateTimeout == 0 || p.InactivateTimeout > maxTimeout {
		return fmt.Errorf("Parameter 'x-inactivate-timeout' expects milliseconds between 1 and %d", maxTimeout)
	}
	if p.HandoverTimeout == 0 || p.HandoverTimeout > maxTimeout {
		return fmt.Errorf("Parameter 'x-handover-timeout' expects milliseconds between 1 and %d", maxTimeout)
	}
	if p.XBZRLECacheSize%pageSize != 0 || p.XBZRLECacheSize > maxCacheSize {
		return fmt.Errorf("Parameter 'xbzrle_cache_size' expects a multiple of %d bytes up to %d", pageSize, uint64(maxCacheSize))
	}
	return nil
}

func ms(v uint64) time.Duration { return time.Duration(v) * time.Millisecond }

// CapabilityNames lists QEMU's migration capabilities, in QEMU's order.
// vmmd reports and stores all of them; "events" (MIGRATION and
// MIGRATION_PASS are sent only when it is on, as in QEMU) and "xbzrle"
// (page deltas; on by default in vmmd, off in QEMU) change behaviour.
func CapabilityNames() []string {
	return []string{"xbzrle", "rdma-pin-all", "auto-converge", "zero-blocks", "events",
		"postcopy-ram", "x-colo", "release-ram", "return-path", "pause-before-switchover", "multifd",
		"dirty-bitmaps", "postcopy-blocktime", "late-block-activate", "x-ignore-shared", "validate-uuid",
		"background-snapshot", "zero-copy-send", "postcopy-preempt", "switchover-ack", "dirty-limit", "mapped-ram"}
}

// unsupportedCapabilities are capabilities vmmd cannot honour: turning one
// on is refused rather than silently ignored.
func unsupportedCapabilities() map[string]bool {
	return map[string]bool{"rdma-pin-all": true, "postcopy-ram": true, "x-colo": true,
		"multifd": true, "background-snapshot": true, "zero-copy-send": true, "postcopy-preempt": true,
		"mapped-ram": true, "x-ignore-shared": true, "dirty-limit": true, "pause-before-switchover": true,
		"switchover-ack": true, "postcopy-blocktime": true}
}
