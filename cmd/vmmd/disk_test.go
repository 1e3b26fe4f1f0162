package main

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vmmd/vmmd/internal/nbdkittest"
	"github.com/vmmd/vmmd/internal/testguest"
)

// checkRecords verifies an image with test/guest/check-records.py, the
// reference reader of the test guest's record format.
func checkRecords(t *testing.T, image string, ranges ...string) {
	t.Helper()
	script := filepath.Join(testguest.RepoRoot(), "test", "guest", "check-records.py")
	out, err := exec.Command("python3", append([]string{script, "--rest-zero", image}, ranges...)...).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "RECORDS ok") {
		t.Fatalf("image %s does not hold exactly the records written (%v):\n%s", image, err, out)
	}
}

func newImage(t *testing.T, size int64) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return img
}

// writeRecordsAndPowerOff boots the guest with the given --drive, writes
// and verifies records through virtio-blk, powers off and checks vmmd exits 0.
func writeRecordsAndPowerOff(t *testing.T, drive string) {
	t.Helper()
	bin := buildVMMD(t)
	p := startVMMD(t, bin, "--memory", "128M", "--drive", drive)
	stdin, con := p.stdin, p.con
	ctx, cancel := testguest.Deadline(t, 60*time.Second)
	defer cancel()
	m, pos, err := con.Wait(ctx, 0, regexp.MustCompile(`^GUEST-READY .* disks=(\d+)`))
	if err != nil {
		t.Fatal(err)
	}
	if m[1] != "1" {
		t.Fatalf("guest found %s disks, want 1: %q", m[1], m[0])
	}
	steps := []struct{ send, want string }{
		{"disk mode poll", `^OK disk mode poll`},
		{"disk write 0 0 300 flush", `^OK disk write 0 0 300 flushed=1$`},
		{"disk mode irq", `^OK disk mode irq`},
		{"disk write 0 300 200 flush", `^OK disk write 0 300 200 flushed=1$`},
		{"disk verify 0 0 500", `^VERIFY ok disk=0 records=500$`},
		{"disk id 0", `^DISK-ID disk0$`},
	}
	for _, s := range steps {
		io.WriteString(stdin, s.send+"\n")
		if _, pos, err = con.Wait(ctx, pos, regexp.MustCompile(s.want+`|^DISK-ERROR|^ERR`)); err != nil {
			t.Fatalf("%s: %v", s.send, err)
		}
		if l := con.Lines()[pos-1]; !regexp.MustCompile(s.want).MatchString(l) {
			t.Fatalf("%s: got %q", s.send, l)
		}
	}
	io.WriteString(stdin, "poweroff\n")
	if code := waitExit(t, p, 15*time.Second); code != 0 {
		t.Fatalf("exit code %d after poweroff", code)
	}
}

func TestDiskRecordsOnFile(t *testing.T) {
	img := newImage(t, 64<<20)
	writeRecordsAndPowerOff(t, "file="+img+",id=disk0")
	checkRecords(t, img, "0:500")
}

func TestDiskRecordsCacheNone(t *testing.T) {
	img := newImage(t, 64<<20)
	writeRecordsAndPowerOff(t, "file="+img+",id=disk0,cache=none")
	checkRecords(t, img, "0:500")
}

func TestDiskRecordsThroughNBD(t *testing.T) {
	img := newImage(t, 64<<20)
	srv := nbdkittest.Start(t, "file", "file="+img)
	writeRecordsAndPowerOff(t, "file="+srv.URI+",id=disk0")
	checkRecords(t, img, "0:500")
}

// TestSecondVMMDCannotTakeActiveImage: while one vmmd holds an image
// active, a second refuses to start on it with QEMU's lock text.
func TestSecondVMMDCannotTakeActiveImage(t *testing.T) {
	img := newImage(t, 16<<20)
	bin := buildVMMD(t)
	con := startVMMD(t, bin, "--memory", "64M", "--drive", "file="+img+",id=disk0").con
	ctx, cancel := testguest.Deadline(t, 30*time.Second)
	defer cancel()
	if _, _, err := con.Wait(ctx, 0, testguest.ReadyRE); err != nil {
		t.Fatal(err)
	}
	kernel := testguest.Path(t, "vmmd-testguest.elf")
	out, err := exec.Command(bin, "--kernel", kernel, "--memory", "64M", "--serial", "none",
		"--drive", "file="+img+",id=disk0").CombinedOutput()
	var ee *exec.ExitError
	if !asExit(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("second vmmd: %v, want exit 2\n%s", err, out)
	}
	if !strings.Contains(string(out), `Failed to get "write" lock`) {
		t.Errorf("second vmmd's error lacks QEMU's lock text:\n%s", out)
	}
}
