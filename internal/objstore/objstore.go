// Package objstore is clipd's S3 client: s3://bucket/key locations, the standard AWS
// configuration (credential chain, profiles, region, AWS_ENDPOINT_URL for S3-compatible
// stores), streamed downloads to files, uploads that become visible only when complete
// (one PUT, or a multipart upload completed at the end), listing and removal, and errors
// classified so that a caller can say in one line what is wrong (see Classify).
package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// Scheme is the prefix of an object location.
const Scheme = "s3://"

// IsURL reports whether s names an object (s3://...).
func IsURL(s string) bool {
	return len(s) >= len(Scheme) && strings.EqualFold(s[:len(Scheme)], Scheme)
}

// Location is an object (Key) or a prefix (Key "" or ending in "/") in a bucket.
type Location struct {
	Bucket, Key string
}

// Parse reads s3://bucket/key. The key may be empty (the whole bucket).
func Parse(s string) (Location, error) {
	if !IsURL(s) {
		return Location{}, fmt.Errorf("%q is not an s3:// location (want s3://bucket/key)", s)
	}
	rest := s[len(Scheme):]
	bucket, key, _ := strings.Cut(rest, "/")
	if bucket == "" {
		return Location{}, fmt.Errorf("%q names no bucket (want s3://bucket/key)", s)
	}
	if strings.ContainsAny(bucket, " \t\r\n?#") {
		return Location{}, fmt.Errorf("%q: %q is not a bucket name", s, bucket)
	}
	return Location{Bucket: bucket, Key: key}, nil
}

// String is the location as Parse reads it.
func (l Location) String() string { return Scheme + l.Bucket + "/" + l.Key }

// Dir is the location as a prefix: its key ends in "/" (or is empty).
func (l Location) Dir() Location {
	if l.Key != "" && !strings.HasSuffix(l.Key, "/") {
		l.Key += "/"
	}
	return l
}

// Join is the object or prefix name inside the prefix l.
func (l Location) Join(name ...string) Location {
	l = l.Dir()
	l.Key += strings.Join(name, "/")
	return l
}

// Base is the last element of the key.
func (l Location) Base() string {
	k := strings.TrimSuffix(l.Key, "/")
	return k[strings.LastIndex(k, "/")+1:]
}

// Options configure a Client. The zero value is the standard AWS configuration.
type Options struct {
	// Endpoint of an S3-compatible store (http://127.0.0.1:8333); "" = AWS_ENDPOINT_URL_S3,
	// AWS_ENDPOINT_URL or the profile's endpoint_url, else AWS's.
	Endpoint string
	// Region; "" = AWS_REGION or the profile's, else us-east-1 (S3-compatible stores ignore it).
	Region string
	// Profile of the shared config and credentials files; "" = AWS_PROFILE or default.
	Profile string
	// VirtualHost addresses buckets as BUCKET.host (AWS's default) even with an Endpoint;
	// by default a custom endpoint is addressed path-style (host/BUCKET), as S3-compatible
	// stores expect.
	VirtualHost bool
	// MaxAttempts of one request (retries with backoff on 5xx, throttling and connection
	// errors); 0 = 6.
	MaxAttempts int
	// AccessKey and SecretKey, when set, are used instead of the credential chain.
	AccessKey, SecretKey string
	// PartSize of multipart uploads; 0 = 16 MiB (bigger for files over 160 GB: S3 allows
	// 10,000 parts). Uploads up to one part are one PUT.
	PartSize int64
	// BeforePart, when set, is called before each part of a multipart upload is sent: tests
	// slow an upload down with it, to stop the store in its middle.
	BeforePart func(part int32)
}

// Client talks to one S3 service. Safe for concurrent use.
type Client struct {
	s3       *s3.Client
	opt      Options
	endpoint string // for messages: the endpoint used, "" = AWS's
}

