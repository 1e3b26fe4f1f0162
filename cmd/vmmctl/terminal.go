package main

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// defaultWidth is used when a terminal does not report its size (some
// pseudo-terminals start at 0x0).
const defaultWidth = 80

// terminalWidth reports whether w is a terminal and, if so, its width in
// columns. The progress bar is drawn only on a terminal: in a pipe the
// carriage returns would end up in log files.
func terminalWidth(w io.Writer) (int, bool) {
	f, ok := w.(*os.File)
	if !ok {
		return 0, false
	}
	fd := int(f.Fd())
	if _, err := unix.IoctlGetTermios(fd, unix.TCGETS); err != nil {
		return 0, false
	}
	ws, err := unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ)
	if err != nil || ws.Col == 0 {
		return defaultWidth, true
	}
	return int(ws.Col), true
}
