package config

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Target is a parsed replica URL: where one replica of a database or of a
// file inbox lives. Exactly one of the two shapes is filled in, chosen by
// Scheme.
type Target struct {
	// Scheme is "file" or "s3".
	Scheme string

	// Path is the absolute, cleaned directory of a file target.
	Path string

	// Bucket and Prefix locate an s3 target. Prefix has no leading or
	// trailing slash and may be empty.
	Bucket string
	Prefix string
	// Endpoint is the base URL of an S3-compatible server; empty means AWS.
	Endpoint string
	// Region is the signing region; empty means the AWS default chain.
	Region string
	// ForcePathStyle asks for bucket-in-path addressing, which most
	// self-hosted servers need.
	ForcePathStyle bool
}

// The query parameters an s3 replica URL may carry, in the order String
// writes them.
const (
	paramEndpoint       = "endpoint"
	paramRegion         = "region"
	paramForcePathStyle = "force-path-style"
)

var knownParams = []string{paramEndpoint, paramRegion, paramForcePathStyle}

// ParseURL parses a replica URL:
//
//	file:///abs/path
//	s3://bucket/prefix?endpoint=http://127.0.0.1:7070&region=us-east-1&force-path-style=true
//
// Every error is one line that names the URL, with any credentials in it
// redacted, and says what is wrong with it.
func ParseURL(s string) (Target, error) {
	t, err := parseURL(s)
	if err != nil {
		var us *unknownSchemeError
		if errors.As(err, &us) {
			return Target{}, fmt.Errorf("unknown scheme %q in replica URL %q; expected file:///abs/path or s3://bucket/prefix", us.scheme, displayURL(s))
		}
		return Target{}, fmt.Errorf("replica URL %q: %w", displayURL(s), err)
	}
	return t, nil
}

// A URL is copied into shell history, process lists and logs; credentials
// belong in the environment or the config file.
var errCredentialsInURL = errors.New("credentials do not belong in the URL; use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or the config file")

type unknownSchemeError struct{ scheme string }

func (e *unknownSchemeError) Error() string { return "unknown scheme " + strconv.Quote(e.scheme) }

func parseURL(s string) (Target, error) {
	if s == "" {
		return Target{}, errors.New("empty; expected file:///abs/path or s3://bucket/prefix")
	}
	if userinfoEnd(s) >= 0 {
		return Target{}, errCredentialsInURL
	}
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return Target{}, fmt.Errorf("not a URL: %v", err)
	}
	if u.User != nil {
		return Target{}, errCredentialsInURL
	}
	if strings.Contains(s, "#") {
		return Target{}, errors.New("unexpected fragment (#...)")
	}
	switch u.Scheme {
	case "file":
		return parseFileURL(u)
	case "s3":
		return parseS3URL(u)
	case "":
		return Target{}, errors.New("missing scheme; expected file:///abs/path or s3://bucket/prefix")
	default:
		return Target{}, &unknownSchemeError{u.Scheme}
	}
}

func parseFileURL(u *url.URL) (Target, error) {
	if u.Opaque != "" {
		return Target{}, errors.New("path must be absolute, as in file:///abs/path")
	}
	if u.Host != "" {
		return Target{}, fmt.Errorf("file URLs take no host (got %q); write file:///abs/path", u.Host)
	}
	if u.RawQuery != "" || u.ForceQuery {
		return Target{}, errors.New("file URLs take no query parameters")
	}
	if u.Path == "" {
		return Target{}, errors.New("missing path; write file:///abs/path")
	}
	if !filepath.IsAbs(u.Path) {
		return Target{}, errors.New("path must be absolute, as in file:///abs/path")
	}
	if strings.ContainsRune(u.Path, 0) {
		return Target{}, errors.New("path contains a NUL byte")
	}
	return Target{Scheme: "file", Path: filepath.Clean(u.Path)}, nil
}

