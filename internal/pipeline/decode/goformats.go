// goformats.go: PNG, GIF (first frame), WebP and BMP through Go's decoders, converted to RGB8
// as Pillow's convert('RGB') does: alpha dropped (never composited), palette entries taken as
// they are, 16-bit samples reduced as Pillow's unpackers reduce them.

package decode

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"image/gif"
	"image/png"
	"io"
	"strings"

	"golang.org/x/image/bmp"
	"golang.org/x/image/webp"
)

func decodeGo(data []byte, format string, opt Options) (*Image, error) {
	var cfg image.Config
	var err error
	switch format {
	case "png":
		cfg, err = png.DecodeConfig(bytes.NewReader(data))
	case "gif":
		cfg, err = gif.DecodeConfig(bytes.NewReader(data))
	case "webp":
		cfg, err = webp.DecodeConfig(bytes.NewReader(data))
	case "bmp":
		cfg, err = bmp.DecodeConfig(bytes.NewReader(data))
	}
	if err != nil {
		return nil, goError(err, format)
	}
	if err := opt.checkPixels(cfg.Width, cfg.Height); err != nil {
		return nil, withFormat(err, format)
	}
	var m image.Image
	switch format {
	case "png":
		m, err = png.Decode(bytes.NewReader(data))
	case "gif":
		m, err = gif.Decode(bytes.NewReader(data)) // the first frame only
		if err == nil {
			restoreGIFTransparentEntry(m, data)
		}
	case "webp":
		m, err = webp.Decode(bytes.NewReader(data))
	case "bmp":
		m, err = bmp.Decode(bytes.NewReader(data))
	}
	if err != nil {
		return nil, goError(err, format)
	}
	// Pillow reads a 16-bit grayscale PNG as mode "I" and its I -> RGB conversion clips each
	// value at 255 (it does not scale); 16-bit RGB, RGBA and gray+alpha keep the high byte.
	gray16Clip := format == "png" && len(data) > 25 && data[24] == 16 && data[25] == 0
	b := m.Bounds()
	if format == "gif" && (b.Dx() != cfg.Width || b.Dy() != cfg.Height) {
		// The first frame covers part of the logical screen; the rest stays zero.
		full := image.NewPaletted(image.Rect(0, 0, cfg.Width, cfg.Height), m.(*image.Paletted).Palette)
		copyPaletted(full, m.(*image.Paletted))
		m, b = full, full.Bounds()
	}
	im := newImage(b.Dx(), b.Dy())
	toRGB(im, m, gray16Clip)
	return im, nil
}

func goError(err error, format string) error {
	// Go's decoders report a short stream as EOF or as "not enough" data.
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || strings.Contains(err.Error(), "not enough") {
		return &Error{Kind: ErrTruncated, Format: format}
	}
	return &Error{Kind: ErrCorrupt, Format: format, Detail: err.Error()}
}

func copyPaletted(dst, src *image.Paletted) {
	r := src.Bounds().Intersect(dst.Bounds())
	for y := r.Min.Y; y < r.Max.Y; y++ {
		copy(dst.Pix[dst.PixOffset(r.Min.X, y):dst.PixOffset(r.Max.X, y)], src.Pix[src.PixOffset(r.Min.X, y):src.PixOffset(r.Max.X, y)])
	}
}

// toRGB writes m's colour channels into im (same size), dropping alpha without compositing.
func toRGB(im *Image, m image.Image, gray16Clip bool) {
	b := m.Bounds()
	w, h := b.Dx(), b.Dy()
	out := im.RGB
	switch s := m.(type) {
	case *image.Gray:
		for y := 0; y < h; y++ {
			row := s.Pix[y*s.Stride : y*s.Stride+w]
			o := out[y*w*3:]
			for x, v := range row {
				o[x*3], o[x*3+1], o[x*3+2] = v, v, v
			}
		}
	case *image.Gray16:
		for y := 0; y < h; y++ {
			row := s.Pix[y*s.Stride : y*s.Stride+w*2]
			o := out[y*w*3:]
			for x := 0; x < w; x++ {
				v := reduce16(row[x*2], row[x*2+1], gray16Clip)
				o[x*3], o[x*3+1], o[x*3+2] = v, v, v
			}
		}
	case *image.NRGBA:
		copyRGB(out, s.Pix, s.Stride, w, h, 4)
	case *image.RGBA:
		// Go's PNG decoder uses RGBA only for opaque images and x/image/bmp stores its samples
		// unpremultiplied: the channels are taken as they are.
		copyRGB(out, s.Pix, s.Stride, w, h, 4)
	case *image.NRGBA64:
		copyRGB16(out, s.Pix, s.Stride, w, h, gray16Clip)
	case *image.RGBA64:
		copyRGB16(out, s.Pix, s.Stride, w, h, false)
	case *image.Paletted:
		var lut [256][3]byte
		for i, c := range s.Palette {
			lut[i] = paletteRGB(c)
		}
		for y := 0; y < h; y++ {
			row := s.Pix[y*s.Stride : y*s.Stride+w]
			o := out[y*w*3:]
			for x, v := range row {
				e := &lut[v]
				o[x*3], o[x*3+1], o[x*3+2] = e[0], e[1], e[2]
			}
		}
	case *image.YCbCr:
		ycbcrToRGB(out, s)
	case *image.NYCbCrA:
		ycbcrToRGB(out, &s.YCbCr)
	default:
		i := 0
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				c := color.NRGBAModel.Convert(m.At(x, y)).(color.NRGBA)
				out[i], out[i+1], out[i+2] = c.R, c.G, c.B
				i += 3
			}
		}
	}
}

