package embed

import "testing"

// An s3:// input is recorded in the run's identity as it was given: it names an object, not
// a file under the working folder (it used to become "/cwd/s3:/b/list.txt").
func TestResolveInputKeepsObjects(t *testing.T) {
	for _, in := range []string{"s3://b/list.txt", "S3://b/shards/{00000..00003}.tar", "s3://b/k with space.csv"} {
		if got := resolveInput(in); got != in {
			t.Errorf("resolveInput(%q) = %q, want it unchanged", in, got)
		}
	}
}
