package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// table lays out rows in aligned columns. Unlike text/tabwriter it lets a
// row carry free-form lines (a value) without breaking the alignment of the
// rows around it.
type table struct {
	header []string
	rows   [][]string
	extra  [][]string // lines printed after each row, indented
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells); t.extra = append(t.extra, nil) }

// note adds a line under the last row.
func (t *table) note(line string) {
	t.extra[len(t.extra)-1] = append(t.extra[len(t.extra)-1], line)
}

func (t *table) write(w io.Writer) {
	width := make([]int, len(t.header))
	for i, h := range t.header {
		width[i] = utf8.RuneCountInString(h)
	}
	for _, r := range t.rows {
		for i, c := range r {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	line := func(cells []string) {
		var b strings.Builder
		for i, c := range cells {
			b.WriteString(c)
			if i < len(cells)-1 {
				b.WriteString(strings.Repeat(" ", width[i]-utf8.RuneCountInString(c)+2))
			}
		}
		fmt.Fprintln(w, b.String())
	}
	line(t.header)
	for i, r := range t.rows {
		line(r)
		for _, x := range t.extra[i] {
			fmt.Fprintln(w, "    "+x)
		}
	}
}

// writeJSON writes v indented, for -json.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// fmtBytes writes n bytes in binary units.
func fmtBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	f, i := float64(n), 0
	for f >= unit && i < 4 {
		f /= unit
		i++
	}
	return strconv.FormatFloat(f, 'f', 1, 64) + " " + [...]string{"", "KiB", "MiB", "GiB", "TiB"}[i]
}

// fmtTTL writes a remaining time to live: "none" for a key without expiry.
func fmtTTL(d time.Duration) string {
	switch {
	case d < 0:
		return "none"
	case d >= time.Minute:
		return d.Round(time.Second).String()
	case d >= time.Second:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Millisecond).String()
}

// fmtCount writes n, prefixed with "~" when it is an estimate.
func fmtCount(n int64, exact bool) string {
	if exact {
		return strconv.FormatInt(n, 10)
	}
	return "~" + strconv.FormatInt(n, 10)
}
