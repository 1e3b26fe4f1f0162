// Package kvmtest holds test helpers shared by packages whose tests need a
// working /dev/kvm.
package kvmtest

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// DevicePath is the KVM device the helpers probe.
const DevicePath = "/dev/kvm"

// RequireEnv names the environment variable that turns a missing KVM from a
// skip into a failure, for CI hosts that are supposed to have it.
const RequireEnv = "VMMD_REQUIRE_KVM"

// Require skips the test when /dev/kvm cannot be opened read-write, with the
// reason, unless VMMD_REQUIRE_KVM=1, in which case the test fails.
func Require(t testing.TB) {
	t.Helper()
	require(t, DevicePath, os.Getenv(RequireEnv) == "1")
}

func require(t testing.TB, path string, must bool) {
	t.Helper()
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err == nil {
		_ = unix.Close(fd)
		return
	}
	msg := "KVM not usable here: open " + path + ": " + err.Error()
	if must {
		t.Fatal(msg + " (and " + RequireEnv + "=1)")
		return
	}
	t.Skip(msg + " (set " + RequireEnv + "=1 to make this a failure)")
}
