// range.go: reading an object on from an offset, only while it is still the same version: how
// a long stream (a list read over a whole run) continues after its connection is lost.

package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// ErrChanged: the object is no longer the version asked for (its ETag differs).
var ErrChanged = errors.New("object changed")

// OpenFrom streams the object l from byte offset on, provided its ETag is still etag; when
// it is not, the error is ErrChanged. The Info's Size is the bytes from offset on. The
// caller reads and closes the body.
func (c *Client) OpenFrom(ctx context.Context, l Location, offset int64, etag string) (io.ReadCloser, Info, error) {
	out, err := c.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(l.Bucket), Key: aws.String(l.Key),
		Range: aws.String(fmt.Sprintf("bytes=%d-", offset)), IfMatch: aws.String(etag)})
	if err != nil {
		if statusOf(err) == 412 || isCode(err, "PreconditionFailed") {
			return nil, Info{}, &s3Error{class: ErrChanged, msg: fmt.Sprintf("%s: the object was written again while it was read (its ETag is no longer %s)", l, etag), err: err}
		}
		return nil, Info{}, c.wrap(l, "reading", err)
	}
	info := Info{Location: l, Size: aws.ToInt64(out.ContentLength), ETag: aws.ToString(out.ETag),
		Modified: aws.ToTime(out.LastModified), Metadata: out.Metadata}
	return &checkedBody{r: out.Body, want: info.Size, loc: l}, info, nil
}