func reduce16(hi, lo byte, clip bool) byte {
	if clip {
		if hi != 0 {
			return 255
		}
		return lo
	}
	return hi
}

func copyRGB(out, pix []byte, stride, w, h, bpp int) {
	for y := 0; y < h; y++ {
		row := pix[y*stride : y*stride+w*bpp]
		o := out[y*w*3 : (y+1)*w*3]
		for x := 0; x < w; x++ {
			o[x*3], o[x*3+1], o[x*3+2] = row[x*bpp], row[x*bpp+1], row[x*bpp+2]
		}
	}
}

// copyRGB16 takes 16-bit big-endian RGBA samples: the high byte (Pillow's "RGB;16B" and
// "RGBA;16B" unpackers), or, for 16-bit gray with a tRNS key (Go gives NRGBA64, Pillow mode
// "I"), the value clipped at 255.
func copyRGB16(out, pix []byte, stride, w, h int, clip bool) {
	for y := 0; y < h; y++ {
		row := pix[y*stride : y*stride+w*8]
		o := out[y*w*3 : (y+1)*w*3]
		for x := 0; x < w; x++ {
			p := row[x*8:]
			o[x*3] = reduce16(p[0], p[1], clip)
			o[x*3+1] = reduce16(p[2], p[3], clip)
			o[x*3+2] = reduce16(p[4], p[5], clip)
		}
	}
}

func paletteRGB(c color.Color) [3]byte {
	switch v := c.(type) {
	case color.RGBA:
		return [3]byte{v.R, v.G, v.B}
	case color.NRGBA:
		return [3]byte{v.R, v.G, v.B}
	}
	n := color.NRGBAModel.Convert(c).(color.NRGBA)
	return [3]byte{n.R, n.G, n.B}
}

// ycbcrToRGB converts a lossy WebP's 4:2:0 YUV planes as libwebp (Pillow's WebP reader)
// does by default: "fancy" chroma upsampling (9-3-3-1 weights, rows paired around each chroma
// row) and BT.601 limited-range YUV -> RGB in 14-bit fixed point. Go's own YCbCr conversion
// (nearest chroma, full-range JFIF) would be off by ~10 levels on average.
func ycbcrToRGB(out []byte, s *image.YCbCr) {
	w, h := s.Rect.Dx(), s.Rect.Dy()
	if s.SubsampleRatio != image.YCbCrSubsampleRatio420 {
		i := 0
		for y := s.Rect.Min.Y; y < s.Rect.Max.Y; y++ {
			for x := s.Rect.Min.X; x < s.Rect.Max.X; x++ {
				yi, ci := s.YOffset(x, y), s.COffset(x, y)
				out[i], out[i+1], out[i+2] = webpYUVToRGB(s.Y[yi], s.Cb[ci], s.Cr[ci])
				i += 3
			}
		}
		return
	}
	yRow := func(y int) []byte { return s.Y[y*s.YStride : y*s.YStride+w] }
	cw := (w + 1) / 2
	uRow := func(c int) []byte { return s.Cb[c*s.CStride : c*s.CStride+cw] }
	vRow := func(c int) []byte { return s.Cr[c*s.CStride : c*s.CStride+cw] }
	dst := func(y int) []byte { return out[y*w*3 : (y+1)*w*3] }
	// Row 0 from chroma row 0 alone; rows 2k-1 and 2k from chroma rows k-1 (near the first)
	// and k (near the second); the last row of an even height from the last chroma row alone.
	upsampleRow(yRow(0), uRow(0), vRow(0), uRow(0), vRow(0), dst(0))
	for y := 1; y+1 < h; y += 2 {
		k := (y + 1) / 2
		upsampleRow(yRow(y), uRow(k-1), vRow(k-1), uRow(k), vRow(k), dst(y))
		upsampleRow(yRow(y+1), uRow(k), vRow(k), uRow(k-1), vRow(k-1), dst(y+1))
	}
	if h > 1 && h%2 == 0 {
		k := h/2 - 1
		upsampleRow(yRow(h-1), uRow(k), vRow(k), uRow(k), vRow(k), dst(h-1))
	}
}

