// tokenizer.go: the cgo wrapper of libclipengine's text tokenizer (clip_tokenizer_*,
// clip_tokenize): CLIP's byte-level BPE, text -> the context-length ids the text tower reads.

package engine

/*
#include <stdlib.h>
#include "clipengine.h"
*/
import "C"

import (
	"fmt"
	"sync"
	"unicode/utf8"
	"unsafe"
)

// ContextLength is CLIP's text context: 77 ids.
const ContextLength = 77

// Tokenizer is a loaded vocabulary (vocab.json + merges.txt). It is immutable: Tokenize may
// be called from many goroutines at once.
type Tokenizer struct {
	mu sync.RWMutex // Close waits for running Tokenize calls
	h  *C.clip_tokenizer
}

// OpenTokenizer loads the vocabulary beside weights: weightsPath is a folder holding
// vocab.json and merges.txt, or a .safetensors file in such a folder (what `clipd weights
// fetch` leaves in the cache).
func OpenTokenizer(weightsPath string) (*Tokenizer, error) {
	cpath := C.CString(weightsPath)
	defer C.free(unsafe.Pointer(cpath))
	var errbuf [1024]C.char
	var h *C.clip_tokenizer
	if s := C.clip_tokenizer_open(cpath, &h, &errbuf[0], C.size_t(len(errbuf))); s != C.CLIP_OK {
		return nil, newError(s, "open tokenizer", C.GoString(&errbuf[0]))
	}
	return &Tokenizer{h: h}, nil
}

// NewTokenizer loads a vocabulary from the paths of its vocab.json and merges.txt.
func NewTokenizer(vocabJSON, mergesTxt string) (*Tokenizer, error) {
	cv, cm := C.CString(vocabJSON), C.CString(mergesTxt)
	defer C.free(unsafe.Pointer(cv))
	defer C.free(unsafe.Pointer(cm))
	var errbuf [1024]C.char
	var h *C.clip_tokenizer
	if s := C.clip_tokenizer_create(cv, cm, &h, &errbuf[0], C.size_t(len(errbuf))); s != C.CLIP_OK {
		return nil, newError(s, "open tokenizer", C.GoString(&errbuf[0]))
	}
	return &Tokenizer{h: h}, nil
}

// Tokenize turns UTF-8 text into ctx ids (ContextLength for CLIP): the start token, the BPE
// ids (cut so that the end token still fits), the end token, zeros. n is the number of BPE
// ids before the cut: the text was cut when n > ctx-2. Text that is not valid UTF-8 is an
// ErrInvalidArgument saying where.
func (t *Tokenizer) Tokenize(text string, ctx int) (ids []int32, n int, err error) {
	if ctx < 2 || ctx > 1<<30 {
		return nil, 0, &Error{Status: StatusInvalidArgument, Op: "tokenize", Msg: fmt.Sprintf("context length %d (want at least 2)", ctx)}
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.h == nil {
		return nil, 0, &Error{Status: StatusInvalidArgument, Op: "tokenize", Msg: "the tokenizer is closed"}
	}
	ids = make([]int32, ctx)
	var cn C.int
	// The text's bytes are read during the call only (no Go pointers in them).
	s := C.clip_tokenize(t.h, (*C.char)(unsafe.Pointer(unsafe.StringData(text))), C.size_t(len(text)),
		(*C.int32_t)(unsafe.Pointer(&ids[0])), C.int(ctx), &cn)
	if s != C.CLIP_OK {
		msg := ""
		if s == C.CLIP_ERR_INVALID_ARGUMENT && !utf8.ValidString(text) {
			msg = fmt.Sprintf("the text is not valid UTF-8 (at byte %d)", firstInvalidUTF8(text))
		}
		return nil, 0, newError(s, "tokenize", msg)
	}
	return ids, int(cn), nil
}

func firstInvalidUTF8(s string) int {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size <= 1 {
				return i
			}
		}
	}
	return len(s)
}

// Close frees the tokenizer once running Tokenize calls end; calling it again is a no-op.
func (t *Tokenizer) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.h != nil {
		C.clip_tokenizer_destroy(t.h)
		t.h = nil
	}
	return nil
}
