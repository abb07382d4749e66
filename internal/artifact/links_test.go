package artifact

import (
	"strconv"
	"strings"
	"testing"
)

func TestLinkResolution(t *testing.T) {
	dir := func(p string) Entry { return Entry{Path: p, Type: TypeDir, Mode: ModeExec} }
	file := func(p string) Entry {
		return Entry{Path: p, Type: TypeFile, Mode: ModeFile, SHA256: strings.Repeat("0", 64)}
	}
	link := func(p, to string) Entry { return Entry{Path: p, Type: TypeSymlink, Link: to} }
	cases := []struct {
		name    string
		entries []Entry
		bad     string // the entry that must be refused, "" if none
	}{
		{"sibling", []Entry{file("a"), link("l", "a")}, ""},
		{"up and down", []Entry{dir("d"), dir("d/e"), file("x"), link("d/e/l", "../../x")}, ""},
		{"to root", []Entry{dir("d"), link("d/l", "..")}, ""},
		{"dot", []Entry{link("l", ".")}, ""},
		{"dangling inside", []Entry{link("l", "nothing/here")}, ""},
		{"one too far", []Entry{dir("d"), link("d/l", "../..")}, "d/l"},
		{"absolute", []Entry{link("l", "/etc")}, "l"},
		{"out and back in", []Entry{dir("d"), link("d/l", "../../root/d")}, "d/l"},
		{"dangling then up", []Entry{link("l", "nothing/../..")}, "l"},
		{"through a file", []Entry{file("f"), link("l", "f/../..")}, "l"},
		{"through a link to the root", []Entry{dir("a"), dir("a/b"), link("a/b/up", "../.."), link("a/esc", "b/up/..")}, "a/esc"},
		{"through an absolute link", []Entry{link("abs", "/"), link("l", "abs/etc")}, "abs"},
		{"chain inside", []Entry{dir("d"), link("l1", "d"), link("l2", "l1/../l1"), link("l3", "l2/.")}, ""},
		{"loop", []Entry{link("a", "b"), link("b", "a")}, "a"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := Manifest{TarSize: 1 << 20, TarSHA256: strings.Repeat("0", 64), Entries: c.entries}
			_, err := m.validate("k")
			switch {
			case c.bad == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.bad != "" && err == nil:
				t.Fatalf("accepted; want %q refused", c.bad)
			case c.bad != "" && !strings.Contains(err.Error(), `"`+c.bad+`"`):
				t.Fatalf("error %q does not name %q", err, c.bad)
			}
		})
	}
}

// TestLinkResolutionBounded checks that a manifest built to make link
// resolution expensive is refused or accepted quickly.
func TestLinkResolutionBounded(t *testing.T) {
	entries := []Entry{link0("l0", ".")}
	for i := 1; i < 2000; i++ {
		entries = append(entries, link0("l"+strconv.Itoa(i), strings.Repeat("l"+strconv.Itoa(i-1)+"/", 40)))
	}
	m := Manifest{TarSize: 1, TarSHA256: strings.Repeat("0", 64), Entries: entries}
	if _, err := m.validate("k"); err == nil {
		t.Fatal("a chain of 2000 links, each through 40 others, was accepted")
	}
}

func link0(p, to string) Entry { return Entry{Path: p, Type: TypeSymlink, Link: to} }