func parseS3URL(u *url.URL) (Target, error) {
	if u.Opaque != "" {
		return Target{}, errors.New("expected s3://bucket/prefix")
	}
	if u.Host == "" {
		return Target{}, errors.New("missing bucket name")
	}
	if u.Port() != "" || strings.HasSuffix(u.Host, ":") {
		return Target{}, fmt.Errorf("bucket name %q has a port; put the server in ?endpoint=", u.Host)
	}
	if err := validBucket(u.Host); err != nil {
		return Target{}, fmt.Errorf("invalid bucket name %q: %w", u.Host, err)
	}
	t := Target{Scheme: "s3", Bucket: u.Host}
	prefix, err := cleanPrefix(u.Path)
	if err != nil {
		return Target{}, err
	}
	t.Prefix = prefix

	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return Target{}, fmt.Errorf("invalid query: %v", err)
	}
	for name, vals := range q {
		known := false
		for _, k := range knownParams {
			known = known || name == k
		}
		if !known {
			return Target{}, fmt.Errorf("unknown query parameter %q; known: %s", name, strings.Join(knownParams, ", "))
		}
		if len(vals) > 1 {
			return Target{}, fmt.Errorf("query parameter %q given %d times", name, len(vals))
		}
	}
	if v, ok := q[paramEndpoint]; ok {
		if err := validEndpoint(v[0]); err != nil {
			return Target{}, err
		}
		t.Endpoint = v[0]
	}
	if v, ok := q[paramRegion]; ok {
		if err := validRegion(v[0]); err != nil {
			return Target{}, err
		}
		t.Region = v[0]
	}
	if v, ok := q[paramForcePathStyle]; ok {
		b, err := strconv.ParseBool(v[0])
		if err != nil {
			return Target{}, fmt.Errorf("force-path-style must be true or false, not %q", v[0])
		}
		t.ForcePathStyle = b
	}
	return t, nil
}

// cleanPrefix trims the slashes around an s3 key prefix and rejects the
// segments that some stores and the file backend would each resolve
// differently: "a//b", "a/./b" and "a/../b" could name one place on one
// store and another place on the next, and a restore must read exactly
// what replication wrote.
func cleanPrefix(p string) (string, error) {
	p = strings.Trim(p, "/")
	if p == "" {
		return "", nil
	}
	if !utf8.ValidString(p) {
		return "", errors.New("prefix is not valid UTF-8")
	}
	for seg := range strings.SplitSeq(p, "/") {
		switch seg {
		case "":
			return "", fmt.Errorf("prefix %q has an empty segment (//)", p)
		case ".", "..":
			return "", fmt.Errorf("prefix %q has a %q segment", p, seg)
		}
	}
	return p, nil
}

var ipLike = regexp.MustCompile(`^\d+\.\d+\.\d+\.\d+$`)

// validBucket applies the S3 rules for general purpose bucket names.
// Self-hosted servers accept more, but a replica should be movable to any
// store, so ferry holds every target to the strictest common rules.
func validBucket(b string) error {
	if len(b) < 3 || len(b) > 63 {
		return errors.New("must be 3 to 63 characters long")
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return errors.New("may only contain lowercase letters, digits, '.' and '-'")
		}
	}
	if !isAlnum(b[0]) || !isAlnum(b[len(b)-1]) {
		return errors.New("must begin and end with a letter or digit")
	}
	if strings.Contains(b, "..") {
		return errors.New("must not contain two adjacent periods")
	}
	if ipLike.MatchString(b) {
		return errors.New("must not be formatted as an IP address")
	}
	for _, p := range []string{"xn--", "sthree-", "amzn-s3-demo-"} {
		if strings.HasPrefix(b, p) {
			return fmt.Errorf("must not begin with %q", p)
		}
	}
	for _, s := range []string{"-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"} {
		if strings.HasSuffix(b, s) {
			return fmt.Errorf("must not end with %q", s)
		}
	}
	return nil
}

func isAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

func validEndpoint(e string) error {
	// The value is left out of these messages: the caller already shows
	// the whole URL, redacted where an endpoint carries credentials.
	if strings.Contains(e, "@") {
		return errors.New("endpoint must not carry credentials")
	}
	u, err := url.Parse(e)
	if err != nil || u.Opaque != "" || (u.Scheme != "http" && u.Scheme != "https") {
		return errors.New("endpoint must be an http:// or https:// URL")
	}
	if u.Hostname() == "" {
		return errors.New("endpoint has no host")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("endpoint port %q is out of range", p)
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return errors.New("endpoint has an empty port")
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return errors.New("endpoint must not have a query or fragment")
	}
	return nil
}

