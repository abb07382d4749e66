package snapshot

import (
	"github.com/klauspost/compress/zstd"
)

// maxStoredChunk bounds a stored chunk: zstd never grows 64 KiB by more
// than a few dozen bytes, so anything longer is damage, and reading it
// whole would let a hostile store hand a restore an endless body.
const maxStoredChunk = ChunkSize + 4096

func newEncoder(parallelism int) (*zstd.Encoder, error) {
	return zstd.NewWriter(nil,
		zstd.WithEncoderConcurrency(parallelism),
		zstd.WithEncoderCRC(false), // the address already checks the content
		// The fastest level: on a database's pages it stores about as
		// small as the default level (random bytes do not shrink, text
		// shrinks by its entropy either way) at about twice the rate, and
		// a first snapshot of a large database is bound by the CPU.
		zstd.WithEncoderLevel(zstd.SpeedFastest))
}

// newDecoder returns a decoder that refuses to produce more than one chunk
// from a frame, whatever the frame claims.
func newDecoder(parallelism int) (*zstd.Decoder, error) {
	return zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(parallelism),
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(ChunkSize),
		zstd.WithDecoderMaxMemory(ChunkSize),
		zstd.WithDecodeAllCapLimit(true))
}
