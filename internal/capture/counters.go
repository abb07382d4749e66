package capture

// LogBytes returns how many bytes of committed frames, headers included,
// the capture has read from the log since Open: what the application
// wrote to its log, against which the capture's costs are measured. It
// is safe to call at any time, from any goroutine.
func (r *Replicator) LogBytes() int64 { return r.logBytes.Load() }
