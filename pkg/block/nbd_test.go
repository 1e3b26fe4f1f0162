package block

import (
	"errors"
	"fmt"
	"github.com/vmmd/vmmd/internal/nbdkittest"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestNBDMemoryRoundTrip(t *testing.T) {
	ctx := testCtx(t)
	srv := nbdkittest.Start(t, "memory", "size=64M")
	d := openDrive(t, "file="+srv.URI+",id=disk0", OpenOptions{})
	info := d.Info()
	if info.Driver != "nbd" || info.Size != 64<<20 || !info.Active || !info.Healthy || info.BlockSize != 512 {
		t.Fatalf("Info() = %+v", info)
	}
	want := make([]byte, 64<<20)
	for i, w := range []struct {
		off   int64
		n     int
		flags WriteFlags
	}{{0, 512, 0}, {4096, 4096, WriteFUA}, {1 << 20, 5 << 20, 0}, {64<<20 - 4096, 4096, WriteFUA}} {
		buf := unaligned(w.n)
		copy(buf, pattern(w.n, uint64(i)))
		if err := d.WriteAt(ctx, buf, w.off, w.flags); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		copy(want[w.off:], buf)
	}
	if err := d.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(want))
	if err := d.ReadAt(ctx, got, 0); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "whole export", got, want)
	if err := d.ReadAt(ctx, got[:512], 64<<20); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("read past the end: %v", err)
	}
}

func TestNBDTCP(t *testing.T) {
	ctx := testCtx(t)
	uri := nbdkittest.StartTCP(t, "memory", "size=1M")
	d := openDrive(t, "file="+uri+",id=disk0", OpenOptions{})
	data := pattern(8192, 9)
	if err := d.WriteAt(ctx, data, 8192, WriteFUA); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 8192)
	if err := d.ReadAt(ctx, got, 8192); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "tcp read back", got, data)
}

// TestNBDFilePlugin checks that what is written and flushed through NBD is
// in the file, and that inactivation (disconnect) keeps it there.
func TestNBDFilePlugin(t *testing.T) {
	ctx := testCtx(t)
	img := tempImage(t, 4<<20)
	srv := nbdkittest.Start(t, "file", "file="+img)
	d := openDrive(t, "file="+srv.URI+",id=disk0", OpenOptions{})
	want := make([]byte, 4<<20)
	for i := 0; i < 32; i++ {
		off := int64(i) * 128 << 10
		buf := pattern(64<<10, uint64(100+i))
		if err := d.WriteAt(ctx, buf, off, 0); err != nil {
			t.Fatal(err)
		}
		copy(want[off:], buf)
	}
	if err := d.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "file after flush", got, want)
	if err := d.Inactivate(ctx); err != nil {
		t.Fatal(err)
	}
	if d.Info().Healthy {
		t.Fatal("an inactive NBD drive reports a healthy connection")
	}
	if err := d.Activate(ctx); err != nil {
		t.Fatal(err)
	}
	back := make([]byte, len(want))
	if err := d.ReadAt(ctx, back, 0); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "after reconnect", back, want)
}

