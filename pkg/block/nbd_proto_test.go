package block

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// serverHello is a fixed-newstyle greeting followed by replies to
// NBD_OPT_GO: NBD_INFO_EXPORT (size, flags), optionally NBD_INFO_BLOCK_SIZE,
// then NBD_REP_ACK.
func serverHello(size uint64, flags uint16, blockSizes []uint32) []byte {
	b := binary.BigEndian.AppendUint64(nil, nbdMagic)
	b = binary.BigEndian.AppendUint64(b, nbdOptMagic)
	b = binary.BigEndian.AppendUint16(b, nbdFlagFixedNew|nbdFlagNoZeroes)
	rep := func(typ uint32, data []byte) {
		b = binary.BigEndian.AppendUint64(b, nbdRepMagic)
		b = binary.BigEndian.AppendUint32(b, nbdOptGo)
		b = binary.BigEndian.AppendUint32(b, typ)
		b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
		b = append(b, data...)
	}
	info := binary.BigEndian.AppendUint16(nil, nbdInfoExport)
	info = binary.BigEndian.AppendUint64(info, size)
	info = binary.BigEndian.AppendUint16(info, flags)
	rep(nbdRepInfo, info)
	if blockSizes != nil {
		bs := binary.BigEndian.AppendUint16(nil, nbdInfoBlockSize)
		for _, v := range blockSizes {
			bs = binary.BigEndian.AppendUint32(bs, v)
		}
		rep(nbdRepInfo, bs)
	}
	rep(nbdRepAck, nil)
	return b
}

type fakeRW struct {
	io.Reader
	io.Writer
}

