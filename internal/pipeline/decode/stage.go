// stage.go: the pipeline stage: a pool of decoding workers between a channel of fetched items
// and a channel of decoded (or failed) ones. Generic over the item type so it needs nothing
// from the fetch stage but two functions.
package decode

import (
	"context"
	"sync"
)

// Decoded is one item out of the stage: Image set and Err nil, or Err set (a *Error, or the
// TurboJPEG handle's failure) and Image nil. The receiver owns Image and calls Release.
type Decoded[T any] struct {
	Item  T
	Image *Image
	Err   error
}

// Run starts workers goroutines (at least 1) that decode bytesOf(item) for each item of in
// with opt, and returns their results, in completion order (not input order), on a channel
// of capacity workers. done(item), when not nil, is called once the item's bytes are no
// longer needed (so the fetch stage can recycle them), whether or not the decode succeeded.
// The channel closes after in closes and every item is out, or once ctx is cancelled; items
// dropped by a cancellation still get done and have their images released.
func Run[T any](ctx context.Context, in <-chan T, workers int, opt Options, bytesOf func(T) []byte, done func(T)) <-chan Decoded[T] {
	workers = max(workers, 1)
	out := make(chan Decoded[T], workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, derr := NewDecoder(opt)
			if derr == nil {
				defer d.Close()
			}
			for {
				var item T
				var ok bool
				select {
				case <-ctx.Done():
					return
				case item, ok = <-in:
					if !ok {
						return
					}
				}
				r := Decoded[T]{Item: item, Err: derr}
				if derr == nil {
					r.Image, r.Err = d.Decode(bytesOf(item))
				}
				if done != nil {
					done(item)
				}
				select {
				case out <- r:
				case <-ctx.Done():
					r.Image.Release()
					return
				}
			}
		}()
	}
	go func() {
		wg.Wait()
		close(out)
	}()
	return out
}
