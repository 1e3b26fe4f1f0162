package block

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// nbdExport is what NBD_OPT_GO told us about the export.
type nbdExport struct {
	size      int64
	flags     uint16 // transmission flags
	minBlock  uint32 // 1 when the server gave no NBD_INFO_BLOCK_SIZE
	prefBlock uint32
	maxBlock  uint32 // 0 when the server gave no maximum
}

// maxPayload is the largest request we send to this export.
func (e nbdExport) maxPayload() int {
	if e.maxBlock != 0 && e.maxBlock < nbdMaxPayload {
		return int(e.maxBlock)
	}
	return nbdMaxPayload
}

// nbdHandshake runs the fixed newstyle handshake and NBD_OPT_GO for the
// export. It asks for NBD_INFO_BLOCK_SIZE, which commits us to honouring
// the server's block size constraints; it does not ask for structured
// replies, so every reply in transmission is a simple one.
func nbdHandshake(rw io.ReadWriter, export string) (nbdExport, error) {
	var hello [18]byte
	if _, err := io.ReadFull(rw, hello[:16]); err != nil {
		return nbdExport{}, fmt.Errorf("read server greeting: %w", err)
	}
	if m := binary.BigEndian.Uint64(hello[0:]); m != nbdMagic {
		return nbdExport{}, fmt.Errorf("not an NBD server: greeting magic %#x", m)
	}
	switch m := binary.BigEndian.Uint64(hello[8:]); m {
	case nbdOptMagic:
	case nbdOldstyleMagic:
		return nbdExport{}, errors.New("server uses oldstyle negotiation, which is not supported")
	default:
		return nbdExport{}, fmt.Errorf("not an NBD server: second magic %#x", m)
	}
	if _, err := io.ReadFull(rw, hello[16:]); err != nil {
		return nbdExport{}, fmt.Errorf("read handshake flags: %w", err)
	}
	hflags := binary.BigEndian.Uint16(hello[16:])
	if hflags&nbdFlagFixedNew == 0 {
		return nbdExport{}, errors.New("server does not support fixed newstyle negotiation")
	}
	cflags := uint32(nbdFlagFixedNew)
	if hflags&nbdFlagNoZeroes != 0 {
		cflags |= nbdFlagNoZeroes
	}
	// Client flags and the NBD_OPT_GO request go out in one write.
	msg := binary.BigEndian.AppendUint32(nil, cflags)
	msg = binary.BigEndian.AppendUint64(msg, nbdOptMagic)
	msg = binary.BigEndian.AppendUint32(msg, nbdOptGo)
	msg = binary.BigEndian.AppendUint32(msg, uint32(4+len(export)+2+2))
	msg = binary.BigEndian.AppendUint32(msg, uint32(len(export)))
	msg = append(msg, export...)
	msg = binary.BigEndian.AppendUint16(msg, 1)
	msg = binary.BigEndian.AppendUint16(msg, nbdInfoBlockSize)
	if _, err := rw.Write(msg); err != nil {
		return nbdExport{}, fmt.Errorf("send NBD_OPT_GO: %w", err)
	}
	exp := nbdExport{minBlock: 1}
	var haveExport bool
	for {
		typ, data, err := readOptReply(rw)
		if err != nil {
			return nbdExport{}, fmt.Errorf("NBD_OPT_GO: %w", err)
		}
		switch {
		case typ == nbdRepAck:
			if !haveExport {
				return nbdExport{}, errors.New("NBD_OPT_GO: server acknowledged without NBD_INFO_EXPORT")
			}
			return exp, nil
		case typ == nbdRepInfo:
			if err := exp.parseInfo(data, &haveExport); err != nil {
				return nbdExport{}, fmt.Errorf("NBD_OPT_GO: %w", err)
			}
		case typ&nbdRepFlagError != 0:
			msg := ""
			if len(data) > 0 {
				msg = ": " + string(data)
			}
			return nbdExport{}, fmt.Errorf("NBD_OPT_GO for export %q: %s%s", export, nbdRepErrName(typ), msg)
		default:
			return nbdExport{}, fmt.Errorf("NBD_OPT_GO: unexpected reply type %d", typ)
		}
	}
}

// readOptReply reads one option reply and returns its type and data.
func readOptReply(r io.Reader) (uint32, []byte, error) {
	var h [nbdOptReplyHeader]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, fmt.Errorf("read option reply: %w", err)
	}
	if m := binary.BigEndian.Uint64(h[0:]); m != nbdRepMagic {
		return 0, nil, fmt.Errorf("bad option reply magic %#x", m)
	}
	if opt := binary.BigEndian.Uint32(h[8:]); opt != nbdOptGo {
		return 0, nil, fmt.Errorf("reply for option %d, expected %d", opt, nbdOptGo)
	}
	typ := binary.BigEndian.Uint32(h[12:])
	n := binary.BigEndian.Uint32(h[16:])
	if n > nbdMaxOptReply {
		return 0, nil, fmt.Errorf("option reply of %d bytes is longer than %d", n, nbdMaxOptReply)
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(r, data); err != nil {
		return 0, nil, fmt.Errorf("read option reply data: %w", err)
	}
	return typ, data, nil
}

// parseInfo applies one NBD_REP_INFO; unknown information types are
// ignored, as the protocol requires.
func (e *nbdExport) parseInfo(d []byte, haveExport *bool) error {
	if len(d) < 2 {
		return fmt.Errorf("NBD_REP_INFO of %d bytes is too short", len(d))
	}
	switch binary.BigEndian.Uint16(d) {
	case nbdInfoExport:
		if len(d) != 12 {
			return fmt.Errorf("NBD_INFO_EXPORT of %d bytes, expected 12", len(d))
		}
		size := binary.BigEndian.Uint64(d[2:])
		if size > math.MaxInt64 {
			return fmt.Errorf("export size %d is too large", size)
		}
		e.size = int64(size)
		e.flags = binary.BigEndian.Uint16(d[10:])
		if e.flags&nbdFlagHasFlags == 0 {
			e.flags = 0
		}
		*haveExport = true
	case nbdInfoBlockSize:
		if len(d) != 14 {
			return fmt.Errorf("NBD_INFO_BLOCK_SIZE of %d bytes, expected 14", len(d))
		}
		minB := binary.BigEndian.Uint32(d[2:])
		pref := binary.BigEndian.Uint32(d[6:])
		maxB := binary.BigEndian.Uint32(d[10:])
		if !powerOfTwo(minB) || minB > 64<<10 || !powerOfTwo(pref) || pref < minB ||
			maxB < minB || maxB != math.MaxUint32 && maxB%minB != 0 {
			return fmt.Errorf("server sent invalid block sizes: minimum %d, preferred %d, maximum %d", minB, pref, maxB)
		}
		e.minBlock, e.prefBlock = minB, pref
		if maxB != math.MaxUint32 {
			e.maxBlock = maxB
		}
	}
	return nil
}

func powerOfTwo(n uint32) bool { return n != 0 && n&(n-1) == 0 }
