// engine.go: the cgo wrapper of libclipengine's C API (engine/include/clipengine.h). All C
// status codes become *Error values here and nowhere else.

package engine

// How libclipengine is found is the link mode's business: link_intree.go (the default, the
// in-tree build/) or link_pkgconfig.go (-tags clipengine_pkgconfig: pkg-config clipengine).

/*
#include <stdlib.h>
#include "clipengine.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"unsafe"
)

// Status mirrors clip_status.
type Status int

// The C API's status codes.
const (
	StatusOK              Status = C.CLIP_OK
	StatusInvalidArgument Status = C.CLIP_ERR_INVALID_ARGUMENT
	StatusIO              Status = C.CLIP_ERR_IO
	StatusBadWeights      Status = C.CLIP_ERR_BAD_WEIGHTS
	StatusOutOfMemory     Status = C.CLIP_ERR_OUT_OF_MEMORY
	StatusBackend         Status = C.CLIP_ERR_BACKEND
	StatusUnsupported     Status = C.CLIP_ERR_UNSUPPORTED
	// Per-image statuses of EmbedEncoded only.
	StatusImageCorrupt   Status = C.CLIP_ERR_IMAGE_CORRUPT
	StatusImageTruncated Status = C.CLIP_ERR_IMAGE_TRUNCATED
	StatusImageTooLarge  Status = C.CLIP_ERR_IMAGE_TOO_LARGE
)

// Sentinel errors for errors.Is; every *Error matches the one of its status.
var (
	ErrInvalidArgument = errors.New("invalid argument")
	ErrIO              = errors.New("i/o error")
	ErrBadWeights      = errors.New("bad weights")
	ErrOutOfMemory     = errors.New("out of memory")
	ErrBackend         = errors.New("backend error")
	ErrUnsupported     = errors.New("unsupported")
	ErrClosed          = errors.New("engine is closed")
	// EmbedEncoded's per-image failures (an *ImageError matches one of these, or
	// ErrUnsupported for data that is not a JPEG, or ErrOutOfMemory).
	ErrImageCorrupt   = errors.New("corrupt image")
	ErrImageTruncated = errors.New("truncated image")
	ErrImageTooLarge  = errors.New("image too large")
)

// Error is a failed libclipengine call: the status and the library's message.
type Error struct {
	Status Status
	Op     string
	Msg    string
}

func (e *Error) Error() string {
	if e.Msg == "" {
		return fmt.Sprintf("%s: %s", e.Op, C.GoString(C.clip_status_string(C.clip_status(e.Status))))
	}
	return fmt.Sprintf("%s: %s", e.Op, e.Msg)
}

// Is maps the status to the sentinel errors.
func (e *Error) Is(target error) bool {
	switch e.Status {
	case StatusInvalidArgument:
		return target == ErrInvalidArgument
	case StatusIO:
		return target == ErrIO
	case StatusBadWeights:
		return target == ErrBadWeights
	case StatusOutOfMemory:
		return target == ErrOutOfMemory
	case StatusBackend:
		return target == ErrBackend
	case StatusUnsupported:
		return target == ErrUnsupported
	}
	return statusIs(e.Status, target)
}

// statusIs matches the per-image statuses to their sentinels (Error and ImageError).
func statusIs(s Status, target error) bool {
	switch s {
	case StatusImageCorrupt:
		return target == ErrImageCorrupt
	case StatusImageTruncated:
		return target == ErrImageTruncated
	case StatusImageTooLarge:
		return target == ErrImageTooLarge
	case StatusUnsupported:
		return target == ErrUnsupported
	case StatusOutOfMemory:
		return target == ErrOutOfMemory
	}
	return false
}

func newError(s C.clip_status, op, msg string) error {
	if s == C.CLIP_OK {
		return nil
	}
	return &Error{Status: Status(s), Op: op, Msg: msg}
}

// Backend selects the engine's compute backend.
type Backend int

// Backends, as in clip_backend.
const (
	BackendAuto Backend = C.CLIP_BACKEND_AUTO
	BackendCPU  Backend = C.CLIP_BACKEND_CPU
	BackendCUDA Backend = C.CLIP_BACKEND_CUDA
)

// ParseBackend reads "auto", "cpu" or "cuda".
func ParseBackend(s string) (Backend, error) {
	switch s {
	case "auto", "":
		return BackendAuto, nil
	case "cpu":
		return BackendCPU, nil
	case "cuda":
		return BackendCUDA, nil
	}
	return 0, fmt.Errorf("unknown backend %q (want auto, cpu or cuda)", s)
}

// String is "auto", "cpu" or "cuda" (what ParseBackend reads).
func (b Backend) String() string {
	switch b {
	case BackendAuto:
		return "auto"
	case BackendCPU:
		return "cpu"
	case BackendCUDA:
		return "cuda"
	}
	return fmt.Sprintf("Backend(%d)", int(b))
}

// Precision selects the compute precision.
type Precision int

// Precisions, as in clip_precision.
const (
	PrecisionAuto Precision = C.CLIP_PRECISION_AUTO
	PrecisionFP32 Precision = C.CLIP_PRECISION_FP32
	PrecisionFP16 Precision = C.CLIP_PRECISION_FP16
	PrecisionBF16 Precision = C.CLIP_PRECISION_BF16
)

// Options are clip_engine_params.
type Options struct {
	WeightsPath string
	Backend     Backend
	Device      int
	MaxBatch    int // 0 = engine default
	Precision   Precision
	Threads     int // 0 = all cores
}

// ModelInfo is clip_model_info.
type ModelInfo struct {
	ImageSize, PatchSize, Width, Layers, Heads, MLPWidth, EmbedDim int
	QuickGELU                                                      bool
}

// Image is an interleaved RGB8 image; Stride 0 means Width*3.
type Image struct {
	RGB           []byte
	Width, Height int
	Stride        int
}

func (im *Image) check(i int) error {
	stride := im.Stride
	if stride == 0 {
		stride = im.Width * 3
	}
	if im.Width <= 0 || im.Height <= 0 || stride < im.Width*3 {
		return &Error{Status: StatusInvalidArgument, Op: "embed", Msg: fmt.Sprintf("image %d: bad geometry %dx%d stride %d", i, im.Width, im.Height, im.Stride)}
	}
	need := stride*(im.Height-1) + im.Width*3
	if len(im.RGB) < need {
		return &Error{Status: StatusInvalidArgument, Op: "embed", Msg: fmt.Sprintf("image %d: %d bytes, %dx%d stride %d needs %d", i, len(im.RGB), im.Width, im.Height, stride, need)}
	}
	return nil
}

// Engine is one libclipengine handle. Its methods may be called from any goroutine; calls
// are serialized because the C engine is used by one thread at a time.
type Engine struct {
	mu   sync.Mutex
	h    *C.clip_engine
	info ModelInfo
	name string
}

// Open creates an engine.
func Open(o Options) (*Engine, error) {
	p := C.clip_engine_default_params()
	cpath := C.CString(o.WeightsPath)
	defer C.free(unsafe.Pointer(cpath))
	p.weights_path = cpath
	p.backend = C.clip_backend(o.Backend)
	p.device = C.int(o.Device)
	p.max_batch = C.int(o.MaxBatch)
	p.precision = C.clip_precision(o.Precision)
	p.threads = C.int(o.Threads)
	var errbuf [1024]C.char
	var h *C.clip_engine
	s := C.clip_engine_create(&p, &h, &errbuf[0], C.size_t(len(errbuf)))
	if s != C.CLIP_OK {
		return nil, newError(s, "open engine", C.GoString(&errbuf[0]))
	}
	var ci C.clip_model_info
	C.clip_engine_info(h, &ci)
	e := &Engine{h: h, name: C.GoString(C.clip_engine_backend_name(h)), info: modelInfo(&ci)}
	return e, nil
}

func modelInfo(ci *C.clip_model_info) ModelInfo {
	return ModelInfo{
		ImageSize: int(ci.image_size), PatchSize: int(ci.patch_size), Width: int(ci.width),
		Layers: int(ci.layers), Heads: int(ci.heads), MLPWidth: int(ci.mlp_width),
		EmbedDim: int(ci.embed_dim), QuickGELU: ci.quick_gelu != 0,
	}
}

// Probe reads the model config of a weights file (any form Options.WeightsPath takes)
// without creating an engine or converting a tensor. The file gets the checks Open gives it,
// with the same errors, so a file that probes loads; the ModelInfo is the one Open's engine
// reports.
func Probe(weightsPath string) (ModelInfo, error) {
	cpath := C.CString(weightsPath)
	defer C.free(unsafe.Pointer(cpath))
	var errbuf [1024]C.char
	var ci C.clip_model_info
	if s := C.clip_weights_probe(cpath, &ci, &errbuf[0], C.size_t(len(errbuf))); s != C.CLIP_OK {
		return ModelInfo{}, newError(s, "probe weights", C.GoString(&errbuf[0]))
	}
	return modelInfo(&ci), nil
}

// Params is the number of parameters of the vision tower m describes: the elements of every
// tensor the engine loads (patch embedding, class and position embeddings, the blocks, the
// LayerNorms and the projection), which the loader demands in exactly these shapes.
func (m ModelInfo) Params() int64 {
	W, M, E, P := int64(m.Width), int64(m.MLPWidth), int64(m.EmbedDim), int64(m.PatchSize)
	var T int64
	if m.PatchSize > 0 {
		g := int64(m.ImageSize / m.PatchSize)
		T = g*g + 1
	}
	block := 2*W + // ln_1
		3*W*W + 3*W + // qkv
		W*W + W + // out_proj
		2*W + // ln_2
		M*W + M + // fc1
		W*M + W // fc2
	return W*3*P*P + W + T*W + 2*W + int64(m.Layers)*block + 2*W + E*W
}

// ResolveBackend says which backend Open would use for b on the given CUDA device, without
// creating an engine or reading weights: BackendAuto becomes BackendCUDA when the library was
// built with CUDA and the device can run it, else BackendCPU (never an error); BackendCUDA
// without a usable device is an ErrUnsupported saying why. deviceName is the CUDA device's
// name ("cpu" for the CPU) and deviceMemory its total memory in bytes (0 for the CPU).
func ResolveBackend(b Backend, device int) (resolved Backend, deviceName string, deviceMemory int64, err error) {
	var bi C.clip_backend_info
	var errbuf [1024]C.char
	if s := C.clip_backend_resolve(C.clip_backend(b), C.int(device), &bi, &errbuf[0], C.size_t(len(errbuf))); s != C.CLIP_OK {
		return 0, "", 0, newError(s, "resolve backend", C.GoString(&errbuf[0]))
	}
	return Backend(bi.backend), C.GoString(&bi.device_name[0]), int64(bi.memory_bytes), nil
}

// Close frees the engine; calling it again is a no-op.
func (e *Engine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.h != nil {
		C.clip_engine_destroy(e.h)
		e.h = nil
	}
	return nil
}

// Info returns the model's shape.
func (e *Engine) Info() ModelInfo { return e.info }

// BackendName is e.g. "cpu 2 threads fp32".
func (e *Engine) BackendName() string { return e.name }

func (e *Engine) lastError(s C.clip_status, op string) error {
	return newError(s, op, C.GoString(C.clip_engine_last_error(e.h)))
}

// EmbedImages embeds len(images) RGB8 images of any size into out (len(images)*EmbedDim).
func (e *Engine) EmbedImages(images []Image, out []float32) error {
	n := len(images)
	if len(out) < n*e.info.EmbedDim {
		return &Error{Status: StatusInvalidArgument, Op: "embed", Msg: fmt.Sprintf("out has %d floats, want %d", len(out), n*e.info.EmbedDim)}
	}
	for i := range images {
		if err := images[i].check(i); err != nil {
			return err
		}
	}
	if n == 0 {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.h == nil {
		return ErrClosed
	}
	// Go memory handed to C may hold pointers to pinned Go memory (cgo rules since Go 1.21).
	var pin runtime.Pinner
	defer pin.Unpin()
	table := make([]C.clip_image, n)
	pin.Pin(&table[0])
	for i := range images {
		im := &images[i]
		pin.Pin(&im.RGB[0])
		table[i] = C.clip_image{
			rgb:    (*C.uint8_t)(unsafe.Pointer(&im.RGB[0])),
			width:  C.int(im.Width),
			height: C.int(im.Height),
			stride: C.int(im.Stride),
		}
	}
	s := C.clip_engine_embed_images(e.h, &table[0], C.int(n), (*C.float)(unsafe.Pointer(&out[0])))
	return e.lastError(s, "embed")
}

// EmbedPixels embeds n preprocessed images, float32 [n,3,S,S], into out (n*EmbedDim).
func (e *Engine) EmbedPixels(pixels []float32, n int, out []float32) error {
	S := e.info.ImageSize
	if n < 0 || len(pixels) < n*3*S*S || len(out) < n*e.info.EmbedDim {
		return &Error{Status: StatusInvalidArgument, Op: "embed", Msg: fmt.Sprintf("n=%d with %d pixels and %d outputs", n, len(pixels), len(out))}
	}
	if n == 0 {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.h == nil {
		return ErrClosed
	}
	s := C.clip_engine_embed_pixels(e.h, (*C.float)(unsafe.Pointer(&pixels[0])), C.int(n), (*C.float)(unsafe.Pointer(&out[0])))
	return e.lastError(s, "embed")
}

// ImageError is one image's failure in EmbedEncoded: its position in the batch, its
// per-image status and the reason worded as the Go decoder words it ("truncated jpeg",
// "corrupt jpeg: Bogus marker length", "too many pixels (30000x30000)", "not a jpeg (png)").
// errors.Is matches ErrImageCorrupt, ErrImageTruncated, ErrImageTooLarge, ErrUnsupported or
// ErrOutOfMemory.
type ImageError struct {
	Index  int
	Status Status
	Reason string
}

func (e *ImageError) Error() string { return e.Reason }

// Is maps the status to the sentinel errors.
func (e *ImageError) Is(target error) bool { return statusIs(e.Status, target) }

// EmbedEncoded embeds len(images) encoded images (JPEG; see clip_engine_embed_encoded in
// clipengine.h) into out (len(images)*EmbedDim). failed[i] is nil when image i was embedded,
// else its *ImageError, and out's row i is zeros: a bad image never fails the others. The
// error is for the call as a whole (closed engine, bad arguments, a backend failure), and
// then failed is nil.
func (e *Engine) EmbedEncoded(images [][]byte, out []float32) (failed []error, err error) {
	n := len(images)
	if len(out) < n*e.info.EmbedDim {
		return nil, &Error{Status: StatusInvalidArgument, Op: "embed encoded", Msg: fmt.Sprintf("out has %d floats, want %d", len(out), n*e.info.EmbedDim)}
	}
	if n == 0 {
		return nil, nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.h == nil {
		return nil, ErrClosed
	}
	// The pointer table lives in C memory; the images it points at are pinned.
	ptrs := (*[1 << 30]*C.uint8_t)(C.malloc(C.size_t(n) * C.size_t(unsafe.Sizeof((*C.uint8_t)(nil)))))[:n:n]
	defer C.free(unsafe.Pointer(&ptrs[0]))
	sizes := make([]C.size_t, n)
	status := make([]C.clip_status, n)
	var pin runtime.Pinner
	defer pin.Unpin()
	for i, b := range images {
		ptrs[i] = nil
		if len(b) > 0 {
			pin.Pin(&b[0])
			ptrs[i] = (*C.uint8_t)(unsafe.Pointer(&b[0]))
		}
		sizes[i] = C.size_t(len(b))
	}
	s := C.clip_engine_embed_encoded(e.h, &ptrs[0], &sizes[0], C.int(n), (*C.float)(unsafe.Pointer(&out[0])), &status[0])
	if s != C.CLIP_OK {
		return nil, e.lastError(s, "embed encoded")
	}
	failed = make([]error, n)
	for i, st := range status {
		if st != C.CLIP_OK {
			failed[i] = &ImageError{Index: i, Status: Status(st), Reason: C.GoString(C.clip_engine_image_error(e.h, C.int(i)))}
		}
	}
	return failed, nil
}

// DecodeOptions are clip_decode_options: how EmbedEncoded decodes. The zero value is the
// default: Pillow's pixel limit, EXIF orientation ignored.
type DecodeOptions struct {
	MaxPixels            int64 // 0 = 89478485 (Pillow's MAX_IMAGE_PIXELS), < 0 = no limit
	ApplyEXIFOrientation bool
}

// SetDecodeOptions sets the options of the following EmbedEncoded calls.
func (e *Engine) SetDecodeOptions(o DecodeOptions) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.h == nil {
		return ErrClosed
	}
	var co C.clip_decode_options
	co.max_pixels = C.int64_t(o.MaxPixels)
	if o.ApplyEXIFOrientation {
		co.apply_exif_orientation = 1
	}
	return e.lastError(C.clip_engine_set_decode_options(e.h, &co), "set decode options")
}

// DecodeStats are clip_decode_stats: EmbedEncoded's counters since Open. DeviceDecoded +
// CPUDecoded + Failed is the number of images passed.
type DecodeStats struct {
	DeviceDecoded   int64 // by nvJPEG on the GPU
	HardwareDecoded int64 // of DeviceDecoded: by the GPU's hardware JPEG engine
	CPUDecoded      int64 // by libjpeg-turbo on the CPU (CPU backend, CUDA fallbacks)
	Failed          int64
	CPUFallbacks    int64 // of CPUDecoded + Failed: images the CUDA backend sent to the CPU decoder
}

// DecodeStats returns the engine's decode counters.
func (e *Engine) DecodeStats() (DecodeStats, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.h == nil {
		return DecodeStats{}, ErrClosed
	}
	var cs C.clip_decode_stats
	C.clip_engine_decode_stats(e.h, &cs)
	return DecodeStats{
		DeviceDecoded: int64(cs.device_decoded), HardwareDecoded: int64(cs.hardware_decoded),
		CPUDecoded: int64(cs.cpu_decoded), Failed: int64(cs.failed), CPUFallbacks: int64(cs.cpu_fallbacks),
	}, nil
}

// DecodeDeviceBytes is the device memory that EmbedEncoded's device decoding adds to a CUDA
// engine opened with this MaxBatch (0 = the engine default): what a memory plan adds to the
// weights and activations. 0 for a library without the CUDA backend or without nvJPEG.
func DecodeDeviceBytes(maxBatch int) (int64, error) {
	var b C.int64_t
	if s := C.clip_decode_device_bytes(C.int(maxBatch), &b); s != C.CLIP_OK {
		return 0, newError(s, "decode device bytes", fmt.Sprintf("max batch %d", maxBatch))
	}
	return int64(b), nil
}

// PreprocessU8 is the CPU reference preprocessing's uint8 stage: the size x size RGB8 crop
// (Pillow-exact bicubic resize of the shorter side, torchvision center crop).
func PreprocessU8(im Image, size int) ([]byte, error) {
	if err := im.check(0); err != nil {
		return nil, err
	}
	if size <= 0 {
		return nil, &Error{Status: StatusInvalidArgument, Op: "preprocess", Msg: fmt.Sprintf("size %d", size)}
	}
	out := make([]byte, size*size*3)
	var pin runtime.Pinner
	defer pin.Unpin()
	pin.Pin(&im.RGB[0])
	ci := C.clip_image{rgb: (*C.uint8_t)(unsafe.Pointer(&im.RGB[0])), width: C.int(im.Width), height: C.int(im.Height), stride: C.int(im.Stride)}
	s := C.clip_preprocess_image_u8(&ci, C.int(size), (*C.uint8_t)(unsafe.Pointer(&out[0])))
	if s != C.CLIP_OK {
		return nil, newError(s, "preprocess", fmt.Sprintf("%dx%d image", im.Width, im.Height))
	}
	return out, nil
}

// TextInfo is clip_text_info: the shape of the text tower (CLIP's encode_text).
type TextInfo struct {
	ContextLength, VocabSize, Width, Layers, Heads, EmbedDim int
	QuickGELU                                                bool
}

func textInfo(ci *C.clip_text_info) TextInfo {
	return TextInfo{
		ContextLength: int(ci.context_length), VocabSize: int(ci.vocab_size), Width: int(ci.width),
		Layers: int(ci.layers), Heads: int(ci.heads), EmbedDim: int(ci.embed_dim),
		QuickGELU: ci.quick_gelu != 0,
	}
}

// ProbeText reads the text tower's config of a weights file without creating an engine, as
// Probe does for the vision tower. A file without a text tower (or with one the library
// cannot run) is an ErrUnsupported error saying why.
func ProbeText(weightsPath string) (TextInfo, error) {
	cpath := C.CString(weightsPath)
	defer C.free(unsafe.Pointer(cpath))
	var errbuf [1024]C.char
	var ci C.clip_text_info
	if s := C.clip_weights_probe_text(cpath, &ci, &errbuf[0], C.size_t(len(errbuf))); s != C.CLIP_OK {
		return TextInfo{}, newError(s, "probe text tower", C.GoString(&errbuf[0]))
	}
	return textInfo(&ci), nil
}

// TextInfo returns the text tower's shape, or an ErrUnsupported error saying why the weights
// have none (a vision-only file).
func (e *Engine) TextInfo() (TextInfo, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.h == nil {
		return TextInfo{}, ErrClosed
	}
	var ci C.clip_text_info
	if s := C.clip_engine_text_info(e.h, &ci); s != C.CLIP_OK {
		return TextInfo{}, e.lastError(s, "text info")
	}
	return textInfo(&ci), nil
}

// EmbedTokens embeds n token sequences into out (n*EmbedDim), NOT L2-normalized (CLIP's
// encode_text). tokens holds n*ContextLength ids, each sequence as clip_tokenize lays it out
// (start token, BPE ids, end token, zeros); the state is taken at each sequence's largest id
// (the end token). An id outside [0, VocabSize) is an ErrInvalidArgument naming the sequence
// and position; weights without a text tower give ErrUnsupported.
func (e *Engine) EmbedTokens(tokens []int32, n int, out []float32) error {
	ti, err := e.TextInfo()
	if err != nil {
		return err
	}
	if n < 0 || len(tokens) < n*ti.ContextLength || len(out) < n*ti.EmbedDim {
		return &Error{Status: StatusInvalidArgument, Op: "embed tokens", Msg: fmt.Sprintf("n=%d with %d ids (want %d per sequence) and %d outputs (want %d per sequence)", n, len(tokens), ti.ContextLength, len(out), ti.EmbedDim)}
	}
	if n == 0 {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.h == nil {
		return ErrClosed
	}
	s := C.clip_engine_embed_tokens(e.h, (*C.int32_t)(unsafe.Pointer(&tokens[0])), C.int(n), (*C.float)(unsafe.Pointer(&out[0])))
	return e.lastError(s, "embed tokens")
}

// Version is clip_version().
func Version() string { return C.GoString(C.clip_version()) }
