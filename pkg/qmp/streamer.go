package qmp

// The streamer reproduces QEMU's qobject/json-streamer.c as it is in QEMU
// 3.0 to 10.x (checked against QEMU 7.2): tokens are queued until the
// brace and bracket counts are both back to zero (or either goes negative),
// then the queue is parsed as one message. A lexical error, or a message
// over a limit, drops the queue and resets the counts, so parsing simply
// starts again with the next token.

const (
	// maxTokenCount is QEMU's MAX_TOKEN_COUNT per message.
	maxTokenCount = 2 << 20
	// maxNesting is QEMU's MAX_NESTING: open braces plus brackets.
	maxNesting = 1 << 10
)

// tokRef locates one token's text in the streamer's arena.
type tokRef struct {
	typ        tokType
	start, end uint32
}

// streamer groups tokens into messages and parses each one.
type streamer struct {
	lex       lexer
	braces    int
	brackets  int
	arena     []byte
	toks      []tokRef
	tokenSize int
	// deliver receives each parsed message, or the error that replaced it.
	deliver func(v *value, err string)
}

func newStreamer(deliver func(v *value, err string)) *streamer {
	s := &streamer{deliver: deliver}
	s.lex.emit = s.token
	return s
}

// feed lexes p; deliver is called for every message completed by it.
func (s *streamer) feed(p []byte) { s.lex.feed(p) }

// token is json_message_process_token.
func (s *streamer) token(t tokType, text []byte) {
	switch t {
	case tokLCurly:
		s.braces++
	case tokRCurly:
		s.braces--
	case tokLSquare:
		s.brackets++
	case tokRSquare:
		s.brackets--
	case tokError:
		s.reset()
		s.deliver(nil, "JSON parse error, stray '"+string(text)+"'")
		return
	}
	complete := s.braces < 0 || s.brackets < 0 || (s.braces == 0 && s.brackets == 0)
	if !complete && s.tokenSize+len(text) > maxTokenSize {
		// The message is refused: do not copy a token of up to 64 MiB
		// into the arena first.
		s.reset()
		s.deliver(nil, "JSON token size limit exceeded")
		return
	}
	start := len(s.arena)
	s.arena = append(s.arena, text...)
	s.toks = append(s.toks, tokRef{typ: t, start: uint32(start), end: uint32(len(s.arena))})
	s.tokenSize += len(text)

	if complete {
		p := parser{arena: s.arena, toks: s.toks}
		v := p.parse()
		s.reset()
		s.deliver(v, p.err)
		return
	}
	var err string
	switch {
	case s.tokenSize > maxTokenSize:
		err = "JSON token size limit exceeded"
	case len(s.toks) > maxTokenCount:
		err = "JSON token count limit exceeded"
	case s.braces+s.brackets > maxNesting:
		err = "JSON nesting depth limit exceeded"
	default:
		return
	}
	s.reset()
	s.deliver(nil, err)
}

// pending returns how many bytes of an unfinished message are buffered.
func (s *streamer) pending() int { return len(s.arena) + len(s.lex.token) }

// reset forgets the pending message. Large buffers are released so that
// one huge message does not pin memory for the life of the connection.
func (s *streamer) reset() {
	s.braces, s.brackets, s.tokenSize = 0, 0, 0
	if cap(s.arena) > 1<<16 {
		s.arena = nil
	} else {
		s.arena = s.arena[:0]
	}
	if cap(s.toks) > 1<<12 {
		s.toks = nil
	} else {
		s.toks = s.toks[:0]
	}
}
