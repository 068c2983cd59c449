// logger.go: the run's log lines go to Events.Log through a slog.Handler, so the stages that
// take a *slog.Logger (the sink) log through the caller's callback.

package embed

import (
	"context"
	"log/slog"
	"sync"
)

// newLogger is a *slog.Logger whose records become fn's calls, one at a time.
func newLogger(fn func(level slog.Level, msg string, args ...any)) *slog.Logger {
	if fn == nil {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(&eventHandler{fn: fn, mu: &sync.Mutex{}})
}

type eventHandler struct {
	fn    func(level slog.Level, msg string, args ...any)
	mu    *sync.Mutex
	attrs []any
	group string
}

func (h *eventHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *eventHandler) Handle(_ context.Context, rec slog.Record) error {
	args := append([]any(nil), h.attrs...)
	rec.Attrs(func(a slog.Attr) bool {
		if h.group != "" {
			a.Key = h.group + "." + a.Key
		}
		args = append(args, a)
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fn(rec.Level, rec.Message, args...)
	return nil
}

func (h *eventHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append([]any(nil), h.attrs...)
	for _, a := range as {
		if h.group != "" {
			a.Key = h.group + "." + a.Key
		}
		c.attrs = append(c.attrs, a)
	}
	return &c
}

func (h *eventHandler) WithGroup(name string) slog.Handler {
	c := *h
	if c.group != "" {
		name = c.group + "." + name
	}
	c.group = name
	return &c
}
