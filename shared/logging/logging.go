// Package logging builds the zerolog loggers every healthmesh process uses:
// JSON lines by default, a human console format on a terminal or on request.
package logging

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// Format names accepted by Options.Format.
const (
	FormatAuto    = "auto"    // console on a terminal, JSON otherwise
	FormatJSON    = "json"    // one JSON object per line
	FormatConsole = "console" // coloured, human-readable
)

// Options configures New.
type Options struct {
	Format  string // auto (default), json or console
	Level   string // trace, debug, info (default), warn, error
	Service string // added to every line as "svc"
	Node    string // added to every line as "node" when set
}

// New returns a logger writing to w. An unknown format or level is an error
// naming the bad value.
func New(w io.Writer, o Options) (zerolog.Logger, error) {
	lvl := zerolog.InfoLevel
	if o.Level != "" {
		l, err := zerolog.ParseLevel(strings.ToLower(o.Level))
		if err != nil || l == zerolog.NoLevel {
			return zerolog.Nop(), fmt.Errorf("logging: level %q: want trace, debug, info, warn or error", o.Level)
		}
		lvl = l
	}
	out := w
	switch strings.ToLower(o.Format) {
	case "", FormatAuto:
		if isTerminal(w) {
			out = console(w)
		}
	case FormatJSON:
	case FormatConsole:
		out = console(w)
	default:
		return zerolog.Nop(), fmt.Errorf("logging: format %q: want auto, json or console", o.Format)
	}
	ctx := zerolog.New(out).Level(lvl).With().Timestamp()
	if o.Service != "" {
		ctx = ctx.Str("svc", o.Service)
	}
	if o.Node != "" {
		ctx = ctx.Str("node", o.Node)
	}
	return ctx.Logger(), nil
}

func console(w io.Writer) io.Writer {
	return zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339Nano, NoColor: !isTerminal(w)}
}

// isTerminal reports whether w is a character device (a TTY).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
