package disk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"iter"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"testing/iotest"
	"time"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite the FuzzRead seed corpus in testdata/fuzz/FuzzRead")

// noExpiryBits is noExpiry as a record stores it.
const noExpiryBits = 1 << 63

// now is the clock of every test: records expiring after it are live.
var now = time.Date(2025, 6, 1, 12, 0, 0, 123456789, time.UTC)

// sample is a small snapshot that covers every kind of field.
func sample() []Record {
	return []Record{
		{Key: "tool:get_cart@1:user:42", Value: []byte(`{"items":[1,2,3]}`), ExpiresAt: now.Add(time.Hour + 1)},
		{Key: "", Value: []byte("empty key"), ExpiresAt: now.Add(time.Nanosecond)},
		{Key: "\x00\xff\n\x89ACSNAP", Value: nil, Flags: 1},
		{Key: "not utf-8 \xc3\x28", Value: []byte{}, Flags: 0xff, ExpiresAt: time.Unix(0, math.MaxInt64)},
		{Key: "ünïcødé", Value: []byte{0, 0, 0}, ExpiresAt: time.Date(2262, 4, 11, 23, 47, 16, 854775807, time.UTC)},
	}
}

func encode(t testing.TB, recs []Record) []byte {
	t.Helper()
	var buf bytes.Buffer
	n, err := Write(&buf, slices.Values(recs))
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	if n != len(recs) {
		t.Fatalf("Write wrote %d records, want %d", n, len(recs))
	}
	return buf.Bytes()
}

// streamOnly hides the Len method of a reader, so Read cannot know the size.
type streamOnly struct{ r io.Reader }

func (s streamOnly) Read(p []byte) (int, error) { return s.r.Read(p) }

// readers reads data both ways Read can: knowing its size and not.
var readers = []struct {
	name string
	new  func([]byte) io.Reader
}{
	{"sized", func(b []byte) io.Reader { return bytes.NewReader(b) }},
	{"stream", func(b []byte) io.Reader { return streamOnly{bytes.NewReader(b)} }},
	// One byte per Read, to exercise every refill path.
	{"bytewise", func(b []byte) io.Reader { return iotest.OneByteReader(bytes.NewReader(b)) }},
}

func checkRecords(t *testing.T, got, want []Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Key != w.Key || !bytes.Equal(g.Value, w.Value) || g.Value == nil ||
			!g.ExpiresAt.Equal(w.ExpiresAt) || g.ExpiresAt.IsZero() != w.ExpiresAt.IsZero() || g.Flags != w.Flags {
			t.Fatalf("record %d:\n got %q %q (nil %v) %v %d\nwant %q %q %v %d", i,
				g.Key, g.Value, g.Value == nil, g.ExpiresAt, g.Flags, w.Key, w.Value, w.ExpiresAt, w.Flags)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 300_000/16) // read straight into its slice
	many := make([]Record, 5000)
	for i := range many {
		many[i] = Record{
			Key:       fmt.Sprintf("k%d", i),
			Value:     bytes.Repeat([]byte{byte(i)}, i%300),
			ExpiresAt: now.Add(time.Duration(i+1) * time.Microsecond),
			Flags:     uint8(i),
		}
	}
	tests := []struct {
		name string
		recs []Record
	}{
		{"empty", nil},
		{"sample", sample()},
		{"longest key", []Record{{Key: strings.Repeat("k", MaxKeyLen), Value: []byte("v")}}},
		{"big values", []Record{{Key: "a", Value: big}, {Key: "b", Value: big[:bufferedValueLen+1]}, {Key: "c", Value: []byte("small")}}},
		{"many", many},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := encode(t, tt.recs)
			for _, rd := range readers {
				if rd.name == "bytewise" && len(data) > 1<<20 {
					continue
				}
				got, err := Read(rd.new(data), now)
				if err != nil {
					t.Fatalf("%s: Read: %v", rd.name, err)
				}
				checkRecords(t, got, tt.recs)
			}

			path := filepath.Join(t.TempDir(), "l1.snap")
			n, err := Save(path, slices.Values(tt.recs))
			if err != nil || n != len(tt.recs) {
				t.Fatalf("Save = %d, %v; want %d, nil", n, err, len(tt.recs))
			}
			got, err := Load(path, now)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			checkRecords(t, got, tt.recs)
		})
	}
}

