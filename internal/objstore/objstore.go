// Package objstore is sbx's client for one S3-compatible bucket: the object
// storage that servers sharing a bucket keep templates in (see
// docs/operations.md, "Object storage").
//
// # Overview
//
// A [Bucket] is opened from a URL
//
//	s3://BUCKET[/PREFIX]?endpoint=http://127.0.0.1:8333[&region=us-east-1]
//
// with credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY. Every
// key is relative to PREFIX. Objects are streamed both ways: [Bucket.Put]
// sends large objects in parts and never holds a whole object in memory,
// [Bucket.Get] returns the body as it arrives. A missing key is
// errdefs.ErrNotFound; refused credentials are errdefs.ErrUnauthenticated.
//
// # Usage
//
//	b, err := objstore.Open(ctx, "s3://sbx?endpoint=http://127.0.0.1:8333", objstore.EnvCredentials())
//	err = b.Put(ctx, "templates/base.json", r, size)
//	rc, err := b.Get(ctx, "templates/base.json")
package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/sbxdev/sbx/internal/errdefs"
)

// partSize is the size of each part of a multipart upload, and so the
// memory one upload of unknown size buffers.
const partSize = 16 << 20

// Credentials are an access key pair.
type Credentials struct {
	// AccessKey and SecretKey sign every request.
	AccessKey string
	SecretKey string
}

// EnvCredentials reads AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
func EnvCredentials() Credentials {
	return Credentials{AccessKey: os.Getenv("AWS_ACCESS_KEY_ID"), SecretKey: os.Getenv("AWS_SECRET_ACCESS_KEY")}
}

// Bucket is one bucket (and key prefix) on an S3-compatible server. Its
// methods are safe for concurrent use.
type Bucket struct {
	c      *minio.Client
	bucket string
	prefix string // "" or ending in "/"
	url    string
}

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	// Key is the object's key, relative to the bucket's prefix.
	Key string
	// Size is its length in bytes.
	Size int64
	// Modified is when it was last written.
	Modified time.Time
}

// Config is an object store URL taken apart.
type Config struct {
	// Bucket and Prefix ("" or a path without leading or trailing "/").
	Bucket, Prefix string
	// Endpoint is the server's base URL (http or https, host[:port]).
	Endpoint *url.URL
	// Region is sent in signatures; "us-east-1" when the URL names none.
	Region string
}

// ParseURL parses s3://BUCKET[/PREFIX]?endpoint=URL[&region=R]. Anything
// else is errdefs.ErrInvalidArgument.
func ParseURL(raw string) (Config, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Config{}, errdefs.Wrap(errdefs.ErrInvalidArgument, err, "object store URL: %v", err)
	}
	if u.Scheme != "s3" || u.Host == "" || u.User != nil || u.Fragment != "" {
		return Config{}, errdefs.New(errdefs.ErrInvalidArgument, "object store URL %q: want s3://BUCKET[/PREFIX]?endpoint=http://HOST:PORT", raw)
	}
	cfg := Config{Bucket: u.Host, Prefix: strings.Trim(u.Path, "/"), Region: "us-east-1"}
	if cfg.Prefix != "" && path.Clean(cfg.Prefix) != cfg.Prefix || strings.Contains(cfg.Prefix, "..") {
		return Config{}, errdefs.New(errdefs.ErrInvalidArgument, "object store URL %q: bad prefix %q", raw, cfg.Prefix)
	}
	q := u.Query()
	for k := range q {
		if k != "endpoint" && k != "region" {
			return Config{}, errdefs.New(errdefs.ErrInvalidArgument, "object store URL %q: unknown parameter %q (want endpoint, region)", raw, k)
		}
	}
	ep := q.Get("endpoint")
	if ep == "" {
		return Config{}, errdefs.New(errdefs.ErrInvalidArgument, "object store URL %q: no endpoint= (e.g. endpoint=http://127.0.0.1:8333)", raw)
	}
	e, err := url.Parse(ep)
	if err != nil || (e.Scheme != "http" && e.Scheme != "https") || e.Host == "" || (e.Path != "" && e.Path != "/") {
		return Config{}, errdefs.New(errdefs.ErrInvalidArgument, "object store URL %q: endpoint %q is not http(s)://HOST[:PORT]", raw, ep)
	}
	cfg.Endpoint = e
	if r := q.Get("region"); r != "" {
		cfg.Region = r
	}
	return cfg, nil
}

// Open parses rawURL (see [ParseURL]) and checks that the bucket exists and
// that creds may use it.
func Open(ctx context.Context, rawURL string, creds Credentials) (*Bucket, error) {
	cfg, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	if creds.AccessKey == "" || creds.SecretKey == "" {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "object store %s: no credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)", rawURL)
	}
	c, err := minio.New(cfg.Endpoint.Host, &minio.Options{
		Creds:        credentials.NewStaticV4(creds.AccessKey, creds.SecretKey, ""),
		Secure:       cfg.Endpoint.Scheme == "https",
		Region:       cfg.Region,
		BucketLookup: minio.BucketLookupPath, // no bucket.host DNS names
	})
	if err != nil {
		return nil, errdefs.Wrap(errdefs.ErrInvalidArgument, err, "object store %s: %v", rawURL, err)
	}
	// The URL carries no secrets (credentials come from the
	// environment), so it names the bucket in errors and logs.
	b := &Bucket{c: c, bucket: cfg.Bucket, url: rawURL}
	if cfg.Prefix != "" {
		b.prefix = cfg.Prefix + "/"
	}
	// A listing rather than a HEAD of the bucket: answers to HEAD have no
	// body, so refused keys would read as a bare 403.
	for o := range c.ListObjects(ctx, cfg.Bucket, minio.ListObjectsOptions{MaxKeys: 1, Prefix: b.prefix}) {
		if o.Err != nil {
			var resp minio.ErrorResponse
			if errors.As(o.Err, &resp) && resp.Code == "NoSuchBucket" {
				return nil, errdefs.New(errdefs.ErrNotFound, "object store %s: bucket %q does not exist", b.url, cfg.Bucket)
			}
			return nil, b.wrap(o.Err, "open bucket")
		}
		break
	}
	return b, nil
}

