// helpers_test.go: what the tests share — opening a string as an input, draining a Source
// into items and failures, and a bounded context.

package source

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/clipd/clipd/internal/pipeline/item"
)

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// fromString opens text as an input called name.
func fromString(t *testing.T, text, name string, opt Options) *Source {
	t.Helper()
	s, err := New(testContext(t), strings.NewReader(text), name, opt)
	if err != nil {
		t.Fatalf("New(%s): %v", name, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// drain reads every Record and checks that Err is nil.
func drain(t *testing.T, s *Source) ([]item.Item, []*item.Failure) {
	t.Helper()
	items, failures := drainErr(s)
	if err := s.Err(); err != nil {
		t.Fatalf("Err: %v", err)
	}
	return items, failures
}

func drainErr(s *Source) ([]item.Item, []*item.Failure) {
	var items []item.Item
	var failures []*item.Failure
	for r := range s.Records() {
		if r.Failure != nil {
			failures = append(failures, r.Failure)
		} else {
			items = append(items, r.Item)
		}
	}
	return items, failures
}

func urls(items []item.Item) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.URL
	}
	return out
}