// New makes a client with the standard AWS configuration chain: environment, shared config
// and credentials files (~/.aws), profiles, web identity and instance roles. It does not
// connect; the first request does.
func New(ctx context.Context, opt Options) (*Client, error) {
	if opt.MaxAttempts <= 0 {
		opt.MaxAttempts = 6
	}
	if opt.PartSize <= 0 {
		opt.PartSize = 16 << 20
	}
	load := []func(*config.LoadOptions) error{
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = opt.MaxAttempts
				o.MaxBackoff = 10 * time.Second
			})
		}),
		// S3-compatible stores differ in the flexible checksums of newer SDKs; each upload
		// carries a Content-MD5 instead (putPart), which every S3 verifies.
		config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
	}
	if opt.Profile != "" {
		load = append(load, config.WithSharedConfigProfile(opt.Profile))
	}
	if opt.Region != "" {
		load = append(load, config.WithRegion(opt.Region))
	}
	if opt.AccessKey != "" {
		load = append(load, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(opt.AccessKey, opt.SecretKey, "")))
	}
	cfg, err := config.LoadDefaultConfig(ctx, load...)
	if err != nil {
		return nil, fmt.Errorf("%w: the AWS configuration cannot be read: %v", ErrCredentials, err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	c := &Client{opt: opt}
	c.s3 = s3.NewFromConfig(cfg, func(o *s3.Options) {
		if opt.Endpoint != "" {
			o.BaseEndpoint = aws.String(opt.Endpoint)
		}
		if o.BaseEndpoint != nil {
			c.endpoint = *o.BaseEndpoint
			o.UsePathStyle = !opt.VirtualHost
		}
	})
	return c, nil
}

// Endpoint is the endpoint requests go to, for messages ("AWS" when it is AWS's).
func (c *Client) Endpoint() string {
	if c.endpoint == "" {
		return "AWS"
	}
	return c.endpoint
}

// Info describes an object.
type Info struct {
	Location
	Size     int64
	ETag     string
	Modified time.Time
	Metadata map[string]string // user metadata (x-amz-meta-*), lower-case names
}

// CheckBucket fails when the bucket does not exist, cannot be reached or refuses these
// credentials: the first thing a run does, so that a typo fails before any work.
func (c *Client) CheckBucket(ctx context.Context, bucket string) error {
	_, err := c.s3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(bucket)})
	if err != nil && statusOf(err) == 403 {
		// A HEAD's answer has no body, so a wrong secret and a denied key look the same:
		// a one-key listing's error code tells them apart.
		_, lerr := c.s3.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), MaxKeys: aws.Int32(1)})
		if lerr == nil {
			return nil // listing allowed: a key that may list and write but not HEAD the bucket
		}
		err = lerr
	}
	if err != nil {
		return c.wrap(Location{Bucket: bucket}, "checking the bucket", err)
	}
	return nil
}

// MakeBucket creates a bucket (tests and set-up; clipd itself never creates buckets).
func (c *Client) MakeBucket(ctx context.Context, bucket string) error {
	_, err := c.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)})
	if err != nil && !isCode(err, "BucketAlreadyOwnedByYou") {
		return c.wrap(Location{Bucket: bucket}, "creating the bucket", err)
	}
	return nil
}

// Head describes one object; a missing one is ErrNotFound.
func (c *Client) Head(ctx context.Context, l Location) (Info, error) {
	out, err := c.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(l.Bucket), Key: aws.String(l.Key)})
	if err != nil && statusOf(err) == 403 {
		// As in CheckBucket: a one-byte GET's error code says why.
		if _, gerr := c.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(l.Bucket), Key: aws.String(l.Key), Range: aws.String("bytes=0-0")}); gerr != nil {
			err = gerr
		}
	}
	if err != nil {
		return Info{}, c.wrap(l, "reading", err)
	}
	return Info{Location: l, Size: aws.ToInt64(out.ContentLength), ETag: aws.ToString(out.ETag),
		Modified: aws.ToTime(out.LastModified), Metadata: out.Metadata}, nil
}

