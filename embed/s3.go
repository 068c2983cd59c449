// s3.go: how a run reaches s3:// inputs and outputs.

package embed

import "github.com/clipd/clipd/internal/objstore"

// S3 is how s3:// locations are reached. The zero value is the standard AWS configuration:
// credentials from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), the shared
// config and credentials files (~/.aws, AWS_PROFILE), web identity or instance roles; the
// endpoint from AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL (S3-compatible stores), else AWS's.
type S3 struct {
	Endpoint string // an S3-compatible store's URL (http://127.0.0.1:8333); "" = as above
	Region   string // "" = AWS_REGION or the profile's, else us-east-1
	Profile  string // a profile of the shared files; "" = AWS_PROFILE or default
	// VirtualHost addresses buckets as BUCKET.host even with an Endpoint (path-style
	// otherwise, as S3-compatible stores expect).
	VirtualHost bool
}

// Options is the objstore client configuration of s (for the CLI's other commands).
func (s S3) Options() objstore.Options {
	return objstore.Options{Endpoint: s.Endpoint, Region: s.Region, Profile: s.Profile, VirtualHost: s.VirtualHost}
}
