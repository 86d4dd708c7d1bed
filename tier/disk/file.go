package disk

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	tempInfix    = ".tmp-"
	corruptInfix = ".corrupt-"
	// staleTempAge is how old a temporary file must be before Save takes it
	// for the leftover of a Save that died. A live Save writes its file
	// continuously, so its modification time stays recent.
	staleTempAge = 15 * time.Minute
)

// CorruptError reports a snapshot that cannot be read because it is damaged.
// It matches [ErrCorrupt] with errors.Is.
type CorruptError struct {
	// Path is the snapshot's path; empty when the snapshot came from Read.
	Path string
	// MovedTo is where Load moved the file; empty when it was not moved.
	MovedTo string
	// Err says what is wrong with the contents.
	Err error
	// MoveErr is why Load could not move the file aside, if it tried and
	// failed. The file is then still at Path; the next Save replaces it.
	MoveErr error
}

// Error says what was wrong and where the file went.
func (e *CorruptError) Error() string {
	var b strings.Builder
	b.WriteString("disk: snapshot ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(" ")
	}
	b.WriteString("is corrupt")
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	switch {
	case e.MovedTo != "":
		b.WriteString("; moved to ")
		b.WriteString(e.MovedTo)
	case e.MoveErr != nil:
		b.WriteString("; could not move it aside: ")
		b.WriteString(e.MoveErr.Error())
	}
	return b.String()
}

// Unwrap returns ErrCorrupt.
func (e *CorruptError) Unwrap() error { return ErrCorrupt }

func corruptf(format string, args ...any) error {
	return &CorruptError{Err: fmt.Errorf(format, args...)}
}

// Save atomically replaces the snapshot at path with records and returns
// the number of records saved.
//
// Records are drained and checked before the disk is touched: a key longer
// than [MaxKeyLen] or a value longer than [MaxValueLen] fails the Save. The
// snapshot goes to a temporary file next to path (mode 0o600), which is
// fsynced and renamed over path, and then the directory is fsynced. The
// directory is created (mode 0o755) if it is missing. On error the previous
// snapshot, if any, is left as it was, the temporary file is removed and n
// is 0 — except when only the final directory fsync fails: the new snapshot
// is then in place, n counts its records and the error says it may not
// survive a power loss.
func Save(path string, records iter.Seq[Record]) (n int, err error) {
	return limits{}.save(path, records, nil)
}

// save is Save with a hook that wraps the temporary file's writer, so that
// tests can make writes fail midway.
func (l limits) save(path string, records iter.Seq[Record], wrap func(io.Writer) io.Writer) (n int, err error) {
	recs, err := l.collect(records)
	if err != nil {
		return 0, err
	}
	dir, base := filepath.Dir(path), filepath.Base(path)
	if path == "" || base == "." || base == string(filepath.Separator) {
		return 0, fmt.Errorf("disk: save snapshot: invalid path %q", path)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, fmt.Errorf("disk: save snapshot: %w", err)
	}
	removeStaleTemps(dir, base, time.Now())

	// os.CreateTemp creates the file with mode 0o600.
	f, err := os.CreateTemp(dir, base+tempInfix+"*")
	if err != nil {
		return 0, fmt.Errorf("disk: save snapshot: %w", err)
	}
	tmp := f.Name()
	renamed := false
	defer func() {
		// Also runs when the wrapped writer panics.
		if !renamed {
			f.Close()
			os.Remove(tmp)
		}
	}()

	var w io.Writer = f
	if wrap != nil {
		w = wrap(f)
	}
	if err := writeSnapshot(w, recs, time.Now()); err != nil {
		return 0, err
	}
	if err := f.Sync(); err != nil {
		return 0, fmt.Errorf("disk: save snapshot: %w", err)
	}
	if err := f.Close(); err != nil {
		return 0, fmt.Errorf("disk: save snapshot: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return 0, fmt.Errorf("disk: save snapshot: %w", err)
	}
	renamed = true
	if err := syncDir(dir); err != nil {
		return recs.n, fmt.Errorf("disk: save snapshot: %s is in place but may not survive a power loss: %w", path, err)
	}
	return recs.n, nil
}

// removeStaleTemps removes the temporary files of earlier Saves of base that
// died before they could clean up. Errors are ignored: this is housekeeping,
// and a file it cannot remove does no harm but take space.
func removeStaleTemps(dir, base string, now time.Time) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || !strings.HasPrefix(e.Name(), base+tempInfix) {
			continue
		}
		if info, err := e.Info(); err == nil && now.Sub(info.ModTime()) > staleTempAge {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil // directories cannot be opened for sync there; NTFS journals renames
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Load reads the snapshot at path and returns its records in the order they
// were saved, without those expired at now.
//
// A missing file is a cold start: Load returns (nil, nil). A damaged file is
// renamed to "<path>.corrupt-<unix nanoseconds>" and reported as a
// [*CorruptError]. A file in a newer format version is left in place and
// reported as [ErrUnsupportedVersion]. Any other error (permissions, a
// directory at path) is returned wrapped, and the file is left alone. No
// records are returned with an error.
func Load(path string, now time.Time) ([]Record, error) {
	return limits{}.load(path, now)
}

func (l limits) load(path string, now time.Time) ([]Record, error) {
	// Non-blocking: opening a FIFO (or a device) for reading would wait for
	// a writer, and New with it. What is not a regular file is refused
	// below, before anything is read.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("disk: load snapshot: %w", err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("disk: load snapshot: %w", err)
	}
	if !info.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("disk: load snapshot: %s is not a regular file (%s)", path, info.Mode().Type())
	}
	recs, err := l.readSnapshot(f, info.Size(), now, path)
	f.Close() // read-only: nothing to lose; and it must be closed before a rename on Windows
	var ce *CorruptError
	if errors.As(err, &ce) {
		ce.Path = path
		moveAside(ce, info)
		return nil, ce
	}
	if err != nil {
		return nil, err
	}
	return recs, nil
}

// moveAside renames the corrupt file at ce.Path out of the way and records
// the outcome in ce. If a Save replaced the file since it was read, the new
// file is left alone.
func moveAside(ce *CorruptError, read fs.FileInfo) {
	cur, err := os.Stat(ce.Path)
	if err != nil {
		ce.MoveErr = err
		return
	}
	if !os.SameFile(cur, read) {
		ce.MoveErr = errors.New("a new snapshot replaced it meanwhile")
		return
	}
	moved := ce.Path + corruptInfix + strconv.FormatInt(time.Now().UnixNano(), 10)
	if err := os.Rename(ce.Path, moved); err != nil {
		ce.MoveErr = err
		return
	}
	ce.MovedTo = moved
}