// Open streams an object: the caller reads and closes the body.
func (c *Client) Open(ctx context.Context, l Location) (io.ReadCloser, Info, error) {
	out, err := c.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(l.Bucket), Key: aws.String(l.Key)})
	if err != nil {
		return nil, Info{}, c.wrap(l, "reading", err)
	}
	info := Info{Location: l, Size: aws.ToInt64(out.ContentLength), ETag: aws.ToString(out.ETag),
		Modified: aws.ToTime(out.LastModified), Metadata: out.Metadata}
	return &checkedBody{r: out.Body, want: info.Size, loc: l}, info, nil
}

// checkedBody fails a read that ends before Content-Length bytes (a connection cut off).
type checkedBody struct {
	r    io.ReadCloser
	want int64
	got  int64
	loc  Location
}

func (b *checkedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.got += int64(n)
	if err == io.EOF && b.got < b.want {
		return n, fmt.Errorf("%s: the download ended after %d of %d bytes", b.loc, b.got, b.want)
	}
	return n, err
}

func (b *checkedBody) Close() error { return b.r.Close() }

// Download copies an object into path (written as path.tmp, fsynced and renamed), streaming:
// memory does not grow with the object's size.
func (c *Client) Download(ctx context.Context, l Location, path string) (Info, error) {
	body, info, err := c.Open(ctx, l)
	if err != nil {
		return Info{}, err
	}
	defer body.Close()
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return Info{}, err
	}
	_, err = io.Copy(f, body)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		if ctx.Err() != nil {
			return Info{}, ctx.Err()
		}
		return Info{}, c.wrap(l, "downloading", err)
	}
	return info, nil
}

// Upload copies the file at path to l. The object appears only once all of it is stored: up
// to PartSize it is one PUT, past it a multipart upload that is completed at the end (and
// aborted on failure), so no reader ever sees a partial object under l. Each request carries
// its bytes' MD5, which the store checks. meta is stored as user metadata.
func (c *Client) Upload(ctx context.Context, path string, l Location, meta map[string]string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	part := c.opt.PartSize
	for size/part >= 10000 {
		part *= 2
	}
	if size <= part {
		sum, err := md5Base64(io.NewSectionReader(f, 0, size))
		if err != nil {
			return err
		}
		_, err = c.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(l.Bucket), Key: aws.String(l.Key),
			Body: io.NewSectionReader(f, 0, size), ContentLength: aws.Int64(size), ContentMD5: aws.String(sum), Metadata: meta})
		if err != nil {
			return c.wrap(l, "uploading", err)
		}
		return nil
	}
	return c.multipart(ctx, f, size, part, l, meta)
}

// PutBytes stores a small object in one PUT.
func (c *Client) PutBytes(ctx context.Context, l Location, data []byte, meta map[string]string) error {
	sum, _ := md5Base64(strings.NewReader(string(data)))
	_, err := c.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(l.Bucket), Key: aws.String(l.Key),
		Body: strings.NewReader(string(data)), ContentLength: aws.Int64(int64(len(data))), ContentMD5: aws.String(sum), Metadata: meta})
	if err != nil {
		return c.wrap(l, "uploading", err)
	}
	return nil
}

// ReadSmall reads a whole object of at most limit bytes.
func (c *Client) ReadSmall(ctx context.Context, l Location, limit int64) ([]byte, error) {
	body, info, err := c.Open(ctx, l)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	if info.Size > limit {
		return nil, fmt.Errorf("%s: %d bytes, more than the %d expected", l, info.Size, limit)
	}
	data, err := io.ReadAll(io.LimitReader(body, limit+1))
	if err != nil {
		return nil, c.wrap(l, "reading", err)
	}
	return data, nil
}

