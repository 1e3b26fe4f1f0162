package devices

import "time"

// CMOS RTC register indices (MC146818).
const (
	rtcSeconds    = 0x00
	rtcMinutes    = 0x02
	rtcHours      = 0x04
	rtcDayOfWeek  = 0x06
	rtcDayOfMonth = 0x07
	rtcMonth      = 0x08
	rtcYear       = 0x09
	rtcStatusA    = 0x0a
	rtcStatusB    = 0x0b
	rtcStatusC    = 0x0c
	rtcStatusD    = 0x0d
	rtcCentury    = 0x32
)

const (
	// cmosIndexMask drops bit 7 of an index write, which is the NMI mask.
	cmosIndexMask = 0x7f
	// rtcStatusAValue: 32.768 kHz time base, 1024 Hz rate, UIP clear. UIP
	// never sets, so a guest never waits for an update to finish.
	rtcStatusAValue = 0x26
	// rtcStatusBValue: 24-hour mode, BCD, no interrupts, no DST.
	rtcStatusBValue = 0x02
	// rtcStatusDValue: VRT, the battery is good (Linux checks it).
	rtcStatusDValue = 0x80
)

// rtcRead returns CMOS register index at time now (converted to UTC). The
// RTC is read-only: it always shows the host's time, so there is no state
// to migrate and no drift to correct. A guest reading several registers
// across a second boundary can see a torn time, as on hardware; guests
// guard against that by re-reading.
func rtcRead(index byte, now time.Time) byte {
	now = now.UTC()
	switch index {
	case rtcSeconds:
		return bcd(now.Second())
	case rtcMinutes:
		return bcd(now.Minute())
	case rtcHours:
		return bcd(now.Hour())
	case rtcDayOfWeek:
		return bcd(int(now.Weekday()) + 1) // RTC counts Sunday as 1.
	case rtcDayOfMonth:
		return bcd(now.Day())
	case rtcMonth:
		return bcd(int(now.Month()))
	case rtcYear:
		return bcd(now.Year() % 100)
	case rtcCentury:
		// The IBM PC convention (QEMU's FADT names it); harmless if the
		// FADT names no century register.
		return bcd(now.Year() / 100 % 100)
	case rtcStatusA:
		return rtcStatusAValue
	case rtcStatusB:
		return rtcStatusBValue
	case rtcStatusC:
		return 0
	case rtcStatusD:
		return rtcStatusDValue
	default:
		return 0
	}
}

// bcd encodes 0 <= v <= 99 as two BCD digits.
func bcd(v int) byte {
	return byte(v/10<<4 | v%10)
}
