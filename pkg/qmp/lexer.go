package qmp

// The lexer reproduces QEMU's qobject/json-lexer.c state machine byte for
// byte, because what a client sees after bad input (how many errors, which
// "stray" text, where parsing picks up again) is decided here and not in the
// parser.

// maxTokenSize is QEMU's MAX_TOKEN_SIZE: a single token longer than this is
// force-flushed, and a message whose tokens add up to more is refused.
const maxTokenSize = 64 << 20

// tokType is the kind of a token handed to the streamer. The values mirror
// QEMU's JSONTokenType.
type tokType uint8

const (
	tokError   tokType = iota // a lexical error; the text is what was read of the bad token
	tokLCurly                 // {
	tokRCurly                 // }
	tokLSquare                // [
	tokRSquare                // ]
	tokColon                  // :
	tokComma                  // ,
	tokInteger                // a number without fraction or exponent
	tokFloat                  // a number with fraction or exponent
	tokKeyword                // [a-z]+; the parser accepts true, false and null
	tokString                 // a double- or single-quoted string, quotes included
	// tokPartial is a token cut off at maxTokenSize. QEMU hands such a token
	// to the streamer typed with the lexer's internal state number, which no
	// parser rule accepts; tokPartial plays that role.
	tokPartial
)

// lexState is a state of the lexer automaton (QEMU's enum json_lexer_state,
// without the interpolation states QMP never enables).
type lexState uint8

const (
	stStart lexState = iota
	stRecovery
	stDQString
	stDQEscape
	stSQString
	stSQEscape
	stZero
	stExpDigits
	stExpSign
	stExpE
	stMantissa
	stMantissaDigits
	stDigits
	stSign
	stKeyword
)

// lexer turns bytes into tokens and passes each to emit.
type lexer struct {
	state lexState
	token []byte
	emit  func(t tokType, text []byte)
}

// action says what one transition does with the current byte.
type action uint8

const (
	actShift    action = iota // consume the byte and move to next
	actEmit                   // consume the byte, emit the token, back to start
	actLookEmit               // emit the token without the byte, reprocess it from start
	actError                  // consume the byte, emit an error, enter recovery
	actSkip                   // consume the byte and drop it (whitespace, recovery)
	actLookBack               // leave recovery without consuming the byte
)

// step is the transition table of json-lexer.c written as a switch.
func step(s lexState, c byte) (action, lexState, tokType) {
	switch s {
	case stRecovery:
		switch {
		case c == '\t':
			return actSkip, stRecovery, 0
		case c < 0x20 || c >= 0xFE:
			return actLookBack, stStart, 0
		case c == '[' || c == ']' || c == '{' || c == '}' || c == ':' || c == ',':
			return actLookBack, stStart, 0
		}
		return actSkip, stRecovery, 0
	case stDQString, stSQString:
		quote := byte('"')
		esc := stDQEscape
		if s == stSQString {
			quote, esc = '\'', stSQEscape
		}
		switch {
		case c < 0x20 || c >= 0xFE:
			return actError, 0, 0
		case c == '\\':
			return actShift, esc, 0
		case c == quote:
			return actEmit, stStart, tokString
		}
		return actShift, s, 0
	case stDQEscape, stSQEscape:
		if c < 0x20 || c >= 0xFE {
			return actError, 0, 0
		}
		if s == stDQEscape {
			return actShift, stDQString, 0
		}
		return actShift, stSQString, 0
	case stZero:
		switch {
		case isDigit(c):
			return actError, 0, 0
		case c == '.':
			return actShift, stMantissa, 0
		}
		return actLookEmit, stStart, tokInteger
	case stExpDigits:
		if isDigit(c) {
			return actShift, stExpDigits, 0
		}
		return actLookEmit, stStart, tokFloat
	case stExpSign:
		if isDigit(c) {
			return actShift, stExpDigits, 0
		}
		return actError, 0, 0
	case stExpE:
		switch {
		case c == '-' || c == '+':
			return actShift, stExpSign, 0
		case isDigit(c):
			return actShift, stExpDigits, 0
		}
		return actError, 0, 0
	case stMantissaDigits:
		switch {
		case isDigit(c):
			return actShift, stMantissaDigits, 0
		case c == 'e' || c == 'E':
			return actShift, stExpE, 0
		}
		return actLookEmit, stStart, tokFloat
	case stMantissa:
		if isDigit(c) {
			return actShift, stMantissaDigits, 0
		}
		return actError, 0, 0
	case stDigits:
		switch {
		case isDigit(c):
			return actShift, stDigits, 0
		case c == 'e' || c == 'E':
			return actShift, stExpE, 0
		case c == '.':
			return actShift, stMantissa, 0
		}
		return actLookEmit, stStart, tokInteger
	case stSign:
		switch {
		case c == '0':
			return actShift, stZero, 0
		case c >= '1' && c <= '9':
			return actShift, stDigits, 0
		}
		return actError, 0, 0
	case stKeyword:
		if c >= 'a' && c <= 'z' {
			return actShift, stKeyword, 0
		}
		return actLookEmit, stStart, tokKeyword
	}
	// stStart
	switch {
	case c == '"':
		return actShift, stDQString, 0
	case c == '\'':
		return actShift, stSQString, 0
	case c == '0':
		return actShift, stZero, 0
	case c >= '1' && c <= '9':
		return actShift, stDigits, 0
	case c == '-':
		return actShift, stSign, 0
	case c == '{':
		return actEmit, stStart, tokLCurly
	case c == '}':
		return actEmit, stStart, tokRCurly
	case c == '[':
		return actEmit, stStart, tokLSquare
	case c == ']':
		return actEmit, stStart, tokRSquare
	case c == ',':
		return actEmit, stStart, tokComma
	case c == ':':
		return actEmit, stStart, tokColon
	case c >= 'a' && c <= 'z':
		return actShift, stKeyword, 0
	case c == ' ' || c == '\t' || c == '\r' || c == '\n':
		return actSkip, stStart, 0
	}
	return actError, 0, 0
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// feed runs every byte of p through the automaton.
func (l *lexer) feed(p []byte) {
	for _, c := range p {
		l.feedByte(c)
	}
}

func (l *lexer) feedByte(c byte) {
	for {
		act, next, tt := step(l.state, c)
		switch act {
		case actShift:
			l.token = append(l.token, c)
			l.state = next
		case actEmit:
			l.token = append(l.token, c)
			l.flush(tt)
			l.state = stStart
		case actLookEmit:
			l.flush(tt)
			l.state = stStart
			continue
		case actError:
			l.token = append(l.token, c)
			l.flush(tokError)
			l.state = stRecovery
		case actSkip:
			l.token = l.token[:0]
			l.state = next
		case actLookBack:
			l.token = l.token[:0]
			l.state = stStart
			continue
		}
		break
	}
	// QEMU's guard against one token growing without bound: hand over
	// what there is and start afresh with the next byte.
	if len(l.token) > maxTokenSize {
		l.flush(tokPartial)
		l.state = stStart
	}
}

// flush emits the current token and empties the buffer, dropping a buffer
// that grew large so an idle connection does not keep it.
func (l *lexer) flush(t tokType) {
	l.emit(t, l.token)
	if cap(l.token) > 1<<16 {
		l.token = nil
		return
	}
	l.token = l.token[:0]
}
