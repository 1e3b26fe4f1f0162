package main

// bulkGbps is the throughput of the bulk transfer in Gbit/s (10^9): the
// bytes sent while the guest ran, over the time it ran migrating, that is
// total-time less setup-time and downtime. What either VMM sends during
// the downtime is counted there, not here (QEMU 7.2 sends up to
// downtime-limit's worth after the stop, ~200 MB for 1G-dirty200). ok is
// false when that time is not positive.
func bulkGbps(precopyBytes uint64, totalMS, setupMS, downMS float64) (gbps float64, ok bool) {
	ms := totalMS - setupMS - downMS
	if ms <= 0 {
		return 0, false
	}
	return float64(precopyBytes) * 8 / (ms * 1e6), true
}

// overallGbps is the throughput of the whole migration in Gbit/s (10^9):
// every byte sent (ram.transferred), over total-time less setup-time, the
// stop included. Unlike bulkGbps it charges a VMM for what it sends with
// the guest stopped: QEMU 7.2 switches over once what is left of its first
// pass fits in downtime-limit at its measured rate, so in the filled-idle
// cases hundreds of MiB go during the downtime. ok is false when that time
// is not positive.
func overallGbps(transferredBytes uint64, totalMS, setupMS float64) (gbps float64, ok bool) {
	ms := totalMS - setupMS
	if ms <= 0 {
		return 0, false
	}
	return float64(transferredBytes) * 8 / (ms * 1e6), true
}
