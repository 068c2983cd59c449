// reason.go: a failed object read worded as a short reason for a failed row, without the
// key (reasons are counted, so they must not differ per object).

package objstore

import (
	"context"
	"errors"
	"strings"

	"github.com/aws/smithy-go"
)

// Reason words err, from reading the object l, as a row's failure reason: "s3 no such
// object", "s3 no such bucket B", "s3 access denied (bucket B)", "s3 timeout", "s3 HTTP 500
// InternalError", ... The bucket is named where it is the cause, so that the counts of a
// run's reasons say which bucket refused.
func Reason(l Location, err error) string {
	var api smithy.APIError
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "s3 timeout"
	case errors.Is(err, ErrNotFound):
		return "s3 no such object"
	case errors.Is(err, ErrNoBucket):
		return "s3 no such bucket " + l.Bucket
	case errors.Is(err, ErrAccessDenied):
		return "s3 access denied (bucket " + l.Bucket + ")"
	case errors.Is(err, ErrCredentials):
		return "s3 bad credentials"
	case errors.Is(err, ErrUnreachable):
		return "s3 endpoint unreachable"
	case errors.As(err, &api):
		return "s3 " + api.ErrorCode()
	}
	// A transfer error: its message without the location it starts with.
	msg := err.Error()
	if i := strings.Index(msg, ": "); i >= 0 && IsURL(msg[:i]) {
		msg = msg[i+2:]
	}
	return "s3 read error: " + msg
}