func TestReadDropsExpired(t *testing.T) {
	recs := []Record{
		{Key: "expires exactly now", ExpiresAt: now},
		{Key: "expired a nanosecond ago", ExpiresAt: now.Add(-time.Nanosecond)},
		{Key: "expires in a nanosecond", ExpiresAt: now.Add(time.Nanosecond), Value: []byte("x")},
		{Key: "never expires", Value: []byte("y")},
		{Key: "expired before 1678", ExpiresAt: time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC)},
		{Key: "expired at the Unix epoch", ExpiresAt: time.Unix(0, 0)},
		{Key: "expired big value", ExpiresAt: now.Add(-time.Hour), Value: make([]byte, 200_000)},
		{Key: "expires after 2262", ExpiresAt: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC), Value: []byte("z")},
	}
	want := []Record{
		recs[2],
		recs[3],
		{Key: recs[7].Key, Value: recs[7].Value, ExpiresAt: time.Unix(0, math.MaxInt64)}, // clamped
	}
	data := encode(t, recs)
	for _, rd := range readers {
		t.Run(rd.name, func(t *testing.T) {
			got, err := Read(rd.new(data), now)
			if err != nil {
				t.Fatal(err)
			}
			checkRecords(t, got, want)
		})
	}

	t.Run("Load", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "snap")
		if _, err := Save(path, slices.Values(recs)); err != nil {
			t.Fatal(err)
		}
		got, err := Load(path, now)
		if err != nil {
			t.Fatal(err)
		}
		checkRecords(t, got, want)
	})

	t.Run("zero now drops nothing", func(t *testing.T) {
		got, err := Read(bytes.NewReader(data), time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(recs) {
			t.Fatalf("got %d records, want %d", len(got), len(recs))
		}
	})
}

func TestLoadMissing(t *testing.T) {
	dir := t.TempDir()
	for _, path := range []string{
		filepath.Join(dir, "none"),
		filepath.Join(dir, "no", "such", "dir", "snap"),
	} {
		recs, err := Load(path, now)
		if recs != nil || err != nil {
			t.Errorf("Load(%s) = %v, %v; want nil, nil", path, recs, err)
		}
	}
}

// checkCorrupt loads data from a file and checks that Load reports it as
// corrupt and moves it aside intact.
func checkCorrupt(t *testing.T, data []byte) *CorruptError {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "snap")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	recs, err := Load(path, now)
	var ce *CorruptError
	if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Load = %d records, %v; want a *CorruptError", len(recs), err)
	}
	if recs != nil {
		t.Errorf("Load returned %d records with its error", len(recs))
	}
	if ce.Path != path || !strings.HasPrefix(ce.MovedTo, path+".corrupt-") || ce.MoveErr != nil {
		t.Fatalf("CorruptError = %+v", ce)
	}
	if _, err := strconv.ParseInt(strings.TrimPrefix(ce.MovedTo, path+".corrupt-"), 10, 64); err != nil {
		t.Errorf("MovedTo %s does not end in unix nanoseconds", ce.MovedTo)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("corrupt file still at %s (%v)", path, err)
	}
	moved, err := os.ReadFile(ce.MovedTo)
	if err != nil || !bytes.Equal(moved, data) {
		t.Errorf("moved file differs from the original (%v)", err)
	}
	msg := ce.Error()
	if !strings.HasPrefix(msg, "disk: ") || !strings.Contains(msg, path) || !strings.Contains(msg, ce.MovedTo) {
		t.Errorf("error %q should start with disk: and name both paths", msg)
	}
	// A cold start follows: the path is free again.
	if recs, err := Load(path, now); recs != nil || err != nil {
		t.Errorf("second Load = %v, %v; want nil, nil", recs, err)
	}
	return ce
}

// checkReadCorrupt checks that Read reports data as corrupt whether or not
// it knows the size.
func checkReadCorrupt(t *testing.T, data []byte) {
	t.Helper()
	for _, rd := range readers {
		recs, err := Read(rd.new(data), now)
		var ce *CorruptError
		if !errors.As(err, &ce) || recs != nil || ce.Path != "" {
			t.Fatalf("%s: Read = %d records, %v; want a *CorruptError", rd.name, len(recs), err)
		}
	}
}

func TestLoadTruncated(t *testing.T) {
	data := encode(t, sample())
	for off := range len(data) {
		t.Run(strconv.Itoa(off), func(t *testing.T) {
			checkCorrupt(t, data[:off])
			checkReadCorrupt(t, data[:off])
		})
	}
}

