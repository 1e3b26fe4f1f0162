package qmp

import (
	"encoding/json"
	"fmt"
	"net"
	"time"
)

// maxRefusing bounds the connections being refused at once; beyond it a
// connection is closed without a word, so a flood of them costs nothing.
// Close ends those in progress.
const maxRefusing = 8

// refuseWait is how long a refused client gets to send its first command
// and read the answer.
const refuseWait = time.Second

// refusalLogEvery spaces the warnings about refused clients, so that a
// script reconnecting in a loop cannot flood the log.
const refusalLogEvery = 10 * time.Second

// tooManyError is addConn's refusal when MaxConns clients are connected.
type tooManyError struct{ max int }

func (e *tooManyError) Error() string {
	return fmt.Sprintf("too many QMP clients: %d are connected, the most this server serves at once; "+
		"close idle connections (a script that never disconnects?) and retry", e.max)
}

// refusals counts refused clients between two log lines.
type refusals struct {
	count  uint64
	logged time.Time
}

// refuse tells a client that it is one too many: the error line stands
// where the greeting would be, and the first command gets the same error
// (a client library that reads the greeting and then negotiates
// capabilities reports it as the handshake's error), then the connection
// is closed. It runs on its own goroutine, bounded by refuseWait.
func (s *Server) refuse(nc net.Conn, socket string, why *tooManyError) {
	s.mu.Lock()
	s.refused.count++
	n := s.refused.count
	logNow := time.Since(s.refused.logged) >= refusalLogEvery
	if logNow {
		s.refused.count, s.refused.logged = 0, time.Now()
	}
	admit := !s.closed && len(s.refusing) < maxRefusing
	if admit {
		if s.refusing == nil {
			s.refusing = map[net.Conn]struct{}{}
		}
		s.refusing[nc] = struct{}{}
		s.wg.Add(1)
	}
	s.mu.Unlock()
	if logNow {
		s.log.Warn().Str("socket", socket).Int("max_clients", why.max).Uint64("refused", n).
			Msg("QMP client refused: too many connected")
	}
	if !admit {
		nc.Close()
		return
	}
	go func() {
		defer s.wg.Done()
		defer func() {
			nc.Close()
			s.mu.Lock()
			delete(s.refusing, nc)
			s.mu.Unlock()
		}()
		line, err := json.Marshal(map[string]any{"error": map[string]string{
			"class": string(GenericError), "desc": why.Error()}})
		if err != nil {
			return
		}
		line = append(line, '\r', '\n')
		_ = nc.SetDeadline(time.Now().Add(refuseWait))
		if _, err := nc.Write(line); err != nil {
			return
		}
		// Whatever the client sends first (its qmp_capabilities, with or
		// without a newline), or the deadline, or the client leaving;
		// then the same answer.
		if _, err := nc.Read(make([]byte, 4096)); err != nil {
			return
		}
		_, _ = nc.Write(line)
	}()
}
