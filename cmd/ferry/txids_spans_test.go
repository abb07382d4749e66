package main

import (
	"reflect"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/layout"
	"github.com/ferrydb/ferry/internal/restore"
	"github.com/ferrydb/ferry/internal/snapshot"
)

// A break inside a restorable range is a line of its own: the txid that
// folds in commits ferry could not read.
func TestTxidSpansShowBreaks(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cat := restore.NewCatalog(
		[]snapshot.ManifestInfo{{Key: "snapshots/1", TXID: 1, Time: at}, {Key: "snapshots/7", TXID: 7, Time: at}},
		[]layout.Segment{{Key: "segments/2", First: 2, Last: 6}, {Key: "segments/8", First: 8, Last: 9}},
	)
	cat.Breaks = []uint64{7}
	got := txidSpans(cat)
	want := []txidSpan{{Kind: "range", First: 1, Last: 9, Since: at}, {Kind: "break", First: 7, Last: 7}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("spans %+v\nwant %+v", got, want)
	}
}
