package main

import "regexp"

// progressLineRE and summaryLineRE are the documented line formats
// (progressLineHelp); tests hold the output to them.
func progressLineRE() *regexp.Regexp {
	return regexp.MustCompile(`^progress status=[a-z-]+ total_time_ms=(-|\d+) percent=(-|\d+\.\d) transferred=(-|\d+) remaining=(-|\d+) total=(-|\d+) mbps=(-|\d+\.\d) pass=(-|\d+) expected_downtime_ms=(-|\d+)$`)
}

func summaryLineRE() *regexp.Regexp {
	return regexp.MustCompile(`^summary status=([a-z-]+) total_time_ms=(-|\d+) downtime_ms=(-|\d+) transferred=(-|\d+) passes=(-|\d+) error_desc=(".*")$`)
}