func TestLoadBitFlip(t *testing.T) {
	data := encode(t, sample())
	for bit := range 8 * len(data) {
		t.Run(strconv.Itoa(bit), func(t *testing.T) {
			bad := bytes.Clone(data)
			bad[bit/8] ^= 1 << (bit % 8)
			checkCorrupt(t, bad)
			checkReadCorrupt(t, bad)
		})
	}
}

// withHeader returns data with its version field set to v and the header
// checksum fixed, as a writer of version v would have written it.
func withVersion(data []byte, v uint32) []byte {
	data = bytes.Clone(data)
	binary.LittleEndian.PutUint32(data[8:], v)
	binary.LittleEndian.PutUint32(data[12:], crc32.Checksum(data[:12], castagnoli))
	return data
}

// reseal recomputes the final checksum of a doctored snapshot, so that the
// checks before it are what rejects it.
func reseal(data []byte) []byte {
	body := data[:len(data)-trailerLen]
	return binary.LittleEndian.AppendUint32(bytes.Clone(body), crc32.Checksum(body, castagnoli))
}

func TestLoadRejects(t *testing.T) {
	valid := encode(t, sample())
	header := func(count uint64) []byte { return appendHeader(nil, now, count) }
	record := func(keyLen, valueLen uint32) []byte {
		b := binary.LittleEndian.AppendUint32(nil, keyLen)
		b = binary.LittleEndian.AppendUint32(b, valueLen)
		return append(binary.LittleEndian.AppendUint64(b, noExpiryBits), 0)
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

	tests := []struct {
		name string
		data []byte
		want string // in the error's description
	}{
		{"empty file", nil, "truncated"},
		{"wrong magic", cat([]byte("PK\x03\x04zip!"), valid[8:]), "magic"},
		{"text file", []byte("hello, this is not a snapshot at all\n"), "magic"},
		{"version 0", withVersion(valid, 0), "version 0"},
		{"trailing bytes", cat(valid, []byte{0}), "after the checksum"},
		{"header only", header(0), "truncated"},
		{"count too large", reseal(cat(header(math.MaxUint64), []byte{0, 0, 0, 0})), "cannot fit"},
		{"key too long", reseal(cat(header(1), record(MaxKeyLen+1, 0), []byte{0, 0, 0, 0})), "key length"},
		{"value too long", reseal(cat(header(1), record(0, MaxValueLen+1), []byte{0, 0, 0, 0})), "value length"},
		{"lengths past the end", reseal(cat(header(1), record(10, 1000), make([]byte, 10), []byte{0, 0, 0, 0})), "past the end"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ce := checkCorrupt(t, tt.data)
			if !strings.Contains(ce.Err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", ce.Err, tt.want)
			}
			checkReadCorrupt(t, tt.data)
		})
	}
}

func TestLoadFutureVersion(t *testing.T) {
	// A version 2 file, as far as this release can tell: a valid prefix
	// followed by who knows what.
	data := append(withVersion(encode(t, sample()), Version+1)[:prefixLen], "new stuff"...)
	path := filepath.Join(t.TempDir(), "snap")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	recs, err := Load(path, now)
	if !errors.Is(err, ErrUnsupportedVersion) || errors.Is(err, ErrCorrupt) || recs != nil {
		t.Fatalf("Load = %v, %v; want ErrUnsupportedVersion and no records", recs, err)
	}
	if msg := err.Error(); !strings.HasPrefix(msg, "disk: ") || !strings.Contains(msg, path) || !strings.Contains(msg, "version 2") {
		t.Errorf("error %q should start with disk:, name the file and its version", msg)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, data) {
		t.Error("Load moved or changed a newer snapshot")
	}
	for _, rd := range readers {
		if _, err := Read(rd.new(data), now); !errors.Is(err, ErrUnsupportedVersion) {
			t.Errorf("%s: Read: %v; want ErrUnsupportedVersion", rd.name, err)
		}
	}
}

func TestLoadNotAFile(t *testing.T) {
	path := t.TempDir() // a directory
	recs, err := Load(path, now)
	if err == nil || errors.Is(err, ErrCorrupt) || recs != nil || !strings.HasPrefix(err.Error(), "disk: ") {
		t.Fatalf("Load(directory) = %v, %v; want a plain disk: error", recs, err)
	}
	if info, err := os.Stat(path); err != nil || !info.IsDir() {
		t.Errorf("Load moved the directory: %v", err)
	}
}

