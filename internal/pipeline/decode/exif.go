// exif.go: the EXIF orientation tag of a JPEG (APP1 "Exif") and the flips/rotations that
// display it upright, as Pillow's ImageOps.exif_transpose applies them.

package decode

import "encoding/binary"

// jpegOrientation returns the EXIF orientation (1..8) of a JPEG, or 0 when it has none.
func jpegOrientation(d []byte) int {
	pos := 2
	for pos+4 <= len(d) {
		if d[pos] != 0xFF {
			return 0
		}
		marker := d[pos+1]
		if marker == 0xD8 || (marker >= 0xD0 && marker <= 0xD7) || marker == 0x01 || marker == 0xFF {
			pos++
			if marker != 0xFF {
				pos++
			}
			continue
		}
		if marker == 0xDA || marker == 0xD9 { // start of scan: no EXIF before it
			return 0
		}
		n := int(binary.BigEndian.Uint16(d[pos+2:]))
		if n < 2 || pos+2+n > len(d) {
			return 0
		}
		seg := d[pos+4 : pos+2+n]
		if marker == 0xE1 && len(seg) >= 6 && string(seg[:6]) == "Exif\x00\x00" {
			return tiffOrientation(seg[6:])
		}
		pos += 2 + n
	}
	return 0
}

// tiffOrientation reads tag 0x0112 from IFD0 of a TIFF header.
func tiffOrientation(t []byte) int {
	if len(t) < 8 {
		return 0
	}
	var bo binary.ByteOrder
	switch string(t[:2]) {
	case "II":
		bo = binary.LittleEndian
	case "MM":
		bo = binary.BigEndian
	default:
		return 0
	}
	ifd := int(bo.Uint32(t[4:]))
	if ifd < 8 || ifd+2 > len(t) {
		return 0
	}
	count := int(bo.Uint16(t[ifd:]))
	for i := 0; i < count; i++ {
		e := ifd + 2 + i*12
		if e+12 > len(t) {
			return 0
		}
		if bo.Uint16(t[e:]) == 0x0112 {
			typ := bo.Uint16(t[e+2:])
			var v int
			switch typ {
			case 3: // SHORT
				v = int(bo.Uint16(t[e+8:]))
			case 4: // LONG
				v = int(bo.Uint32(t[e+8:]))
			default:
				return 0
			}
			if v >= 1 && v <= 8 {
				return v
			}
			return 0
		}
	}
	return 0
}

// orient returns im displayed upright for EXIF orientation o (2..8), releasing im when it
// makes a new image. 2: mirror, 3: rotate 180, 4: flip, 5: transpose, 6: rotate 90 clockwise,
// 7: transverse, 8: rotate 90 counter-clockwise.
func orient(im *Image, o int) *Image {
	w, h := im.Width, im.Height
	dw, dh := w, h
	if o >= 5 {
		dw, dh = h, w
	}
	out := newImage(dw, dh)
	src, dst := im.RGB, out.RGB
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			var dx, dy int
			switch o {
			case 2:
				dx, dy = w-1-x, y
			case 3:
				dx, dy = w-1-x, h-1-y
			case 4:
				dx, dy = x, h-1-y
			case 5:
				dx, dy = y, x
			case 6:
				dx, dy = h-1-y, x
			case 7:
				dx, dy = h-1-y, w-1-x
			case 8:
				dx, dy = y, w-1-x
			default:
				dx, dy = x, y
			}
			s, d := (y*w+x)*3, (dy*dw+dx)*3
			dst[d], dst[d+1], dst[d+2] = src[s], src[s+1], src[s+2]
		}
	}
	im.Release()
	return out
}
