package artifact

import (
	"fmt"
	"strings"
)

// The suffixes that turn an artifact key into its objects' keys.
const (
	tarSuffix      = ".tar"
	manifestSuffix = ".manifest.json"
	leaseSuffix    = ".lease"
)

// TarKey returns the key of the tar object of the artifact named key.
func TarKey(key string) string { return key + tarSuffix }

// ManifestKey returns the key of the manifest of the artifact named key.
func ManifestKey(key string) string { return key + manifestSuffix }

// LeaseKey returns the key of the object that holds the lease named key
// (see package lease and UploadWithLease).
func LeaseKey(key string) string { return key + leaseSuffix }

// checkKey refuses keys that cannot name sibling objects: an empty key would
// give a bare ".tar", and a trailing slash would put the objects inside a
// "directory" of their own, where a later artifact named like that
// directory would collide with them on stores that map keys to files.
func checkKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("artifact key is empty")
	case strings.HasSuffix(key, "/"):
		return fmt.Errorf("artifact key %q ends with '/'", key)
	}
	return nil
}
