package cache

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// badgerLogger routes badger's printf-style log to slog. Badger logs every table it opens and
// every memtable it flushes at info level; for an agent that is noise, so info and debug lines
// go to slog's debug level and only warnings and errors stay visible.
type badgerLogger struct{ log *slog.Logger }

func (l badgerLogger) Errorf(format string, args ...any) {
	l.emit(slog.LevelError, format, args)
}

func (l badgerLogger) Warningf(format string, args ...any) {
	l.emit(slog.LevelWarn, format, args)
}

func (l badgerLogger) Infof(format string, args ...any) {
	l.emit(slog.LevelDebug, format, args)
}

func (l badgerLogger) Debugf(format string, args ...any) {
	l.emit(slog.LevelDebug, format, args)
}

// emit formats only when the level is enabled: badger logs from hot paths.
func (l badgerLogger) emit(level slog.Level, format string, args []any) {
	ctx := context.Background()
	if !l.log.Enabled(ctx, level) {
		return
	}
	msg := strings.TrimSpace(fmt.Sprintf(format, args...))
	l.log.Log(ctx, level, msg, "lib", "badger")
}