func TestLoadUnreadable(t *testing.T) {
	if runtime.GOOS == "windows" || os.Geteuid() == 0 {
		t.Skip("needs Unix permissions and a user they apply to")
	}
	path := filepath.Join(t.TempDir(), "snap")
	if err := os.WriteFile(path, encode(t, sample()), 0o000); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path, now)
	if !errors.Is(err, os.ErrPermission) || errors.Is(err, ErrCorrupt) {
		t.Fatalf("Load = %v; want a permission error", err)
	}
}

func TestReadIOError(t *testing.T) {
	errBoom := errors.New("input/output error (simulated)")
	recs := append(sample(), Record{Key: "big", Value: make([]byte, 300_000)})
	data := encode(t, recs)
	for _, at := range []int{0, 10, 40, len(data) / 2, len(data) - 1, len(data)} {
		t.Run(strconv.Itoa(at), func(t *testing.T) {
			src := io.MultiReader(bytes.NewReader(data[:at]), iotest.ErrReader(errBoom))
			got, err := Read(src, now)
			if !errors.Is(err, errBoom) || errors.Is(err, ErrCorrupt) || got != nil || !strings.HasPrefix(err.Error(), "disk: ") {
				t.Fatalf("Read = %d records, %v; want a disk: error wrapping %v", len(got), err, errBoom)
			}
		})
	}
}

func TestLoadIOError(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(file, "snap") // a file where a directory should be
	recs, err := Load(path, now)
	if err == nil || errors.Is(err, ErrCorrupt) || recs != nil || !strings.HasPrefix(err.Error(), "disk: ") {
		t.Fatalf("Load = %v, %v; want a plain disk: error", recs, err)
	}
	if _, err := Save(path, slices.Values(sample())); err == nil || !strings.HasPrefix(err.Error(), "disk: ") {
		t.Fatalf("Save = %v; want a disk: error", err)
	}
}

// TestReadBoundsAllocation checks that lengths that lie cost no more memory
// than the bytes really there.
func TestReadBoundsAllocation(t *testing.T) {
	var lie []byte
	lie = appendHeader(lie, now, 1<<40)
	lie = binary.LittleEndian.AppendUint32(lie, 10)
	lie = binary.LittleEndian.AppendUint32(lie, MaxValueLen) // 64 MiB claimed
	lie = binary.LittleEndian.AppendUint64(lie, noExpiryBits)
	lie = append(lie, 0)
	lie = append(lie, "0123456789 and only a few bytes of value"...)

	for _, rd := range readers[:2] {
		t.Run(rd.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, err := Read(rd.new(lie), now)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Read: %v; want corrupt", err)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 2<<20 {
				t.Errorf("Read allocated %d bytes for a %d-byte input", alloc, len(lie))
			}
		})
	}
}

// TestMaxValueLen sets the value limit through the unexported limits, the
// package's only way to set one, to test it without 64 MiB values.
func TestMaxValueLen(t *testing.T) {
	for _, tt := range []struct {
		set  int
		want uint64
	}{
		{0, MaxValueLen},
		{-1, MaxValueLen},
		{1, 1},
		{math.MaxInt, maxValueLenCap},
	} {
		if got := (limits{maxValueLen: tt.set}).maxValue(); got != tt.want {
			t.Errorf("limits{maxValueLen: %d} limit = %d, want %d", tt.set, got, tt.want)
		}
	}

	small := limits{maxValueLen: 8}
	recs := []Record{{Key: "k", Value: []byte("123456789")}}
	if _, err := small.writeRecords(io.Discard, slices.Values(recs)); err == nil || !strings.HasPrefix(err.Error(), "disk: ") {
		t.Fatalf("Write of a 9-byte value with an 8-byte limit: %v", err)
	}
	data := encode(t, recs)
	if _, err := small.readRecords(bytes.NewReader(data), now); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Read of a 9-byte value with an 8-byte limit: %v", err)
	}
	got, err := limits{maxValueLen: 9}.readRecords(bytes.NewReader(data), now)
	if err != nil {
		t.Fatal(err)
	}
	checkRecords(t, got, recs)
}

// failAfter fails every write once limit bytes have gone through.
type failAfter struct {
	w     io.Writer
	limit int
}