// upsampleRow converts one output row whose nearer chroma row is (nu, nv) and farther one
// (fu, fv): vertical weights 3:1, horizontal 3:1, i.e. 9-3-3-1 over the four neighbours with
// libwebp's rounding (an average of two 8-scaled diagonal terms).
func upsampleRow(y, nu, nv, fu, fv, out []byte) {
	w := len(y)
	put := func(x, u, v int) {
		out[x*3], out[x*3+1], out[x*3+2] = webpYUVToRGB(y[x], byte(u), byte(v))
	}
	edge := func(n, f int) int { return (3*n + f + 2) >> 2 }
	// inner: pixel nearest to chroma column a (near row n*, far row f*), next column b.
	inner := func(na, fa, nb, fb int) int {
		avg := na + fa + nb + fb + 8
		diag := (avg + 2*(fa+nb)) >> 3
		return (diag + na) >> 1
	}
	put(0, edge(int(nu[0]), int(fu[0])), edge(int(nv[0]), int(fv[0])))
	last := (w - 1) >> 1
	for x := 1; x <= last; x++ {
		nua, fua, nub, fub := int(nu[x-1]), int(fu[x-1]), int(nu[x]), int(fu[x])
		nva, fva, nvb, fvb := int(nv[x-1]), int(fv[x-1]), int(nv[x]), int(fv[x])
		put(2*x-1, inner(nua, fua, nub, fub), inner(nva, fva, nvb, fvb))
		put(2*x, inner(nub, fub, nua, fua), inner(nvb, fvb, nva, fva))
	}
	if w%2 == 0 && w > 1 {
		c := w/2 - 1
		put(w-1, edge(int(nu[c]), int(fu[c])), edge(int(nv[c]), int(fv[c])))
	}
}

func webpYUVToRGB(y, u, v byte) (byte, byte, byte) {
	yy := int(y) * 19077 >> 8
	r := yy + int(v)*26149>>8 - 14234
	g := yy - int(u)*6419>>8 - int(v)*13320>>8 + 8708
	b := yy + int(u)*33050>>8 - 17685
	return clip14(r), clip14(g), clip14(b)
}

func clip14(v int) byte {
	if v&^(256<<6-1) == 0 {
		return byte(v >> 6)
	}
	if v < 0 {
		return 0
	}
	return 255
}

// restoreGIFTransparentEntry puts back the real colour of the first frame's transparent
// palette entry, which Go's decoder replaces with transparent black: Pillow keeps the P-mode
// pixels and convert('RGB') shows the entry's RGB.
func restoreGIFTransparentEntry(m image.Image, data []byte) {
	p, ok := m.(*image.Paletted)
	if !ok {
		return
	}
	table, ti := gifFirstFrameTable(data)
	if ti < 0 || ti >= len(p.Palette) || 3*ti+2 >= len(table) {
		return
	}
	p.Palette[ti] = color.RGBA{table[3*ti], table[3*ti+1], table[3*ti+2], 255}
}

// gifFirstFrameTable walks the GIF blocks to the first image descriptor and returns the colour
// table that frame uses (local, else global) and its transparent index (-1 when none).
func gifFirstFrameTable(d []byte) (table []byte, transparent int) {
	transparent = -1
	if len(d) < 13 {
		return nil, -1
	}
	pos := 13
	if d[10]&0x80 != 0 {
		n := 3 << (d[10]&7 + 1)
		if pos+n > len(d) {
			return nil, -1
		}
		table = d[pos : pos+n]
		pos += n
	}
	for pos < len(d) {
		switch d[pos] {
		case 0x21: // extension
			if pos+2 > len(d) {
				return nil, -1
			}
			label := d[pos+1]
			pos += 2
			if label == 0xF9 && pos+5 < len(d) && d[pos] == 4 && d[pos+1]&1 != 0 {
				transparent = int(d[pos+4])
			}
			for pos < len(d) && d[pos] != 0 { // sub-blocks
				pos += int(d[pos]) + 1
			}
			pos++
		case 0x2C: // image descriptor
			if pos+10 > len(d) {
				return nil, -1
			}
			flags := d[pos+9]
			pos += 10
			if flags&0x80 != 0 {
				n := 3 << (flags&7 + 1)
				if pos+n > len(d) {
					return nil, -1
				}
				table = d[pos : pos+n]
			}
			return table, transparent
		default:
			return nil, -1
		}
	}
	return nil, -1
}
