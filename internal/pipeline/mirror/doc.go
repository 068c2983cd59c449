// Package mirror keeps an s3:// prefix a copy of a run's local output folder (its staging
// folder): at the start the folder is filled from what the bucket holds (so a run resumes on
// any machine), while the run goes each finished chunk is uploaded in the background, and at
// the end the final file is uploaded and the run's chunks and state are removed from the
// bucket.
package mirror
