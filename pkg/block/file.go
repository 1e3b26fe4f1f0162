package block

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// bounceSize is the chunk in which unaligned buffers go through aligned
// bounce buffers under O_DIRECT.
const bounceSize = 1 << 20

// FileBackend is a raw image in a local file or block device, accessed with
// pread/pwrite (O_DIRECT for cache=none) and flushed with fdatasync.
//
// Each operation runs on an I/O goroutine (see ioPool) so that a system call stuck in
// the kernel (a hung NFS server, a dead disk) turns into a timeout error for
// the caller instead of a hang. The stuck call cannot be cancelled: until it
// returns, a timed-out read may still fill the caller's buffer, and every
// new request fails at once with ErrIO.
type FileBackend struct {
	path      string
	file      *os.File
	opts      BackendOptions
	timeout   time.Duration
	blockSize int
	memAlign  int
	size      atomic.Int64
	stuck     atomic.Int32
	closed    atomic.Bool
	bounce    sync.Pool // *[]byte, bounceSize long, memAlign aligned
	pool      *ioPool

	mu     sync.Mutex // serialises Acquire, Release and Close
	locked bool
}

// OpenFile opens a raw image file or block device, released (no image
// lock). The size is read at once.
func OpenFile(ctx context.Context, path string, opts BackendOptions) (*FileBackend, error) {
	flags := os.O_RDWR
	if opts.ReadOnly {
		flags = os.O_RDONLY
	}
	if opts.Direct {
		flags |= syscall.O_DIRECT
	}
	f, err := os.OpenFile(path, flags, 0)
	if err != nil {
		if opts.Direct && errors.Is(err, syscall.EINVAL) {
			return nil, fmt.Errorf("open %s: cache=none needs O_DIRECT, which this file system refuses: %w", path, err)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	b := &FileBackend{path: path, file: f, opts: opts, timeout: opts.timeout(), blockSize: 512, memAlign: 1, pool: newIOPool()}
	if err := b.checkType(); err != nil {
		_ = f.Close()
		return nil, err
	}
	if opts.Direct {
		b.blockSize, b.memAlign = directAlignment(f)
	}
	align := max(b.memAlign, 4096)
	b.bounce.New = func() any {
		buf := alignedBuffer(bounceSize, align)
		return &buf
	}
	if err := b.readSize(ctx); err != nil {
		b.pool.close()
		_ = f.Close()
		return nil, err
	}
	return b, nil
}

func (b *FileBackend) checkType() error {
	st, err := b.file.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", b.path, err)
	}
	m := st.Mode()
	if !m.IsRegular() && m&os.ModeDevice == 0 {
		return fmt.Errorf("%s is neither a regular file nor a block device (mode %v)", b.path, m)
	}
	if m&os.ModeDevice != 0 && m&os.ModeCharDevice != 0 {
		return fmt.Errorf("%s is a character device, not a block device", b.path)
	}
	return nil
}

// directAlignment asks the kernel (statx STATX_DIOALIGN, Linux 6.1+) which
// offset and memory alignment O_DIRECT needs, and assumes 4096 for both
// when it will not say.
func directAlignment(f *os.File) (blockSize, memAlign int) {
	blockSize, memAlign = 4096, 4096
	rc, err := f.SyscallConn()
	if err != nil {
		return blockSize, memAlign
	}
	_ = rc.Control(func(fd uintptr) {
		var st unix.Statx_t
		if unix.Statx(int(fd), "", unix.AT_EMPTY_PATH, unix.STATX_DIOALIGN, &st) != nil ||
			st.Mask&unix.STATX_DIOALIGN == 0 || st.Dio_offset_align == 0 || st.Dio_mem_align == 0 {
			return
		}
		blockSize = max(int(st.Dio_offset_align), 512)
		memAlign = int(st.Dio_mem_align)
	})
	return blockSize, memAlign
}

// Describe returns the path.
func (b *FileBackend) Describe() string { return b.path }

// Size returns the size in bytes as last read.
func (b *FileBackend) Size() int64 { return b.size.Load() }

// BlockSize returns 512, or the O_DIRECT offset alignment for cache=none.
func (b *FileBackend) BlockSize() int { return b.blockSize }

// Err reports whether the backend can take requests.
func (b *FileBackend) Err() error {
	if b.closed.Load() {
		return fmt.Errorf("%s: %w", b.path, ErrClosed)
	}
	if n := b.stuck.Load(); n > 0 {
		return fmt.Errorf("%s: %w: %d earlier request(s) timed out and are still stuck in the kernel", b.path, ErrIO, n)
	}
	return nil
}

// ReadAt reads len(p) bytes at off. Bytes past the end of the file read as
// zeroes, as in QEMU's file driver.
func (b *FileBackend) ReadAt(ctx context.Context, p []byte, off int64) error {
	if err := checkAligned(OpRead, off, len(p), b.blockSize); err != nil {
		return err
	}
	return b.run(ctx, "read", func() error {
		if !b.opts.Direct || isAligned(p, b.memAlign) {
			return b.pread(p, off)
		}
		return b.chunked(p, off, func(buf []byte, o int64, q []byte) error {
			if err := b.pread(buf, o); err != nil {
				return err
			}
			copy(q, buf)
			return nil
		})
	})
}

// WriteAt writes p at off; with WriteFUA it also runs fdatasync before
// returning.
func (b *FileBackend) WriteAt(ctx context.Context, p []byte, off int64, flags WriteFlags) error {
	if b.opts.ReadOnly {
		return fmt.Errorf("write %s: %w", b.path, ErrReadOnly)
	}
	if err := checkAligned(OpWrite, off, len(p), b.blockSize); err != nil {
		return err
	}
	return b.run(ctx, "write", func() error {
		var err error
		if !b.opts.Direct || isAligned(p, b.memAlign) {
			_, err = b.file.WriteAt(p, off)
		} else {
			err = b.chunked(p, off, func(buf []byte, o int64, q []byte) error {
				copy(buf, q)
				_, err := b.file.WriteAt(buf, o)
				return err
			})
		}
		if err != nil {
			return unwrapPathError(err)
		}
		if flags&WriteFUA != 0 {
			return b.fdatasync()
		}
		return nil
	})
}

// Flush runs fdatasync. With cache=none it is still needed: O_DIRECT
// bypasses the page cache, not the disk's own write cache.
func (b *FileBackend) Flush(ctx context.Context) error {
	if b.opts.ReadOnly {
		return nil
	}
	return b.run(ctx, "flush", b.fdatasync)
}

// Acquire takes the image locks and re-reads the size.
func (b *FileBackend) Acquire(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.run(ctx, "lock", b.lock); err != nil {
		return err
	}
	b.locked = true
	return b.readSize(ctx)
}

// Release drops the image locks.
func (b *FileBackend) Release(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.locked {
		return nil
	}
	if err := b.run(ctx, "unlock", b.unlock); err != nil {
		return err
	}
	b.locked = false
	return nil
}

// Close closes the file, which drops any locks. A request still stuck in
// the kernel keeps the file open until it returns.
func (b *FileBackend) Close(context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed.Swap(true) {
		return nil
	}
	b.locked = false
	b.pool.close()
	if err := b.file.Close(); err != nil {
		return fmt.Errorf("close %s: %w", b.path, err)
	}
	return nil
}

// pread fills p, padding with zeroes past the end of the file.
func (b *FileBackend) pread(p []byte, off int64) error {
	n, err := b.file.ReadAt(p, off)
	if err == io.EOF {
		clear(p[n:])
		return nil
	}
	return unwrapPathError(err)
}

// chunked runs fn over p in bounce-buffer sized pieces: fn gets an aligned
// buffer, the file offset and the matching piece of p.
func (b *FileBackend) chunked(p []byte, off int64, fn func(buf []byte, off int64, q []byte) error) error {
	bp := b.bounce.Get().(*[]byte)
	defer b.bounce.Put(bp)
	for len(p) > 0 {
		n := min(len(p), bounceSize)
		if err := fn((*bp)[:n], off, p[:n]); err != nil {
			return err
		}
		p, off = p[n:], off+int64(n)
	}
	return nil
}

func (b *FileBackend) fdatasync() error {
	return b.control(func(fd int) error { return unix.Fdatasync(fd) })
}

func (b *FileBackend) readSize(ctx context.Context) error {
	return b.run(ctx, "size", func() error {
		n, err := b.file.Seek(0, io.SeekEnd)
		if err != nil {
			return fmt.Errorf("size of %s: %w", b.path, err)
		}
		b.size.Store(n)
		return nil
	})
}

// control runs fn with the raw descriptor, which os.File keeps open while fn
// runs even if Close is called meanwhile.
func (b *FileBackend) control(fn func(fd int) error) error {
	rc, err := b.file.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// unwrapPathError strips os.PathError so the errno shows without the path
// twice; the drive adds the operation and offset.
func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