func TestNBDHandshakeParsing(t *testing.T) {
	var sent bytes.Buffer
	exp, err := nbdHandshake(fakeRW{bytes.NewReader(serverHello(1<<30, nbdFlagHasFlags|nbdFlagSendFlush|nbdFlagSendFUA, []uint32{4096, 4096, 1 << 20})), &sent}, "disk")
	if err != nil {
		t.Fatal(err)
	}
	if exp.size != 1<<30 || exp.flags&nbdFlagSendFUA == 0 || exp.minBlock != 4096 || exp.maxPayload() != 1<<20 {
		t.Fatalf("export = %+v", exp)
	}
	// Client flags, then NBD_OPT_GO naming the export and asking for
	// NBD_INFO_BLOCK_SIZE.
	want := binary.BigEndian.AppendUint32(nil, nbdFlagFixedNew|nbdFlagNoZeroes)
	want = binary.BigEndian.AppendUint64(want, nbdOptMagic)
	want = binary.BigEndian.AppendUint32(want, nbdOptGo)
	want = binary.BigEndian.AppendUint32(want, 4+4+2+2)
	want = binary.BigEndian.AppendUint32(want, 4)
	want = append(want, "disk"...)
	want = binary.BigEndian.AppendUint16(want, 1)
	want = binary.BigEndian.AppendUint16(want, nbdInfoBlockSize)
	if !bytes.Equal(sent.Bytes(), want) {
		t.Fatalf("client sent %x, want %x", sent.Bytes(), want)
	}

	bad := []struct {
		name string
		in   []byte
		want string
	}{
		{"http", []byte("HTTP/1.1 400 Bad Request\r\n\r\n"), "not an NBD server"},
		{"oldstyle", append(binary.BigEndian.AppendUint64(nil, nbdMagic), binary.BigEndian.AppendUint64(nil, nbdOldstyleMagic)...), "oldstyle"},
		{"not fixed", func() []byte {
			b := serverHello(1, 1, nil)
			b[17] = 0
			return b
		}(), "fixed newstyle"},
		{"bad block sizes", serverHello(1, 1, []uint32{3, 4096, 4096}), "invalid block sizes"},
		{"ack without export", func() []byte {
			b := serverHello(1, 1, nil)
			return append(b[:18], b[18+20+12:]...)
		}(), "without NBD_INFO_EXPORT"},
		{"truncated", serverHello(1, 1, nil)[:30], "read option reply"},
	}
	for _, tc := range bad {
		_, err := nbdHandshake(fakeRW{bytes.NewReader(tc.in), io.Discard}, "")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestNBDHandshakeErrorReply(t *testing.T) {
	b := binary.BigEndian.AppendUint64(nil, nbdMagic)
	b = binary.BigEndian.AppendUint64(b, nbdOptMagic)
	b = binary.BigEndian.AppendUint16(b, nbdFlagFixedNew)
	b = binary.BigEndian.AppendUint64(b, nbdRepMagic)
	b = binary.BigEndian.AppendUint32(b, nbdOptGo)
	b = binary.BigEndian.AppendUint32(b, nbdRepFlagError|6)
	b = binary.BigEndian.AppendUint32(b, 7)
	b = append(b, "no such"...)
	_, err := nbdHandshake(fakeRW{bytes.NewReader(b), io.Discard}, "x")
	if err == nil || err.Error() != `NBD_OPT_GO for export "x": NBD_REP_ERR_UNKNOWN (no such export): no such` {
		t.Fatalf("error reply: %v", err)
	}
}

func FuzzNBDHandshake(f *testing.F) {
	f.Add(serverHello(1<<20, 1, nil))
	f.Add(serverHello(1<<20, 3, []uint32{512, 4096, 1 << 25}))
	f.Add([]byte("NBDMAGIC"))
	f.Fuzz(func(t *testing.T, in []byte) {
		exp, err := nbdHandshake(fakeRW{bytes.NewReader(in), io.Discard}, "e")
		if err != nil {
			return
		}
		if exp.size < 0 || !powerOfTwo(exp.minBlock) || exp.maxPayload() <= 0 {
			t.Fatalf("accepted a bad export: %+v", exp)
		}
	})
}

// fakeServer answers each request on the server end of a pipe with reply.
func fakeServer(t *testing.T, reply func(cookie uint64, req []byte) []byte) *nbdConn {
	t.Helper()
	client, server := net.Pipe()
	t.Cleanup(func() { _ = server.Close() })
	go func() {
		for {
			req := make([]byte, nbdRequestSize)
			if _, err := io.ReadFull(server, req); err != nil {
				return
			}
			if binary.BigEndian.Uint16(req[6:]) == nbdCmdWrite {
				if _, err := io.CopyN(io.Discard, server, int64(binary.BigEndian.Uint32(req[24:]))); err != nil {
					return
				}
			}
			out := reply(binary.BigEndian.Uint64(req[8:]), req)
			if out == nil {
				_ = server.Close()
				return
			}
			if _, err := server.Write(out); err != nil {
				return
			}
		}
	}()
	c := newNBDConn(client, nbdExport{size: 1 << 20, flags: nbdFlagHasFlags | nbdFlagSendFlush, minBlock: 1}, 2*time.Second)
	t.Cleanup(func() { c.fail(errDisconnected) })
	return c
}

func simpleReply(code uint32, cookie uint64, payload []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, nbdSimpleMagic)
	b = binary.BigEndian.AppendUint32(b, code)
	b = binary.BigEndian.AppendUint64(b, cookie)
	return append(b, payload...)
}

// TestNBDBadServerReplies: a misbehaving server breaks the connection with
// a clear error, never a panic or a hang.
func TestNBDBadServerReplies(t *testing.T) {
	ctx := testCtx(t)
	tests := []struct {
		name  string
		reply func(cookie uint64, req []byte) []byte
		want  string
		errno syscall.Errno
	}{
		{"unknown cookie", func(c uint64, _ []byte) []byte { return simpleReply(0, c+1000, nil) }, "reply for unknown cookie", 0},
		{"structured reply", func(c uint64, _ []byte) []byte {
			b := simpleReply(0, c, nil)
			binary.BigEndian.PutUint32(b, nbdStructMagic)
			return b
		}, "structured reply", 0},
		{"bad magic", func(c uint64, _ []byte) []byte { return []byte("0123456789abcdef") }, "bad reply magic", 0},
		{"short payload", func(c uint64, _ []byte) []byte { return simpleReply(0, c, make([]byte, 100)) }, "timed out after 200ms", 0},
		{"hang up", func(uint64, []byte) []byte { return nil }, "server closed the connection", 0},
		{"error code", func(c uint64, _ []byte) []byte { return simpleReply(28, c, nil) }, "server replied no space left on device", syscall.ENOSPC},
		{"unknown error code", func(c uint64, _ []byte) []byte { return simpleReply(9999, c, nil) }, "server replied input/output error", syscall.EIO},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := fakeServer(t, tc.reply)
			var err error
			if tc.name == "short payload" {
				// The server sends 100 bytes of a 512-byte read, then
				// nothing: the request must time out, not hang.
				c.timeout = 200 * time.Millisecond
			}
			err = c.do(ctx, nbdCmdRead, 0, 0, make([]byte, 512))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			if tc.errno != 0 {
				if !errors.Is(err, tc.errno) || c.ok() != nil {
					t.Fatalf("an error reply must keep the connection: %v, %v", err, c.ok())
				}
				return
			}
			if !errors.Is(err, ErrIO) || c.ok() == nil {
				t.Fatalf("connection not broken: %v", err)
			}
			if err := c.do(ctx, nbdCmdFlush, 0, 0, nil); !errors.Is(err, ErrIO) {
				t.Fatalf("request after the break: %v", err)
			}
		})
	}
}