func validRegion(r string) error {
	if r == "" {
		return errors.New("region is empty")
	}
	for _, c := range r {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("region %q may only contain letters, digits, '-', '_' and '.'", r)
		}
	}
	return nil
}

// String returns the URL of the target. ParseURL(t.String()) returns t
// for every t that ParseURL returned.
func (t Target) String() string {
	switch t.Scheme {
	case "file":
		return (&url.URL{Scheme: "file", Path: t.Path}).String()
	case "s3":
		u := url.URL{Scheme: "s3", Host: t.Bucket}
		if t.Prefix != "" {
			u.Path = "/" + t.Prefix
		}
		var q []string
		if t.Endpoint != "" {
			q = append(q, paramEndpoint+"="+queryEscape(t.Endpoint))
		}
		if t.Region != "" {
			q = append(q, paramRegion+"="+queryEscape(t.Region))
		}
		if t.ForcePathStyle {
			q = append(q, paramForcePathStyle+"=true")
		}
		u.RawQuery = strings.Join(q, "&")
		return u.String()
	}
	return ""
}

// queryEscape escapes a query value but keeps ':' and '/', which are legal
// in a query, so that an endpoint reads as the URL it is.
func queryEscape(s string) string {
	s = url.QueryEscape(s)
	return strings.NewReplacer("%3A", ":", "%2F", "/").Replace(s)
}

// Join returns the target for key under t, as in REPLICA_URL/KEY. The key
// is taken relative to t: leading slashes, "." and ".." are resolved as if
// t were the root, so the result never leaves t.
func (t Target) Join(key string) Target {
	key = strings.TrimPrefix(path.Clean("/"+key), "/")
	if key == "" {
		return t
	}
	switch t.Scheme {
	case "file":
		t.Path = filepath.Join(t.Path, filepath.FromSlash(key))
	case "s3":
		if t.Prefix == "" {
			t.Prefix = key
		} else {
			t.Prefix += "/" + key
		}
	}
	return t
}

// userinfoEnd returns the index just past the '@' that ends what looks
// like user information ("KEY:SECRET@") after the scheme, or -1. It errs
// toward finding credentials: an AWS secret may hold '/', which makes
// url.Parse take part of it for a host and part for a path, and then
// every message built from those parts would show pieces of the secret.
// An '@' in a path ("file:///srv/app@2024", "s3://bkt/a:b@c") is not taken
// for credentials: there a '/' comes before any ':'.
func userinfoEnd(s string) int {
	i := strings.Index(s, "://")
	if i < 0 {
		return -1
	}
	rest := s[i+3:]
	if end := strings.IndexAny(rest, "?#"); end >= 0 {
		rest = rest[:end]
	}
	at := strings.LastIndexByte(rest, '@')
	if at < 0 {
		return -1
	}
	info := rest[:at]
	slash := strings.IndexByte(info, '/')
	if slash < 0 || strings.IndexByte(info[:slash], ':') >= 0 {
		return i + 3 + at + 1
	}
	return -1
}

// displayURL returns s fit for an error message: any user information and
// the values of query parameters ferry does not know are replaced, since
// those are where a user who tries to put credentials in a URL puts them.
func displayURL(s string) string {
	if n := userinfoEnd(s); n >= 0 {
		s = s[:strings.Index(s, "://")+3] + "[redacted]@" + s[n:]
	}
	base, query, ok := strings.Cut(s, "?")
	if !ok {
		return s
	}
	query, frag, hasFrag := strings.Cut(query, "#")
	parts := strings.Split(query, "&")
	for i, p := range parts {
		k, v, _ := strings.Cut(p, "=")
		name, err := url.QueryUnescape(k)
		if err != nil {
			name = k
		}
		keep := false
		for _, known := range knownParams {
			keep = keep || name == known
		}
		if name == paramEndpoint && strings.Contains(v, "@") {
			keep = false
		}
		if !keep && v != "" {
			parts[i] = k + "=[redacted]"
		}
	}
	s = base + "?" + strings.Join(parts, "&")
	if hasFrag {
		s += "#" + frag
	}
	return s
}