// String is the bucket's URL.
func (b *Bucket) String() string { return b.url }

// Put stores r under key, reading it once, start to end. size is its
// length, or -1 when unknown; either way, objects past one part go up in
// parts of 16 MiB, so memory stays bounded by one part.
func (b *Bucket) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := checkKey(key); err != nil {
		return err
	}
	_, err := b.c.PutObject(ctx, b.bucket, b.prefix+key, r, size, minio.PutObjectOptions{
		ContentType: "application/octet-stream",
		PartSize:    partSize,
	})
	if err != nil {
		return b.wrap(err, "put %s", key)
	}
	return nil
}

// Get returns the body of key as it arrives; the caller closes it. A
// missing key is errdefs.ErrNotFound.
func (b *Bucket) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	o, err := b.c.GetObject(ctx, b.bucket, b.prefix+key, minio.GetObjectOptions{})
	if err != nil {
		return nil, b.wrap(err, "get %s", key)
	}
	// GetObject sends nothing until the first read or Stat; Stat makes a
	// missing key an error here rather than on the first Read.
	if _, err := o.Stat(); err != nil {
		o.Close()
		return nil, b.wrap(err, "get %s", key)
	}
	return o, nil
}

// Stat describes key. A missing key is errdefs.ErrNotFound.
func (b *Bucket) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	if err := checkKey(key); err != nil {
		return ObjectInfo{}, err
	}
	st, err := b.c.StatObject(ctx, b.bucket, b.prefix+key, minio.StatObjectOptions{})
	if err != nil {
		return ObjectInfo{}, b.wrap(err, "stat %s", key)
	}
	return ObjectInfo{Key: key, Size: st.Size, Modified: st.LastModified}, nil
}

// Exists reports whether key is stored.
func (b *Bucket) Exists(ctx context.Context, key string) (bool, error) {
	_, err := b.Stat(ctx, key)
	if errors.Is(err, errdefs.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// Delete removes key. Removing a missing key is not an error (S3 says
// nothing either way).
func (b *Bucket) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if err := b.c.RemoveObject(ctx, b.bucket, b.prefix+key, minio.RemoveObjectOptions{}); err != nil {
		return b.wrap(err, "delete %s", key)
	}
	return nil
}

// List returns every object whose key starts with prefix, in key order.
func (b *Bucket) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	var out []ObjectInfo
	for o := range b.c.ListObjects(ctx, b.bucket, minio.ListObjectsOptions{Prefix: b.prefix + prefix, Recursive: true}) {
		if o.Err != nil {
			return nil, b.wrap(o.Err, "list %s", prefix)
		}
		out = append(out, ObjectInfo{Key: strings.TrimPrefix(o.Key, b.prefix), Size: o.Size, Modified: o.LastModified})
	}
	return out, nil
}

// checkKey refuses keys that S3 servers treat inconsistently.
func checkKey(key string) error {
	if key == "" || len(key) > 900 || path.Clean("/"+key) != "/"+key {
		return errdefs.New(errdefs.ErrInvalidArgument, "bad object key %q", key)
	}
	return nil
}

// wrap gives err its class: missing keys and buckets are ErrNotFound,
// refused credentials ErrUnauthenticated, refusals of a valid key
// ErrPermissionDenied, a server that cannot be reached ErrUnavailable.
func (b *Bucket) wrap(err error, format string, args ...any) error {
	what := fmt.Sprintf(format, args...)
	var resp minio.ErrorResponse
	if errors.As(err, &resp) {
		switch {
		case resp.Code == "NoSuchKey" || resp.Code == "NoSuchBucket" || resp.StatusCode == http.StatusNotFound:
			return errdefs.Wrap(errdefs.ErrNotFound, err, "object store %s: %s: not found", b.url, what)
		case resp.Code == "InvalidAccessKeyId" || resp.Code == "SignatureDoesNotMatch":
			return errdefs.Wrap(errdefs.ErrUnauthenticated, err, "object store %s: %s: credentials refused (%s; check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)", b.url, what, resp.Code)
		case resp.StatusCode == http.StatusForbidden:
			return errdefs.Wrap(errdefs.ErrPermissionDenied, err, "object store %s: %s: access denied (%s)", b.url, what, resp.Code)
		}
		return fmt.Errorf("object store %s: %s: %w", b.url, what, err)
	}
	var ue *url.Error
	if errors.As(err, &ue) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return errdefs.Wrap(errdefs.ErrUnavailable, err, "object store %s: %s: %v", b.url, what, err)
	}
	return fmt.Errorf("object store %s: %s: %w", b.url, what, err)
}
