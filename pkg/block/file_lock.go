package block

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Image locks follow QEMU's file-posix scheme, so that vmmd and QEMU (and
// qemu-img, qemu-nbd) exclude each other on the same image: for each block
// permission bit i a process holds a shared OFD lock on byte 100+i when it
// has the permission, and on byte 200+i when it does not let others have
// it. A permission can be taken only if nobody locks byte 200+i; refusing
// to share it only if nobody locks byte 100+i. Locks are taken first and
// checked afterwards (F_OFD_GETLK with F_WRLCK finds any other holder), so
// two processes racing for an image both fail rather than both win.
//
// OFD locks belong to the open file description, so two drives opened on
// one image inside the same process conflict too, and closing some other
// descriptor of the file does not drop them (unlike POSIX record locks).
const (
	lockPermBase   = 100
	lockSharedBase = 200
	lockBytes      = 100 // lock bytes per base; unlock covers all of them
)

// QEMU's permission bits (BlockPermission), by bit index.
const (
	permConsistentRead = 0
	permWrite          = 1
)

func permName(bit int) string {
	switch bit {
	case permConsistentRead:
		return "consistent read"
	case permWrite:
		return "write"
	}
	return fmt.Sprintf("permission %d", bit)
}

// lockPlan returns what this drive holds and what it refuses to share. A
// guest disk reads, writes unless read-only, and never shares write (QEMU's
// default without share-rw=on), so a read-only drive still keeps writers
// out, as in QEMU.
func (b *FileBackend) lockPlan() (held, unshared []int) {
	held = []int{permConsistentRead}
	if !b.opts.ReadOnly {
		held = append(held, permWrite)
	}
	return held, []int{permWrite}
}

// lock takes the lock bytes, then checks for conflicting holders. On a
// conflict it drops everything again and returns a *LockError.
func (b *FileBackend) lock() error {
	held, unshared := b.lockPlan()
	err := b.control(func(fd int) error {
		for _, p := range held {
			if err := setLock(fd, unix.F_RDLCK, lockPermBase+int64(p), 1); err != nil {
				return b.lockFailed(p, false, lockPermBase+int64(p), err)
			}
		}
		for _, p := range unshared {
			if err := setLock(fd, unix.F_RDLCK, lockSharedBase+int64(p), 1); err != nil {
				return b.lockFailed(p, true, lockSharedBase+int64(p), err)
			}
		}
		for _, p := range held {
			if busy, err := lockBusy(fd, lockSharedBase+int64(p)); err != nil || busy {
				return b.lockFailed(p, false, lockSharedBase+int64(p), err)
			}
		}
		for _, p := range unshared {
			if busy, err := lockBusy(fd, lockPermBase+int64(p)); err != nil || busy {
				return b.lockFailed(p, true, lockPermBase+int64(p), err)
			}
		}
		return nil
	})
	if err != nil {
		if uerr := b.unlock(); uerr != nil {
			return errors.Join(err, uerr)
		}
	}
	return err
}

// lockFailed logs the details QEMU would give as a hint and returns the
// error with QEMU's exact text. A system error (not a conflict) is
// returned as such, naming the byte.
func (b *FileBackend) lockFailed(perm int, shared bool, byteOff int64, err error) error {
	if err != nil && !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EACCES) {
		return fmt.Errorf("lock byte %d of %s: %w", byteOff, b.path, err)
	}
	le := &LockError{Perm: permName(perm), Shared: shared, Path: b.path, Byte: byteOff}
	b.opts.Log.Warn().Str("path", b.path).Int64("lock_byte", byteOff).Str("perm", le.Perm).Bool("shared", shared).
		Msg(le.Error() + ": is another process using the image?")
	return le
}

func (b *FileBackend) unlock() error {
	return b.control(func(fd int) error {
		if err := setLock(fd, unix.F_UNLCK, lockPermBase, lockSharedBase+lockBytes-lockPermBase); err != nil {
			return fmt.Errorf("unlock %s: %w", b.path, err)
		}
		return nil
	})
}

func setLock(fd int, typ int16, start, n int64) error {
	lk := unix.Flock_t{Type: typ, Whence: 0, Start: start, Len: n}
	return unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLK, &lk)
}

// lockBusy reports whether any other open file description holds a lock on
// the byte (F_OFD_GETLK ignores our own).
func lockBusy(fd int, off int64) (bool, error) {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: off, Len: 1}
	if err := unix.FcntlFlock(uintptr(fd), unix.F_OFD_GETLK, &lk); err != nil {
		return false, err
	}
	return lk.Type != unix.F_UNLCK, nil
}
