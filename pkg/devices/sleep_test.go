package devices

import "testing"

func TestSleepControlPowersOffOnlyForS5(t *testing.T) {
	tests := []struct {
		port uint16
		val  byte
		off  bool
	}{
		{SleepControlPort, 5<<2 | 1<<5, true},  // S5 + SLP_EN
		{SleepControlPort, 5 << 2, false},      // no SLP_EN
		{SleepControlPort, 3<<2 | 1<<5, false}, // S3: no suspend in vmmd
		{SleepStatusPort, 5<<2 | 1<<5, false},  // status register
	}
	for _, tc := range tests {
		calls := 0
		s := NewSleepControl(func() { calls++ })
		s.PortOut(tc.port, []byte{tc.val})
		if (calls == 1) != tc.off {
			t.Errorf("write %#x to %#x: power-off calls = %d, want off=%v", tc.val, tc.port, calls, tc.off)
		}
	}
	b := NewBus()
	if err := NewSleepControl(nil).Register(b); err != nil {
		t.Fatal(err)
	}
	data := []byte{0xff}
	b.PortIn(SleepStatusPort, data)
	if data[0] != 0 {
		t.Errorf("sleep status reads %#x, want 0", data[0])
	}
}
