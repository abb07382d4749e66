package s3store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/ferrydb/ferry/internal/objstore"
)

// Errors for a bucket that cannot be used at all. They are permanent: no
// retry fixes a typo in a bucket name or a wrong secret.
var (
	// ErrNoSuchBucket means the bucket does not exist at the endpoint.
	ErrNoSuchBucket = errors.New("bucket does not exist")
	// ErrAccessDenied means the server refused the credentials or their
	// permissions.
	ErrAccessDenied = errors.New("access denied: check credentials")
)

// BucketError is what Check returns: the bucket and endpoint, what is wrong
// with them in words an operator can act on, and the server's answer.
type BucketError struct {
	Bucket   string
	Endpoint string
	Reason   error // ErrNoSuchBucket, ErrAccessDenied or nil
	Status   int   // the HTTP status of the answer; 0 when none came
	Code     string
	Err      error
}

// Transient reports whether the bucket could not be checked for a reason
// that may pass by itself: no answer (the network or the server is not up
// yet), a timeout, or the server's own failure. Everything else (a
// missing bucket, refused credentials, any other refusal) needs an
// operator.
func (e *BucketError) Transient() bool {
	if e.Reason != nil {
		return false
	}
	switch {
	case e.Status == 0, e.Status >= 500, e.Status == http.StatusRequestTimeout, e.Status == http.StatusTooManyRequests:
		return true
	}
	return false
}

func (e *BucketError) Error() string {
	if e.Reason == nil {
		return fmt.Sprintf("s3 bucket %q at %s: %s", e.Bucket, e.Endpoint, cause(e.Status, e.Code, e.Err))
	}
	detail := e.Code
	var ae smithy.APIError
	if errors.As(e.Err, &ae) && ae.ErrorMessage() != "" {
		detail += ": " + ae.ErrorMessage()
	}
	if detail == "" {
		return fmt.Sprintf("s3 bucket %q at %s: %v", e.Bucket, e.Endpoint, e.Reason)
	}
	return fmt.Sprintf("s3 bucket %q at %s: %v (%s)", e.Bucket, e.Endpoint, e.Reason, detail)
}

func (e *BucketError) Unwrap() []error {
	if e.Reason == nil {
		return []error{e.Err}
	}
	if e.Err == nil {
		return []error{e.Reason}
	}
	return []error{e.Reason, e.Err}
}

// ErrNoCredentials means the AWS credential chain found nothing to sign
// requests with.
var ErrNoCredentials = errors.New("no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, use a profile, or give the replica access-key-id and secret-access-key")

func (s *Store) bucketError(err error) error {
	// The SDK reports a credential chain that came up empty as a failure
	// to sign, with no type to test for; its message is stable.
	if strings.Contains(err.Error(), "get identity: get credentials") {
		return &BucketError{Bucket: s.bucket, Endpoint: s.endpoint, Reason: ErrNoCredentials}
	}
	status, code := classify(err)
	return &BucketError{Bucket: s.bucket, Endpoint: s.endpoint, Reason: bucketReason(status, code), Status: status, Code: code, Err: err}
}

// cause says in a few words why a call got no usable answer. The SDK's
// own text names the operation, the attempt count and "https response
// error" whatever the endpoint's scheme; the network error underneath, or
// the status and code, is what an operator can act on.
func cause(status int, code string, err error) string {
	var ne *net.OpError
	switch {
	case errors.As(err, &ne):
		return ne.Error()
	case errors.Is(err, context.DeadlineExceeded):
		return "no answer in time"
	case status != 0 && code != "":
		return fmt.Sprintf("HTTP %d %s", status, code)
	case status != 0:
		return fmt.Sprintf("HTTP %d %s", status, http.StatusText(status))
	}
	return err.Error()
}

// classify returns the HTTP status and S3 error code behind an SDK error,
// zero and "" when no response came back.
func classify(err error) (status int, code string) {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code = ae.ErrorCode()
	}
	return status, code
}

func isCode(err error, code string) bool {
	_, c := classify(err)
	return c == code
}

func bucketReason(status int, code string) error {
	switch code {
	case "NoSuchBucket":
		return ErrNoSuchBucket
	case "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied",
		"InvalidToken", "ExpiredToken", "InvalidSecurity", "AuthorizationHeaderMalformed",
		// versitygw's answer, with status 404, to an unknown access key.
		"XAdminUserNotFound":
		return ErrAccessDenied
	}
	switch status {
	case http.StatusForbidden, http.StatusUnauthorized:
		return ErrAccessDenied
	}
	return nil
}

// opError wraps an SDK error in *objstore.Error with the status code, and
// makes it match objstore's sentinels where S3 said what they mean. The SDK
// error stays in the chain untouched, so that network failures underneath
// remain visible to objstore.Transient.
func (s *Store) opError(op, key string, err error) error {
	status, code := classify(err)
	e := &objstore.Error{Op: op, Key: key, StatusCode: status, Err: err}
	switch {
	case status == http.StatusPreconditionFailed, code == "PreconditionFailed",
		// S3 answers 409 when a conditional write races another write
		// to the same key; either way this write did not happen.
		code == "ConditionalRequestConflict":
		e.Err = fmt.Errorf("%w: %w", objstore.ErrPreconditionFailed, err)
	case code == "NoSuchBucket":
		// Not ErrNotFound: a caller that reads "missing key" as "nothing
		// written yet" must not conclude that about a missing bucket.
		e.Err = fmt.Errorf("bucket %q: %w: %w", s.bucket, ErrNoSuchBucket, err)
	case code == "NoSuchKey", code == "NotFound", status == http.StatusNotFound && code == "":
		e.Err = quietCause{objstore.ErrNotFound, err}
	case bucketReason(status, code) == ErrAccessDenied:
		e.Err = fmt.Errorf("bucket %q: %w: %w", s.bucket, ErrAccessDenied, err)
	case status == 0:
		// No answer: the SDK's text names the operation and says "https
		// response error" whatever the scheme; the network error is what
		// an operator can act on.
		var ne *net.OpError
		if errors.As(err, &ne) {
			e.Err = quietCause{ne, err}
		}
	}
	return e
}

// quietCause is an error that prints as what it means, for answers whose
// SDK text (request and host IDs, the operation's name) adds only noise to
// a one-line message, while the SDK error stays in the chain.
type quietCause struct {
	meaning error
	cause   error
}

func (q quietCause) Error() string   { return q.meaning.Error() }
func (q quietCause) Unwrap() []error { return []error{q.meaning, q.cause} }
