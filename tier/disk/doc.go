// Package disk writes the cache's in-process (L1) entries to a snapshot file
// and reads them back, so that a restarted instance starts warm.
//
// The cache hands this package entries whose values are already encoded; the
// package only moves bytes. [Save] and [Load] work on a path; [Write] and
// [Read] on any stream. A key is at most [MaxKeyLen] bytes and a value at
// most [MaxValueLen]; the limits are the format's, the same for every
// reader and writer, so that a file one process writes another can read.
//
// # Promises
//
//   - Save is atomic. It writes a temporary file in the target's directory,
//     fsyncs it, renames it over the target and fsyncs the directory. A crash
//     or power loss at any point leaves either the previous snapshot or the
//     new one at the path, never a mix or a torn file. A failed Save removes
//     its temporary file and leaves the previous snapshot untouched; temporary
//     files left by a process that died during Save are removed by a later
//     Save once they are older than 15 minutes.
//   - Save validates every record before it creates a file: a key or value
//     that is too large fails the Save without touching the disk. The file
//     is created with mode 0o600 (snapshots hold other users' cached data);
//     a missing directory is created with mode 0o755.
//   - Load of a missing file returns (nil, nil): a cold start is normal.
//   - Load of a file that is corrupt — truncated, wrong magic bytes, a
//     length out of bounds, a checksum mismatch, trailing bytes — renames the
//     file to "<path>.corrupt-<unix nanoseconds>" for inspection and returns a
//     [*CorruptError] (errors.Is(err, [ErrCorrupt]) holds). The caller starts
//     cold; the next Save writes a fresh snapshot. A snapshot is all or
//     nothing: Load never returns some records of a corrupt file.
//   - Load of a snapshot written by a newer release in a format version this
//     package does not know returns an error matching [ErrUnsupportedVersion]
//     and leaves the file where it is: it is not corrupt, and the newer
//     release can still read it if it comes back before the next Save. The
//     caller starts cold.
//   - Other I/O errors (permissions, a directory at the path, a failing
//     disk) are returned as they are, wrapped in an error that starts with
//     "disk:"; the file is left alone.
//   - Hostile or damaged input never panics, and Read never allocates from
//     a length it has not checked: every length is checked against
//     [MaxKeyLen], [MaxValueLen] and, where the size is known (a file, a
//     bytes.Reader), the bytes that remain, before anything is allocated.
//     Where the size is not known, a long value's slice grows as its bytes
//     arrive, so a lying length costs at most about twice the bytes really
//     read plus 256 KiB. The record count only sizes a preallocation after
//     the same checks.
//   - Records expired at the now passed to Read or Load (ExpiresAt at or
//     before now) are dropped. Expiry times are kept exactly, to the
//     nanosecond, between the years 1678 and 2262 (the range of
//     [time.Time.UnixNano]); times outside that range are clamped, which
//     never changes whether a record is expired at a now inside it. Compare
//     times with [time.Time.Equal]: location and monotonic reading are not
//     kept.
//
// Save and Load of one path are safe to run concurrently with each other
// (Load sees the old or the new file), but two Saves to one path race: one of
// them wins, and the file is still always a whole snapshot.
//
// # Checksum
//
// The checksum is CRC-32C (Castagnoli), not SHA-256. It guards against
// accidental damage — a torn or truncated write, a bit flipped on disk or in
// a copy — which CRC-32C detects with certainty for any single burst of up to
// 32 bits and otherwise misses with probability 2⁻³²; it runs at memory speed
// on amd64 and arm64, so checking a snapshot of a million entries costs
// little at start-up. A cryptographic hash would not buy security here: the
// file is written and read by the same service with mode 0o600, and anyone
// who can write it can also write a matching SHA-256. Hostile contents are
// handled by the bounds checks, not by the checksum.
//
// # Format (version 1)
//
// All integers are little-endian. A snapshot is a header, the records, and
// a checksum:
//
//	offset  size  field
//	     0     8  magic: 0x89 'A' 'C' 'S' 'N' 'A' 'P' '\n'
//	     8     4  format version, uint32 (1)
//	    12     4  CRC-32C of bytes 0–11
//	    16     8  creation time, int64 Unix nanoseconds
//	    24     8  record count, uint64
//	    32     …  records, one after the other
//	     …     4  CRC-32C of every byte before it
//
// Bytes 0–15 keep this layout in every format version, so that an older
// reader can tell a newer version (a clear error) from a damaged one (the
// header checksum does not match) without knowing anything else about it.
//
// Each record is a 17-byte fixed part followed by the key and the value:
//
//	offset  size  field
//	     0     4  key length K, uint32, at most MaxKeyLen
//	     4     4  value length V, uint32, at most MaxValueLen
//	     8     8  expiry, int64 Unix nanoseconds; math.MinInt64 = no expiry
//	    16     1  flags, the caller's byte, kept as is
//	    17     K  key
//	  17+K     V  value
//
// The file ends right after the checksum; anything after it makes the file
// corrupt. Write learns the record count before it writes the header by
// draining the iterator first: it holds about 56 bytes per entry (keys and
// values are not copied), and whatever the iterator locks is released before
// the first byte goes to the disk.
package disk
