package budget

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestAcquireWaitsAndNeverExceeds(t *testing.T) {
	b := New("test", 100)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			n := int64(10 + i%41) // 10..50
			if err := b.Acquire(ctx, n); err != nil {
				t.Error(err)
				return
			}
			if h := b.Held(); h > 100 {
				t.Errorf("held %d > limit 100", h)
			}
			time.Sleep(time.Millisecond)
			b.Release(n)
		})
	}
	wg.Wait()
	if b.Held() != 0 || b.Peak() > 100 || b.Peak() < 50 {
		t.Errorf("held %d, peak %d; want 0 and within (50, 100]", b.Held(), b.Peak())
	}
}

func TestTooLargeFailsAtOnce(t *testing.T) {
	b := New("bodies", 100<<20)
	err := b.Acquire(context.Background(), 200<<20)
	var tl *TooLarge
	if !errors.As(err, &tl) || tl.Need != 200<<20 || err.Error() != "needs 200 MiB, over the 100 MiB bodies budget" {
		t.Errorf("got %v", err)
	}
	if b.Held() != 0 {
		t.Errorf("held %d after a refused request", b.Held())
	}
}

// A large request waiting is not overtaken by small ones that would fit (first come first
// served), so a stream of small items cannot starve it.
func TestFirstComeFirstServed(t *testing.T) {
	b := New("test", 100)
	ctx := context.Background()
	b.Acquire(ctx, 60)
	got := make(chan error, 1)
	go func() { got <- b.Acquire(ctx, 80) }()
	for deadline := time.Now().Add(5 * time.Second); ; {
		b.mu.Lock()
		n := len(b.queue)
		b.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the large request never queued")
		}
		time.Sleep(time.Millisecond)
	}
	if b.TryAcquire(10) {
		t.Error("a small request overtook the waiting large one")
	}
	b.Release(60)
	select {
	case err := <-got:
		if err != nil || b.Held() != 80 {
			t.Errorf("large request: %v, held %d", err, b.Held())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the large request was not granted after the release")
	}
}

func TestCanceledWaitHoldsNothing(t *testing.T) {
	b := New("test", 100)
	b.Acquire(context.Background(), 90)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := b.Acquire(ctx, 50); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want the deadline", err)
	}
	b.Release(90)
	if b.Held() != 0 || !b.TryAcquire(100) {
		t.Errorf("held %d after a canceled wait", b.Held())
	}
}

func TestNilBudgetHoldsNothing(t *testing.T) {
	var b *Budget
	if err := b.Acquire(context.Background(), 1<<40); err != nil || !b.TryAcquire(1<<40) || b.Held() != 0 {
		t.Error("a nil budget should admit everything")
	}
	b.Release(5)
}
