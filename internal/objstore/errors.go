// errors.go: what went wrong with a request, in the classes a user can act on, each with a
// one-line message that says what to do.

package objstore

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/aws/smithy-go"
)

// The classes of failures (errors.Is). Every error of a Client's method wraps one of them or
// is a plain transfer error.
var (
	// ErrNotFound: the object (or bucket, for object calls) does not exist.
	ErrNotFound = errors.New("not found")
	// ErrNoBucket: the bucket does not exist.
	ErrNoBucket = errors.New("no such bucket")
	// ErrAccessDenied: the credentials are valid but not allowed to do this.
	ErrAccessDenied = errors.New("access denied")
	// ErrCredentials: no credentials were found, or the store rejects them (unknown key,
	// wrong secret).
	ErrCredentials = errors.New("bad credentials")
	// ErrUnreachable: no answer from the endpoint (refused, DNS, timeout) after the retries.
	ErrUnreachable = errors.New("endpoint unreachable")
)

// Refused reports whether err is one the store or its configuration gives: credentials,
// access, a missing bucket or an unreachable endpoint (clipd's exit code 7).
func Refused(err error) bool {
	return errors.Is(err, ErrNoBucket) || errors.Is(err, ErrAccessDenied) || errors.Is(err, ErrCredentials) || errors.Is(err, ErrUnreachable)
}

// s3Error is a classified failure: class for errors.Is, the SDK's error kept for errors.As.
type s3Error struct {
	class error
	msg   string
	err   error
}

func (e *s3Error) Error() string   { return e.msg }
func (e *s3Error) Unwrap() []error { return []error{e.class, e.err} }

// wrap classifies err from a request on l and words it as one line: "s3://b/k: <what went
// wrong> while <doing>; <what to do>".
func (c *Client) wrap(l Location, doing string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var done *s3Error
	if errors.As(err, &done) {
		return err
	}
	where := l.String()
	if l.Key == "" {
		where = Scheme + l.Bucket
	}
	if doing != "" {
		doing = " " + doing
	}
	code := ""
	var api smithy.APIError
	if errors.As(err, &api) {
		code = api.ErrorCode()
	}
	status := statusOf(err)
	mk := func(class error, format string, args ...any) error {
		return &s3Error{class: class, msg: fmt.Sprintf(format, args...), err: err}
	}
	switch {
	case code == "NoSuchBucket" || (l.Key == "" && status == 404):
		return mk(ErrNoBucket, "%s: bucket %q does not exist at %s; check the bucket name, --s3-endpoint and the region", where, l.Bucket, c.Endpoint())
	case code == "InvalidAccessKeyId" || code == "SignatureDoesNotMatch" || code == "InvalidToken" || code == "ExpiredToken" || code == "AuthorizationHeaderMalformed":
		return mk(ErrCredentials, "%s: %s rejects the credentials (%s); check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the profile (AWS_PROFILE, ~/.aws/credentials)", where, c.Endpoint(), code)
	case code == "AccessDenied" || code == "AllAccessDisabled" || status == 403:
		return mk(ErrAccessDenied, "%s: access denied%s (HTTP 403 from %s); the credentials are not allowed to do this: check the bucket's policy and the key's permissions", where, doing, c.Endpoint())
	case code == "NoSuchKey" || code == "NotFound" || status == 404:
		return mk(ErrNotFound, "%s: no such object", where)
	case noCredentials(err):
		return mk(ErrCredentials, "%s: no AWS credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile in ~/.aws/credentials (AWS_PROFILE)", where)
	case unreachable(err):
		return mk(ErrUnreachable, "%s: %s cannot be reached (%s); check --s3-endpoint / AWS_ENDPOINT_URL and the network", where, c.Endpoint(), shortCause(err))
	}
	if code != "" {
		return mk(errors.New(code), "%s: %s%s failed: %s (HTTP %d)", where, c.Endpoint(), doing, code, status)
	}
	return mk(errors.New("transfer"), "%s:%s failed: %s", where, doing, shortCause(err))
}

// noCredentials reports the SDK's "no credentials in the chain".
func noCredentials(err error) bool {
	s := err.Error()
	return strings.Contains(s, "failed to retrieve credentials") || strings.Contains(s, "no EC2 IMDS role found") ||
		strings.Contains(s, "static credentials are empty")
}

// unreachable reports a failure to connect (refused, no route, DNS, a dial timeout).
func unreachable(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return true
	}
	s := err.Error()
	return strings.Contains(s, "connection refused") || strings.Contains(s, "no such host") || strings.Contains(s, "i/o timeout")
}

// shortCause is the innermost part of an SDK error chain ("dial tcp ...: connection refused").
func shortCause(err error) string {
	var op *net.OpError
	if errors.As(err, &op) {
		return op.Error()
	}
	s := err.Error()
	if i := strings.LastIndex(s, ", "); i >= 0 && i+2 < len(s) {
		s = s[i+2:]
	}
	return s
}

// isCode reports an S3 error code.
func isCode(err error, code string) bool {
	var api smithy.APIError
	return errors.As(err, &api) && api.ErrorCode() == code
}

// md5Base64 is the Content-MD5 of r's bytes.
func md5Base64(r io.Reader) (string, error) {
	h := md5.New()
	if _, err := io.Copy(h, r); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(h.Sum(nil)), nil
}