var errDiskFull = errors.New("no space left on device (simulated)")

func (f *failAfter) Write(p []byte) (int, error) {
	if len(p) > f.limit {
		n, _ := f.w.Write(p[:f.limit])
		f.limit = 0
		return n, errDiskFull
	}
	f.limit -= len(p)
	return f.w.Write(p)
}

// panicAfter panics on the first write after limit bytes.
type panicAfter failAfter

func (p *panicAfter) Write(b []byte) (int, error) {
	if len(b) > p.limit {
		panic("writer exploded")
	}
	p.limit -= len(b)
	return p.w.Write(b)
}

func TestSaveFailureKeepsOldSnapshot(t *testing.T) {
	bigValues := make([]Record, 3000) // several write buffers' worth
	for i := range bigValues {
		bigValues[i] = Record{Key: strconv.Itoa(i), Value: make([]byte, 1000)}
	}
	newSize := len(encode(t, bigValues))

	tests := []struct {
		name    string
		recs    iter.Seq[Record]
		wrap    func(io.Writer) io.Writer
		wantErr error
	}{
		{"fails at once", slices.Values(bigValues), func(w io.Writer) io.Writer { return &failAfter{w, 0} }, errDiskFull},
		{"fails in the header", slices.Values(bigValues), func(w io.Writer) io.Writer { return &failAfter{w, 10} }, errDiskFull},
		{"fails midway", slices.Values(bigValues), func(w io.Writer) io.Writer { return &failAfter{w, newSize / 2} }, errDiskFull},
		{"fails on the checksum", slices.Values(bigValues), func(w io.Writer) io.Writer { return &failAfter{w, newSize - 2} }, errDiskFull},
		{"oversized key", func(yield func(Record) bool) {
			_ = yield(Record{Key: "fine"}) && yield(Record{Key: strings.Repeat("k", MaxKeyLen+1)})
		}, nil, nil},
		{"oversized value", slices.Values([]Record{{Key: "fine"}, {Key: "huge", Value: make([]byte, MaxValueLen+1)}}), nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "snap")
			if _, err := Save(path, slices.Values(sample())); err != nil {
				t.Fatal(err)
			}
			old, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}

			n, err := limits{}.save(path, tt.recs, tt.wrap)
			if err == nil || n != 0 || !strings.HasPrefix(err.Error(), "disk: ") {
				t.Fatalf("save = %d, %v; want 0 and a disk: error", n, err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("save error %v does not wrap %v", err, tt.wantErr)
			}
			checkOnlySnapshot(t, dir, path, old)
		})
	}

	t.Run("writer panics", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "snap")
		if _, err := Save(path, slices.Values(sample())); err != nil {
			t.Fatal(err)
		}
		old, _ := os.ReadFile(path)
		func() {
			defer func() {
				if recover() == nil {
					t.Error("the panic did not come through")
				}
			}()
			limits{}.save(path, slices.Values(bigValues), func(w io.Writer) io.Writer { return &panicAfter{w, newSize / 2} })
		}()
		checkOnlySnapshot(t, dir, path, old)
	})
}

// checkOnlySnapshot checks that dir holds the snapshot at path, unchanged,
// and nothing else.
func checkOnlySnapshot(t *testing.T, dir, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("the previous snapshot changed (%v)", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %q; want only %q", names, filepath.Base(path))
	}
	if recs, err := Load(path, now); err != nil || len(recs) != len(sample()) {
		t.Errorf("Load after the failed Save = %d records, %v", len(recs), err)
	}
}

func TestSavePermissions(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix permissions")
	}
	dir := filepath.Join(t.TempDir(), "created", "by", "save")
	path := filepath.Join(dir, "snap")
	for range 2 { // a new file, then a replacement
		if _, err := Save(path, slices.Values(sample())); err != nil {
			t.Fatal(err)
		}
		info, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if perm := info.Mode().Perm(); perm != 0o600 {
			t.Errorf("snapshot mode %v, want 0600", perm)
		}
		os.Chmod(path, 0o644) // Save must not inherit this
	}
	info, err := os.Stat(dir)
	if err != nil || !info.IsDir() {
		t.Fatalf("Save did not create the directory: %v", err)
	}
}

