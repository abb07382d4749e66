package artifact

import (
	"errors"
	"path"
	"strings"
)

// maxLinkHops is Linux's limit on symlinks followed in one path lookup.
const maxLinkHops = 40

// node is an entry in the tree that link resolution walks.
type node struct {
	parent   *node
	entry    *Entry
	children map[string]*node
}

// checkLinks makes sure every symlink in entries resolves inside the
// artifact, following the other symlinks of the artifact the way the kernel
// would. Checking a target on its own is not enough: with a link "a/up" to
// "../..", which is the root itself, a link "a/esc" to "up/.." looks like
// it stays inside ("a/up/.." is "a") but in fact climbs out of the root.
//
// The entries must have passed the per-entry checks of validate, so every
// parent is an earlier directory entry.
func checkLinks(entries []Entry, ix entryIndex) (string, error) {
	root := &node{children: map[string]*node{}}
	nodes := make([]node, len(entries))
	for i := range entries {
		e := &entries[i]
		parent := root
		if dir := path.Dir(e.Path); dir != "." {
			parent = &nodes[ix[dir]]
		}
		n := &nodes[i]
		n.parent, n.entry = parent, e
		if e.Type == TypeDir {
			n.children = map[string]*node{}
		}
		parent.children[path.Base(e.Path)] = n
	}
	for i := range entries {
		if entries[i].Type == TypeSymlink {
			if err := resolve(root, nodes[i].parent, entries[i].Link); err != nil {
				return entries[i].Path, err
			}
		}
	}
	return "", nil
}

var errOutside = errors.New("resolves outside the artifact")

// resolve walks target from the directory dir. Components that name nothing
// in the artifact (a dangling link, or a path through a file) are followed
// lexically, which errs on the side of refusing.
//
// The walk is bounded in hops and in steps: a hostile manifest of many long
// chained links must cost a bounded amount of work per byte of manifest,
// not a product of its sizes.
func resolve(root, dir *node, target string) error {
	if strings.HasPrefix(target, "/") {
		return errors.New("absolute target")
	}
	var stack []string
	push := func(t string) {
		parts := strings.Split(t, "/")
		for i := len(parts) - 1; i >= 0; i-- {
			stack = append(stack, parts[i])
		}
	}
	push(target)
	budget := 4*len(stack) + 256
	cur, virtual, hops := dir, 0, 0
	for steps := 0; len(stack) > 0; steps++ {
		if steps > budget {
			return errors.New("too many steps to resolve through other symlinks")
		}
		c := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		switch {
		case c == "" || c == ".":
		case c == "..":
			switch {
			case virtual > 0:
				virtual--
			case cur == root:
				return errOutside
			default:
				cur = cur.parent
			}
		case virtual > 0:
			virtual++
		default:
			child := cur.children[c]
			switch {
			case child == nil || child.entry.Type == TypeFile:
				virtual++
			case child.entry.Type == TypeDir:
				cur = child
			default:
				if hops++; hops > maxLinkHops {
					return errors.New("too many levels of symlinks")
				}
				if strings.HasPrefix(child.entry.Link, "/") {
					return errors.New("passes through an absolute symlink")
				}
				push(child.entry.Link)
			}
		}
	}
	return nil
}
