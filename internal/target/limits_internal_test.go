package target

import (
	"testing"

	"github.com/ferrydb/ferry/internal/config"
	"github.com/ferrydb/ferry/internal/objstore"
)

func TestLimitsReplicaWinsFieldByField(t *testing.T) {
	process := objstore.Limits{RequestsPerSecond: 50, BytesPerSecond: 8 << 20, UploadBytesPerSecond: 4 << 20}
	for _, tc := range []struct {
		name string
		r    config.Replica
		want objstore.Limits
	}{
		{"none of its own", config.Replica{}, process},
		{"requests", config.Replica{MaxRequestsPerSecond: 500}, objstore.Limits{RequestsPerSecond: 500, BytesPerSecond: 8 << 20, UploadBytesPerSecond: 4 << 20}},
		{"uploads", config.Replica{MaxUploadBytesPerSecond: 1 << 20}, objstore.Limits{RequestsPerSecond: 50, BytesPerSecond: 8 << 20, UploadBytesPerSecond: 1 << 20}},
		{"both, looser", config.Replica{MaxRequestsPerSecond: 1e4, MaxUploadBytesPerSecond: 1 << 30}, objstore.Limits{RequestsPerSecond: 1e4, BytesPerSecond: 8 << 20, UploadBytesPerSecond: 1 << 30}},
	} {
		if got := limits(tc.r, process); got.RequestsPerSecond != tc.want.RequestsPerSecond || got.BytesPerSecond != tc.want.BytesPerSecond || got.UploadBytesPerSecond != tc.want.UploadBytesPerSecond {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
	if got := limits(config.Replica{MaxRequestsPerSecond: 3}, objstore.Limits{}); got.RequestsPerSecond != 3 || got.UploadBytesPerSecond != 0 {
		t.Errorf("replica limit with no process limits: %+v", got)
	}
}