// TestNBDManyInFlight sends many overlapping requests on one connection
// (the delay filter keeps them in flight together), so replies come back
// out of order and must be matched by cookie.
func TestNBDManyInFlight(t *testing.T) {
	ctx := testCtx(t)
	srv := nbdkittest.Start(t, "--filter=delay", "memory", "size=16M", "delay-write=5ms", "delay-read=5ms")
	d := openDrive(t, "file="+srv.URI+",id=disk0", OpenOptions{})
	const workers, perWorker, blk = 16, 20, 4096
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < perWorker; i++ {
				off := int64(w*perWorker+i) * blk
				data := pattern(blk, uint64(off))
				if err := d.WriteAt(ctx, data, off, 0); err != nil {
					errs <- err
					return
				}
				got := make([]byte, blk)
				if err := d.ReadAt(ctx, got, off); err != nil {
					errs <- err
					return
				}
				if string(got) != string(data) {
					errs <- fmt.Errorf("block at %d read back wrong", off)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestNBDServerErrors checks that an error reply is an I/O error with the
// server's errno and leaves the connection usable.
func TestNBDServerErrors(t *testing.T) {
	ctx := testCtx(t)
	trigger := filepath.Join(nbdkittest.ShortDir(t), "fail")
	srv := nbdkittest.Start(t, "--filter=error", "memory", "size=1M",
		"error-pwrite=ENOSPC", "error-pwrite-rate=100%", "error-pwrite-file="+trigger,
		"error-pread=EIO", "error-pread-rate=100%", "error-pread-file="+trigger)
	d := openDrive(t, "file="+srv.URI+",id=disk0,werror=stop", OpenOptions{})
	if err := os.WriteFile(trigger, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	err := d.WriteAt(ctx, make([]byte, 4096), 0, 0)
	var ioe *IOError
	if !errors.As(err, &ioe) || !errors.Is(err, syscall.ENOSPC) || errors.Is(err, ErrTimeout) {
		t.Fatalf("write: %v, want an IOError with ENOSPC", err)
	}
	if !strings.Contains(err.Error(), "NBD_CMD_WRITE: server replied no space left on device") {
		t.Fatalf("write error text %q", err)
	}
	if err := d.ReadAt(ctx, make([]byte, 4096), 0); !errors.Is(err, syscall.EIO) {
		t.Fatalf("read: %v, want EIO", err)
	}
	if !d.Info().Healthy {
		t.Fatal("an error reply broke the connection")
	}
	if err := os.Remove(trigger); err != nil {
		t.Fatal(err)
	}
	if err := d.WriteAt(ctx, make([]byte, 4096), 0, 0); err != nil {
		t.Fatalf("write after errors stopped: %v", err)
	}
}

// TestNBDStoppedServer: a SIGSTOPped nbdkit makes requests time out within
// the timeout (plus a margin), later requests fail fast, inactivation fails
// within bounds, and after SIGCONT, Activate reconnects and the data
// written before the stop is still there.
func TestNBDStoppedServer(t *testing.T) {
	ctx := testCtx(t)
	const timeout = 500 * time.Millisecond
	const margin = 1500 * time.Millisecond
	img := tempImage(t, 1<<20)
	// One worker thread: nbdkit 1.32 with a parallel plugin can abort
	// (raw_send_socket: Assertion `sock >= 0') when it resumes and finds
	// several replies to send on a connection the client has closed.
	srv := nbdkittest.Start(t, "-t", "1", "file", "file="+img)
	d := openDrive(t, "file="+srv.URI+",id=disk0,timeout=500ms,werror=stop", OpenOptions{})
	before := pattern(4096, 11)
	if err := d.WriteAt(ctx, before, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := d.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	srv.Signal(t, syscall.SIGSTOP)
	// Several requests in flight at once all fail.
	var wg sync.WaitGroup
	errs := make([]error, 4)
	start := time.Now()
	for i := range errs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs[i] = d.WriteAt(ctx, make([]byte, 4096), int64(i+1)*4096, 0)
		}(i)
	}
	wg.Wait()
	elapsed := time.Since(start)
	for i, err := range errs {
		var ioe *IOError
		if !errors.As(err, &ioe) || !errors.Is(err, ErrIO) || !errors.Is(err, ErrTimeout) {
			t.Fatalf("request %d on a stopped server: %v, want an I/O timeout", i, err)
		}
	}
	if elapsed > timeout+margin {
		t.Fatalf("timeout took %s, more than %s + %s", elapsed, timeout, margin)
	}
	t.Logf("stopped server: requests failed after %s: %v", elapsed, errs[0])

	start = time.Now()
	err := d.ReadAt(ctx, make([]byte, 512), 0)
	if !errors.Is(err, ErrIO) || time.Since(start) > 200*time.Millisecond {
		t.Fatalf("request after the timeout: %v after %s, want a fast I/O error", err, time.Since(start))
	}
	if d.Info().Healthy {
		t.Fatal("Info().Healthy after a timeout")
	}
	start = time.Now()
	err = NewGate(d).InactivateAll(ctx)
	if err == nil || !strings.Contains(err.Error(), "inactivate disk0: flush: ") {
		t.Fatalf("inactivation on a stopped server: %v", err)
	}
	if time.Since(start) > timeout+margin {
		t.Fatalf("inactivation took %s", time.Since(start))
	}
	if !d.Active() {
		t.Fatal("a drive whose flush failed must stay active")
	}

	srv.Signal(t, syscall.SIGCONT)
	// cont: the gate reactivates every drive, which repairs this one.
	if err := NewGate(d).ReactivateAll(ctx); err != nil {
		t.Fatalf("reactivation after SIGCONT: %v", err)
	}
	if !d.Info().Healthy {
		t.Fatal("not healthy after reactivation")
	}
	got := make([]byte, 4096)
	if err := d.ReadAt(ctx, got, 0); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "acknowledged data after the stop", got, before)
	if err := d.Inactivate(ctx); err != nil {
		t.Fatalf("inactivate after recovery: %v", err)
	}
}

// TestNBDKilledServer: a killed nbdkit gives I/O errors at once, also to a
// request that was in flight, and a new server on the same socket is
// picked up by Activate and, for werror=report, by the next request after
// the reconnect interval.
func TestNBDKilledServer(t *testing.T) {
	ctx := testCtx(t)
	img := tempImage(t, 1<<20)
	srv := nbdkittest.Start(t, "--filter=delay", "file", "file="+img, "delay-read=2000ms")
	d := openDrive(t, "file="+srv.URI+",id=disk0", OpenOptions{})
	data := pattern(4096, 5)
	if err := d.WriteAt(ctx, data, 0, WriteFUA); err != nil {
		t.Fatal(err)
	}
	readErr := make(chan error, 1)
	go func() { readErr <- d.ReadAt(ctx, make([]byte, 512), 0) }()
	waitInflight(t, d, 1)
	time.Sleep(50 * time.Millisecond) // let the request reach the server
	start := time.Now()
	srv.Signal(t, syscall.SIGKILL)
	select {
	case err := <-readErr:
		if !errors.Is(err, ErrIO) || errors.Is(err, ErrTimeout) {
			t.Fatalf("in-flight read on a killed server: %v", err)
		}
		t.Logf("killed server: in-flight read failed after %s: %v", time.Since(start), err)
	case <-time.After(3 * time.Second):
		t.Fatal("in-flight read hangs after the server was killed")
	}
	if err := d.WriteAt(ctx, make([]byte, 512), 0, 0); !errors.Is(err, ErrIO) {
		t.Fatalf("write after kill: %v", err)
	}
	if err := d.Activate(ctx); err == nil {
		t.Fatal("Activate succeeded with no server")
	}

	_ = os.Remove(srv.Sock)
	nbdkittest.StartAt(t, srv.Sock, "file", "file="+img)
	if err := d.Activate(ctx); err != nil {
		t.Fatalf("Activate with the server back: %v", err)
	}
	got := make([]byte, 4096)
	if err := d.ReadAt(ctx, got, 0); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "data after restart", got, data)
}

func TestNBDReconnectsOnItsOwn(t *testing.T) {
	ctx := testCtx(t)
	img := tempImage(t, 1<<20)
	srv := nbdkittest.Start(t, "file", "file="+img)
	d := openDrive(t, "file="+srv.URI+",id=disk0", OpenOptions{})
	srv.Signal(t, syscall.SIGKILL)
	if err := d.ReadAt(ctx, make([]byte, 512), 0); !errors.Is(err, ErrIO) {
		t.Fatalf("read after kill: %v", err)
	}
	// Within the reconnect interval, requests fail fast without dialling.
	err := d.ReadAt(ctx, make([]byte, 512), 0)
	if !errors.Is(err, ErrIO) || strings.Contains(err.Error(), "reconnecting failed") {
		t.Fatalf("read within the reconnect interval: %v", err)
	}
	_ = os.Remove(srv.Sock)
	nbdkittest.StartAt(t, srv.Sock, "file", "file="+img)
	time.Sleep(1100 * time.Millisecond)
	if err := d.ReadAt(ctx, make([]byte, 512), 0); err != nil {
		t.Fatalf("read after the reconnect interval: %v", err)
	}
	if !d.Info().Healthy {
		t.Fatal("not healthy after reconnecting")
	}
}

// TestNBDInactivateDrains starts a slow write (nbdkit's delay filter), then
// inactivates: inactivation waits, the write succeeds, and the connection
// is closed afterwards.
func TestNBDInactivateDrains(t *testing.T) {
	ctx := testCtx(t)
	img := tempImage(t, 1<<20)
	srv := nbdkittest.Start(t, "--filter=delay", "file", "file="+img, "delay-write=500ms")
	d := openDrive(t, "file="+srv.URI+",id=disk0", OpenOptions{})
	data := pattern(4096, 21)
	writeDone := make(chan error, 1)
	go func() { writeDone <- d.WriteAt(ctx, data, 8192, 0) }()
	waitInflight(t, d, 1)
	if err := d.Inactivate(ctx); err != nil {
		t.Fatal(err)
	}
	// Had Inactivate not waited, its disconnect would have failed the
	// in-flight write.
	if d.inflightNow() != 0 {
		t.Fatal("Inactivate returned with a request in flight")
	}
	select {
	case err := <-writeDone:
		if err != nil {
			t.Fatalf("in-flight write: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the in-flight write never completed")
	}
	if err := d.Inactivate(ctx); err != nil {
		t.Fatalf("second Inactivate: %v", err)
	}
	if err := d.WriteAt(ctx, data, 0, 0); err == nil || err.Error() != "Permission 'write' unavailable on inactive node" {
		t.Fatalf("write while inactive: %v", err)
	}
	got, _ := os.ReadFile(img)
	mustEqual(t, "drained write in the file", got[8192:12288], data)
}

// TestNBDFlushFailureReachesGate uses a server whose flush really fails
// (nbdkit's eval plugin) and checks the gate reports it.
func TestNBDFlushFailureReachesGate(t *testing.T) {
	ctx := testCtx(t)
	dir := nbdkittest.ShortDir(t)
	trigger := filepath.Join(dir, "failflush")
	data := filepath.Join(dir, "data")
	if err := os.WriteFile(data, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := nbdkittest.Start(t, "eval",
		"get_size=echo 1048576",
		"pread=dd if="+data+" skip=$4 count=$3 iflag=count_bytes,skip_bytes status=none",
		"pwrite=dd of="+data+" seek=$4 conv=notrunc oflag=seek_bytes status=none",
		"can_flush=exit 0",
		"flush=if [ -e "+trigger+" ]; then echo 'EIO flush refused by test' >&2; exit 1; fi",
	)
	d := openDrive(t, "file="+srv.URI+",id=disk0", OpenOptions{})
	if err := d.WriteAt(ctx, make([]byte, 512), 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(trigger, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	g := NewGate(d)
	err := g.InactivateAll(ctx)
	want := "inactivate disk0: flush: NBD_CMD_FLUSH: server replied input/output error"
	if err == nil || err.Error() != want {
		t.Fatalf("InactivateAll = %v, want %q", err, want)
	}
	if !d.Active() || !g.MayBeInactive() {
		t.Fatal("drive must stay active and the gate marked")
	}
	if err := os.Remove(trigger); err != nil {
		t.Fatal(err)
	}
	if err := g.InactivateAll(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g.ReactivateAll(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestNBDBlockSizeLimits(t *testing.T) {
	ctx := testCtx(t)
	srv := nbdkittest.Start(t, "--filter=blocksize-policy", "memory", "size=4M",
		"blocksize-minimum=4096", "blocksize-maximum=64K", "blocksize-error-policy=error")
	d := openDrive(t, "file="+srv.URI+",id=disk0", OpenOptions{})
	if d.BlockSize() != 4096 {
		t.Fatalf("BlockSize() = %d, want the server's minimum 4096", d.BlockSize())
	}
	if err := d.WriteAt(ctx, make([]byte, 512), 0, 0); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("512-byte write: %v", err)
	}
	// 1 MiB goes out as 64 KiB requests; the server refuses anything larger.
	data := pattern(1<<20, 4)
	if err := d.WriteAt(ctx, data, 1<<20, 0); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 1<<20)
	if err := d.ReadAt(ctx, got, 1<<20); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "split request", got, data)
}

func TestNBDReadOnlyExport(t *testing.T) {
	ctx := testCtx(t)
	srv := nbdkittest.Start(t, "-r", "memory", "size=1M")
	s, _ := ParseDriveSpec("file=" + srv.URI + ",id=disk0")
	_, err := OpenDrive(ctx, s, OpenOptions{})
	if err == nil || !strings.Contains(err.Error(), "the export is read-only; use readonly=on") {
		t.Fatalf("writable drive on a read-only export: %v", err)
	}
	d := openDrive(t, "file="+srv.URI+",id=disk0,readonly=on", OpenOptions{})
	if err := d.ReadAt(ctx, make([]byte, 512), 0); err != nil {
		t.Fatal(err)
	}
	if err := d.WriteAt(ctx, make([]byte, 512), 0, 0); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("write: %v", err)
	}
}

func TestNBDUnknownExport(t *testing.T) {
	ctx := testCtx(t)
	srv := nbdkittest.Start(t, "--filter=exportname", "memory", "size=1M", "exportname=good", "exportname-strict=true")
	sock := strings.TrimPrefix(srv.URI, "nbd+unix:///?socket=")
	s, _ := ParseDriveSpec("file=nbd+unix:///bad?socket=" + sock + ",id=disk0")
	_, err := OpenDrive(ctx, s, OpenOptions{})
	if err == nil || !strings.Contains(err.Error(), `NBD_OPT_GO for export "bad"`) {
		t.Fatalf("unknown export: %v", err)
	}
	openDrive(t, "file=nbd+unix:///good?socket="+sock+",id=disk0", OpenOptions{})
}

// TestNBDOpenFailures needs no nbdkit: a missing socket, something that is
// not an NBD server, and a server that never answers.
func TestNBDOpenFailures(t *testing.T) {
	ctx := testCtx(t)
	dir := nbdkittest.ShortDir(t)
	open := func(sock string) error {
		s, err := ParseDriveSpec("file=nbd+unix:///x?socket=" + sock + ",id=disk0,timeout=200ms")
		if err != nil {
			t.Fatal(err)
		}
		_, err = OpenDrive(ctx, s, OpenOptions{})
		return err
	}
	if err := open(filepath.Join(dir, "missing")); err == nil || !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("missing socket: %v", err)
	}

	garbage := filepath.Join(dir, "garbage")
	lg, err := net.Listen("unix", garbage)
	if err != nil {
		t.Fatal(err)
	}
	defer lg.Close()
	go func() {
		for {
			c, err := lg.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
			_ = c.Close()
		}
	}()
	if err := open(garbage); err == nil || !strings.Contains(err.Error(), "not an NBD server") {
		t.Fatalf("garbage server: %v", err)
	}

	silent := filepath.Join(dir, "silent")
	ls, err := net.Listen("unix", silent)
	if err != nil {
		t.Fatal(err)
	}
	defer ls.Close()
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ls.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
	}()
	start := time.Now()
	err = open(silent)
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "handshake") {
		t.Fatalf("silent server: %v", err)
	}
	if d := time.Since(start); d > 200*time.Millisecond+3*time.Second {
		t.Fatalf("silent server: gave up after %s", d)
	}
}
