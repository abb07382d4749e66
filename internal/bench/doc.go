// Package bench holds the end-to-end performance benchmarks of ferry's
// SQLite replication, the figures DESIGN.md §7 sets targets for. It has no
// code of its own: everything is in its _test.go files, and it has no
// tests, only benchmarks, so the normal test suite spends no time here.
//
// Every benchmark runs against a real S3 server (versitygw, started by
// scripts/test or by hand, its address in FERRY_TEST_S3_*). The
// application is a child process (the test binary re-executed) that
// writes the database the way any program would; ferry runs in the
// benchmark process, as the sidecar it is, so the process's peak RSS is
// ferry's plus the harness's. Fleet is the exception: it runs the ferry
// binary as a child, whose memory, descriptors and CPU it reads from
// /proc, behind a proxy that counts its requests.
//
//	go test -run '^$' -bench . -benchtime=1x ./internal/bench/
//
// What each benchmark measures:
//
//   - Lag: for each commit, the time from the application's commit
//     returning to the target restoring it (Status().Targets[0].Replicated
//     reaching the commit's txid, polled every millisecond). sporadic
//     spaces single-row commits 200 ms apart (busier than the sync
//     interval, so most wait for it); quiet spaces them wider than the
//     sync interval, the path where the first commit after a quiet period
//     ships at once; 500tps is a paced writer at 500 txn/s.
//   - WriterTPS: the application's 1-row-insert rate without ferry and
//     then with ferry replicating a database of the same kind, in one run.
//   - Fleet: FERRY_BENCH_DBS databases (1,000; 10,000 is the large form)
//     under one dir entry: start-up, idle RSS, CPU, descriptors and
//     requests, restart, and the lag of 1% of them written, against one
//     database alone.
//   - IdleRequests: store requests made while a replicated database
//     receives no writes, after its initial snapshot and one sync.
//   - SnapshotCost: bytes and requests of the snapshot that follows an
//     update of 1% of the pages of a database of FERRY_BENCH_DB_BYTES
//     (default 64MiB; DESIGN.md's figure is 1GiB), clustered and uniformly
//     random; the capture itself takes the snapshots, on a short snapshot
//     interval.
//   - Restore: restore throughput of that database from the store.
//
// When a litestream binary is on PATH, Lag and WriterTPS run the same
// workloads with it too and report the ratios.
package bench
