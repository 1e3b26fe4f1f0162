package block

import (
	"encoding/binary"
	"fmt"
	"syscall"
)

// NBD protocol constants (https://github.com/NetworkBlockDevice/nbd,
// doc/proto.md). Only what a fixed-newstyle client using NBD_OPT_GO and
// simple replies needs.
const (
	nbdMagic          = 0x4e42444d41474943 // "NBDMAGIC"
	nbdOptMagic       = 0x49484156454f5054 // "IHAVEOPT"
	nbdOldstyleMagic  = 0x0000420281861253
	nbdRepMagic       = 0x0003e889045565a9
	nbdRequestMagic   = 0x25609513
	nbdSimpleMagic    = 0x67446698
	nbdStructMagic    = 0x668e33ef
	nbdExtendedMagic  = 0x6e8a278c
	nbdFlagFixedNew   = 1 << 0 // handshake flag: fixed newstyle
	nbdFlagNoZeroes   = 1 << 1 // handshake flag: no 124 zero bytes
	nbdOptAbort       = 2
	nbdOptGo          = 7
	nbdRepAck         = 1
	nbdRepInfo        = 3
	nbdRepFlagError   = 1 << 31
	nbdInfoExport     = 0
	nbdInfoBlockSize  = 3
	nbdFlagHasFlags   = 1 << 0 // transmission flags
	nbdFlagReadOnly   = 1 << 1
	nbdFlagSendFlush  = 1 << 2
	nbdFlagSendFUA    = 1 << 3
	nbdCmdRead        = 0
	nbdCmdWrite       = 1
	nbdCmdDisc        = 2
	nbdCmdFlush       = 3
	nbdCmdFlagFUA     = 1 << 0
	nbdRequestSize    = 28
	nbdSimpleSize     = 16
	nbdOptReplyHeader = 20
	// nbdMaxPayload is the largest request the protocol lets a client send
	// when the server states no maximum.
	nbdMaxPayload = 32 << 20
	// nbdMaxOptReply bounds an option reply we are willing to read.
	nbdMaxOptReply = 64 << 10
)

// nbdRepErrName names an NBD_REP_ERR_* reply type.
func nbdRepErrName(t uint32) string {
	switch t {
	case nbdRepFlagError | 1:
		return "NBD_REP_ERR_UNSUP (option not supported)"
	case nbdRepFlagError | 2:
		return "NBD_REP_ERR_POLICY (refused by server policy)"
	case nbdRepFlagError | 3:
		return "NBD_REP_ERR_INVALID (invalid request)"
	case nbdRepFlagError | 4:
		return "NBD_REP_ERR_PLATFORM (not supported on this platform)"
	case nbdRepFlagError | 5:
		return "NBD_REP_ERR_TLS_REQD (server requires TLS)"
	case nbdRepFlagError | 6:
		return "NBD_REP_ERR_UNKNOWN (no such export)"
	case nbdRepFlagError | 7:
		return "NBD_REP_ERR_SHUTDOWN (server is shutting down)"
	case nbdRepFlagError | 8:
		return "NBD_REP_ERR_BLOCK_SIZE_REQD (block size negotiation required)"
	case nbdRepFlagError | 9:
		return "NBD_REP_ERR_TOO_BIG (request too big)"
	}
	return fmt.Sprintf("error reply %#x", t)
}

// nbdErrno maps the error field of a reply to an errno; codes the protocol
// does not define are reported as EIO.
func nbdErrno(code uint32) syscall.Errno {
	switch code {
	case 1:
		return syscall.EPERM
	case 5:
		return syscall.EIO
	case 12:
		return syscall.ENOMEM
	case 22:
		return syscall.EINVAL
	case 28:
		return syscall.ENOSPC
	case 75:
		return syscall.EOVERFLOW
	case 95:
		return syscall.ENOTSUP
	case 108:
		return syscall.ESHUTDOWN
	}
	return syscall.EIO
}

// nbdCmdName names a command for errors.
func nbdCmdName(cmd uint16) string {
	switch cmd {
	case nbdCmdRead:
		return "NBD_CMD_READ"
	case nbdCmdWrite:
		return "NBD_CMD_WRITE"
	case nbdCmdDisc:
		return "NBD_CMD_DISC"
	case nbdCmdFlush:
		return "NBD_CMD_FLUSH"
	}
	return fmt.Sprintf("NBD command %d", cmd)
}

// putRequest encodes a transmission request header into h (28 bytes).
func putRequest(h []byte, flags, cmd uint16, cookie uint64, off uint64, n uint32) {
	binary.BigEndian.PutUint32(h[0:], nbdRequestMagic)
	binary.BigEndian.PutUint16(h[4:], flags)
	binary.BigEndian.PutUint16(h[6:], cmd)
	binary.BigEndian.PutUint64(h[8:], cookie)
	binary.BigEndian.PutUint64(h[16:], off)
	binary.BigEndian.PutUint32(h[24:], n)
}