func TestSaveRemovesStaleTemps(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "snap")
	stale := filepath.Join(dir, "snap.tmp-123")
	fresh := filepath.Join(dir, "snap.tmp-456")     // a Save in progress elsewhere
	other := filepath.Join(dir, "other.tmp-789")    // not ours
	corrupt := filepath.Join(dir, "snap.corrupt-1") // kept for inspection
	for _, p := range []string{stale, fresh, other, corrupt} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-time.Hour)
	for _, p := range []string{stale, other, corrupt} {
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Save(path, slices.Values(sample())); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temporary file not removed: %v", err)
	}
	for _, p := range []string{fresh, other, corrupt} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s removed: %v", filepath.Base(p), err)
		}
	}
}

func TestSaveInvalidPath(t *testing.T) {
	if _, err := Save("", slices.Values(sample())); err == nil || !strings.HasPrefix(err.Error(), "disk: ") {
		t.Errorf("Save(\"\") = %v", err)
	}
	dir := t.TempDir()
	if _, err := Save(dir, slices.Values(sample())); err == nil {
		t.Error("Save over a directory succeeded")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("Save over a directory left %d files behind", len(entries))
	}
}

func TestCorruptErrorMessage(t *testing.T) {
	cause := errors.New("checksum mismatch")
	tests := []struct {
		err  *CorruptError
		want string
	}{
		{&CorruptError{Err: cause}, "disk: snapshot is corrupt: checksum mismatch"},
		{&CorruptError{Path: "/d/s", MovedTo: "/d/s.corrupt-1", Err: cause}, "disk: snapshot /d/s is corrupt: checksum mismatch; moved to /d/s.corrupt-1"},
		{&CorruptError{Path: "/d/s", Err: cause, MoveErr: errors.New("read-only file system")}, "disk: snapshot /d/s is corrupt: checksum mismatch; could not move it aside: read-only file system"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
		if !errors.Is(tt.err, ErrCorrupt) {
			t.Errorf("%v does not match ErrCorrupt", tt.err)
		}
	}
}

// TestSaveCrash kills a process that saves snapshots in a loop, at random
// moments, and checks that the file is always one whole snapshot.
func TestSaveCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	if path := os.Getenv("DISK_TEST_CRASH_PATH"); path != "" {
		saveForever(path)
		return
	}
	exe, err := os.Executable()
	if err != nil {
		t.Skip(err)
	}
	path := filepath.Join(t.TempDir(), "snap")
	if _, err := Save(path, crashSnapshot(0)); err != nil {
		t.Fatal(err)
	}
	var gens []uint8
	for i := range 10 {
		cmd := exec.Command(exe, "-test.run=^TestSaveCrash$")
		cmd.Env = append(os.Environ(), "DISK_TEST_CRASH_PATH="+path)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(50+i*23) * time.Millisecond)
		cmd.Process.Kill()
		cmd.Wait()

		recs, err := Load(path, now)
		if err != nil || len(recs) != crashRecords {
			t.Fatalf("kill %d: Load = %d records, %v", i, len(recs), err)
		}
		gen := recs[0].Flags
		for _, r := range recs {
			if r.Flags != gen {
				t.Fatalf("kill %d: records of generations %d and %d in one snapshot", i, gen, r.Flags)
			}
		}
		gens = append(gens, gen)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	t.Logf("generations found after each kill: %v; %d files in the directory (leftover temporaries of killed Saves)", gens, len(entries))
}

const crashRecords = 20_000

func crashSnapshot(gen uint8) iter.Seq[Record] {
	value := bytes.Repeat([]byte{gen}, 200)
	return func(yield func(Record) bool) {
		for i := range crashRecords {
			if !yield(Record{Key: strconv.Itoa(i), Value: value, Flags: gen}) {
				return
			}
		}
	}
}