// List is every object under the prefix l (recursively), in key order.
func (c *Client) List(ctx context.Context, l Location) ([]Info, error) {
	var out []Info
	p := s3.NewListObjectsV2Paginator(c.s3, &s3.ListObjectsV2Input{Bucket: aws.String(l.Bucket), Prefix: aws.String(l.Key)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, c.wrap(l, "listing", err)
		}
		for _, o := range page.Contents {
			out = append(out, Info{Location: Location{Bucket: l.Bucket, Key: aws.ToString(o.Key)},
				Size: aws.ToInt64(o.Size), ETag: aws.ToString(o.ETag), Modified: aws.ToTime(o.LastModified)})
		}
	}
	return out, nil
}

// Delete removes objects; a missing one is no error.
func (c *Client) Delete(ctx context.Context, ls ...Location) error {
	for _, l := range ls {
		_, err := c.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(l.Bucket), Key: aws.String(l.Key)})
		if err != nil && !errors.Is(c.wrap(l, "", err), ErrNotFound) {
			return c.wrap(l, "removing", err)
		}
	}
	return nil
}

// AbortUploads aborts the unfinished multipart uploads under the prefix l (what a killed
// upload leaves: invisible, but stored and billed) and returns how many there were.
func (c *Client) AbortUploads(ctx context.Context, l Location) (int, error) {
	n := 0
	in := &s3.ListMultipartUploadsInput{Bucket: aws.String(l.Bucket), Prefix: aws.String(l.Key)}
	for {
		out, err := c.s3.ListMultipartUploads(ctx, in)
		if err != nil {
			return n, c.wrap(l, "listing the unfinished uploads of", err)
		}
		for _, u := range out.Uploads {
			_, err := c.s3.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(l.Bucket), Key: u.Key, UploadId: u.UploadId})
			if err != nil && !isCode(err, "NoSuchUpload") {
				return n, c.wrap(Location{Bucket: l.Bucket, Key: aws.ToString(u.Key)}, "aborting an unfinished upload of", err)
			}
			n++
		}
		if !aws.ToBool(out.IsTruncated) {
			return n, nil
		}
		in.KeyMarker, in.UploadIdMarker = out.NextKeyMarker, out.NextUploadIdMarker
	}
}

// multipart uploads f's size bytes in parts of part bytes, then completes the upload; on any
// failure it aborts it, so nothing is left under l.
func (c *Client) multipart(ctx context.Context, f *os.File, size, part int64, l Location, meta map[string]string) error {
	created, err := c.s3.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(l.Bucket), Key: aws.String(l.Key), Metadata: meta})
	if err != nil {
		return c.wrap(l, "starting the upload of", err)
	}
	id := created.UploadId
	abort := func(err error) error {
		// A fresh context: the run's may be the reason this upload stops.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		c.s3.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{Bucket: aws.String(l.Bucket), Key: aws.String(l.Key), UploadId: id})
		return err
	}
	var parts []types.CompletedPart
	for num, off := int32(1), int64(0); off < size; num, off = num+1, off+part {
		n := min(part, size-off)
		if c.opt.BeforePart != nil {
			c.opt.BeforePart(num)
		}
		sum, err := md5Base64(io.NewSectionReader(f, off, n))
		if err != nil {
			return abort(err)
		}
		out, err := c.s3.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(l.Bucket), Key: aws.String(l.Key), UploadId: id,
			PartNumber: aws.Int32(num), Body: io.NewSectionReader(f, off, n), ContentLength: aws.Int64(n), ContentMD5: aws.String(sum)})
		if err != nil {
			return abort(c.wrap(l, fmt.Sprintf("uploading part %d of", num), err))
		}
		parts = append(parts, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(num)})
	}
	_, err = c.s3.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(l.Bucket), Key: aws.String(l.Key), UploadId: id,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}})
	if err != nil {
		return abort(c.wrap(l, "completing the upload of", err))
	}
	return nil
}

// LocalName is a file name for an object's local copy: its key's last element.
func LocalName(l Location) string {
	b := l.Base()
	if b == "" || b == "." || b == ".." {
		return "object"
	}
	return filepath.Base(b)
}

// statusOf is the HTTP status of a failed request, 0 when there was no answer.
func statusOf(err error) int {
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}
