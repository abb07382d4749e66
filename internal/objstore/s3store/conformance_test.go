package s3store

import (
	"testing"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/storetest"
)

// The suite's 15 MiB upload goes up as three 5 MiB parts with the test
// configuration, so both servers run the multipart path.

func TestConformanceGofakes3(t *testing.T) {
	srv := fakeS3(t)
	storetest.Run(t, func(t *testing.T) objstore.Store { return srv.newStore(t) }, storetest.Options{})
}

func TestConformanceVersityGW(t *testing.T) {
	srv := versityGW(t)
	storetest.Run(t, func(t *testing.T) objstore.Store { return srv.newStore(t) }, storetest.Options{})
}