func saveForever(path string) {
	for gen := uint8(1); ; gen++ {
		if _, err := Save(path, crashSnapshot(gen)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}

// seeds is the FuzzRead seed corpus: a valid snapshot, a truncated one and
// garbage.
func seeds(t testing.TB) map[string][]byte {
	recs, err := limits{}.collect(slices.Values(sample()))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := writeSnapshot(&buf, recs, now); err != nil { // a fixed creation time: stable seeds
		t.Fatal(err)
	}
	valid := buf.Bytes()
	return map[string][]byte{
		"valid":     valid,
		"truncated": valid[:len(valid)/2],
		"garbage":   []byte("\x89ACSNAP\n\x01\x00\x00\x00garbage that follows a plausible magic"),
	}
}

// TestFuzzSeeds checks the checked-in seed corpus, and rewrites it with
// -update-seeds.
func TestFuzzSeeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzRead")
	for name, data := range seeds(t) {
		file := filepath.Join(dir, name)
		if *updateSeeds {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(file, fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := os.Stat(file); err != nil {
			t.Errorf("seed %s missing (go test -run TestFuzzSeeds -update-seeds): %v", name, err)
		}
	}
	valid, err := os.ReadFile(filepath.Join(dir, "valid"))
	if err != nil {
		t.Fatal(err)
	}
	// The seed is Go syntax; pull the bytes back out to check the valid
	// snapshot still reads, so the fuzzer starts from a real one.
	body := strings.TrimSuffix(strings.TrimPrefix(string(valid), "go test fuzz v1\n[]byte("), ")\n")
	raw, err := strconv.Unquote(body)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := Read(strings.NewReader(raw), now)
	if err != nil {
		t.Fatalf("valid seed: %v", err)
	}
	checkRecords(t, recs, sample())
}

func FuzzRead(f *testing.F) {
	// The checked-in corpus in testdata/fuzz/FuzzRead is added by the
	// testing package.
	f.Fuzz(func(t *testing.T, data []byte) {
		sized, errSized := Read(bytes.NewReader(data), now)
		streamed, errStreamed := Read(streamOnly{bytes.NewReader(data)}, now)

		// Knowing the size only makes Read reject earlier; it never
		// changes the verdict.
		if errors.Is(errSized, ErrCorrupt) != errors.Is(errStreamed, ErrCorrupt) ||
			errors.Is(errSized, ErrUnsupportedVersion) != errors.Is(errStreamed, ErrUnsupportedVersion) ||
			(errSized == nil) != (errStreamed == nil) {
			t.Fatalf("sized: %v; streamed: %v", errSized, errStreamed)
		}
		if errSized != nil {
			if sized != nil || streamed != nil {
				t.Fatal("records returned with an error")
			}
			if !errors.Is(errSized, ErrCorrupt) && !errors.Is(errSized, ErrUnsupportedVersion) {
				t.Fatalf("in-memory input gave neither corrupt nor version error: %v", errSized)
			}
			return
		}
		checkRecords(t, streamed, sized)

		// Whatever reads must write and read back the same.
		var buf bytes.Buffer
		if _, err := Write(&buf, slices.Values(sized)); err != nil {
			t.Fatalf("Write of records Read accepted: %v", err)
		}
		again, err := Read(&buf, now)
		if err != nil {
			t.Fatalf("Read of a snapshot Write made: %v", err)
		}
		checkRecords(t, again, sized)
	})
}

func benchRecords(n int) []Record {
	recs := make([]Record, n)
	value := bytes.Repeat([]byte("v"), 128)
	for i := range recs {
		recs[i] = Record{
			Key:       fmt.Sprintf("agentcache:get_cart@3:u:%08d:{e7}:%016x", i, i*7919),
			Value:     value,
			ExpiresAt: now.Add(time.Duration(i+1) * time.Second),
		}
	}
	return recs
}

func BenchmarkSaveLoad(b *testing.B) {
	recs := benchRecords(100_000)
	path := filepath.Join(b.TempDir(), "snap")
	n, err := Save(path, slices.Values(recs))
	if err != nil || n != len(recs) {
		b.Fatal(n, err)
	}
	info, _ := os.Stat(path)
	b.SetBytes(info.Size())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Save(path, slices.Values(recs)); err != nil {
			b.Fatal(err)
		}
		got, err := Load(path, now)
		if err != nil || len(got) != len(recs) {
			b.Fatal(len(got), err)
		}
	}
}

func BenchmarkRead(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			data := encode(b, benchRecords(n))
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Read(bytes.NewReader(data), now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkWrite(b *testing.B) {
	recs := benchRecords(100_000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Write(io.Discard, slices.Values(recs)); err != nil {
			b.Fatal(err)
		}
	}
}

// TestLoadRefusesAFIFOWithoutBlocking: a FIFO at the snapshot's path would
// block a plain open until a writer came (and New with it).
func TestLoadRefusesAFIFOWithoutBlocking(t *testing.T) {
	path := filepath.Join(t.TempDir(), "snap")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skipf("no FIFOs here: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := Load(path, time.Now())
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("Load of a FIFO = %v, want a not-a-regular-file error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Load of a FIFO blocked")
	}
}
