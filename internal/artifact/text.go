package artifact

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode"
)

// WriteText writes a human-readable listing of the manifest, one line per
// entry in the style of ls -l. Paths and link targets that hold anything
// but printable characters are shown quoted and escaped: the manifest comes
// from the store, and a name carrying terminal escape sequences must not
// be able to rewrite what the operator sees.
func (m *Manifest) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	var files, dirs, links int
	for _, e := range m.Entries {
		switch e.Type {
		case TypeFile:
			files++
		case TypeDir:
			dirs++
		case TypeSymlink:
			links++
		}
	}
	fmt.Fprintf(bw, "format:  %d\n", m.Version)
	fmt.Fprintf(bw, "created: %s\n", m.Created.UTC().Format(time.RFC3339))
	fmt.Fprintf(bw, "tar:     %d bytes, sha256 %s\n", m.TarSize, printable(m.TarSHA256))
	fmt.Fprintf(bw, "entries: %d files (%d bytes), %d directories, %d symlinks\n", files, m.FileBytes(), dirs, links)
	for _, e := range m.Entries {
		switch e.Type {
		case TypeFile:
			fmt.Fprintf(bw, "%s %12d  %s  %s\n", modeString('-', e.Mode), e.Size, shortSum(e.SHA256), printable(e.Path))
		case TypeDir:
			fmt.Fprintf(bw, "%s %12s  %-12s  %s/\n", modeString('d', e.Mode), "-", "", printable(e.Path))
		case TypeSymlink:
			fmt.Fprintf(bw, "%s %12s  %-12s  %s -> %s\n", modeString('l', 0o777), "-", "", printable(e.Path), printable(e.Link))
		default:
			fmt.Fprintf(bw, "?%s %12d  %-12s  %s\n", printable(string(e.Type)), e.Size, "", printable(e.Path))
		}
	}
	return bw.Flush()
}

func modeString(kind byte, p Perm) string {
	const rwx = "rwxrwxrwx"
	b := []byte{kind}
	for i := range 9 {
		if p&(1<<(8-i)) != 0 {
			b = append(b, rwx[i])
		} else {
			b = append(b, '-')
		}
	}
	return string(b)
}

// shortSum is the first 12 hex digits of a checksum, enough to compare two
// listings by eye.
func shortSum(s string) string {
	if len(s) > 12 {
		s = s[:12]
	}
	return printable(s)
}

// printable returns s unchanged if every rune is printable and not a
// quote or backslash, and Go-quoted otherwise.
func printable(s string) string {
	for _, r := range s {
		if !unicode.IsPrint(r) || r == '"' || r == '\\' || r == unicode.ReplacementChar {
			return strconv.Quote(s)
		}
	}
	return s
}
