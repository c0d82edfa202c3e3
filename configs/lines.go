package configs

import (
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// keyLines maps every key path written in a TOML document to the line it was
// written on, in the path syntax of keyerr ("account[1].sender_domains"), so
// that a value found bad after decoding can still be reported at its line.
// Tables and arrays of tables map to the line of their header.
func keyLines(doc []byte) map[string]int {
	lines := map[string]int{}
	p := unstable.Parser{}
	p.Reset(doc)
	counts := map[string]int{} // array-of-tables path -> entries seen
	var table string           // current table path, with indexes
	for p.NextExpression() {
		n := p.Expression()
		switch n.Kind {
		case unstable.Table, unstable.ArrayTable:
			// Resolve each prefix of the header against the arrays already
			// open, so [account.limits] under the second [[account]] becomes
			// account[1].limits.
			parts := keyParts(n.Key())
			path := ""
			for i, part := range parts {
				path = join(path, part)
				last := i == len(parts)-1
				if last && n.Kind == unstable.ArrayTable {
					idx := counts[path]
					counts[path] = idx + 1
					path += "[" + strconv.Itoa(idx) + "]"
				} else if c, ok := counts[path]; ok {
					path += "[" + strconv.Itoa(c-1) + "]"
				}
			}
			table = path
			if first := n.Child(); first != nil {
				lines[table] = line(&p, first)
			}
		case unstable.KeyValue:
			key := n.Key()
			var first *unstable.Node
			path := table
			for key.Next() {
				if first == nil {
					first = key.Node()
				}
				path = join(path, string(key.Node().Data))
			}
			if first != nil {
				lines[path] = line(&p, first)
				recordInline(&p, path, n.Value(), lines)
			}
		}
	}
	return lines
}

// recordInline records the keys of inline tables and the entries of arrays
// written on later lines ("listen = [\n  'a',\n  'b']").
func recordInline(p *unstable.Parser, path string, v *unstable.Node, lines map[string]int) {
	switch v.Kind {
	case unstable.Array:
		i := 0
		for it := v.Children(); it.Next(); i++ {
			child := it.Node()
			p2 := path + "[" + strconv.Itoa(i) + "]"
			if l := line(p, child); l > 0 {
				lines[p2] = l
			}
			recordInline(p, p2, child, lines)
		}
	case unstable.InlineTable:
		for it := v.Children(); it.Next(); {
			kv := it.Node()
			if kv.Kind != unstable.KeyValue {
				continue
			}
			key := kv.Key()
			sub := path
			var first *unstable.Node
			for key.Next() {
				if first == nil {
					first = key.Node()
				}
				sub = join(sub, string(key.Node().Data))
			}
			if first != nil {
				lines[sub] = line(p, first)
				recordInline(p, sub, kv.Value(), lines)
			}
		}
	}
}

func keyParts(it unstable.Iterator) []string {
	var parts []string
	for it.Next() {
		parts = append(parts, string(it.Node().Data))
	}
	return parts
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}

func line(p *unstable.Parser, n *unstable.Node) int {
	if n.Raw.Length == 0 && n.Raw.Offset == 0 {
		return 0
	}
	defer func() { recover() }() // a node whose range is not in the input: no line
	return p.Shape(n.Raw).Start.Line
}

// lineOf finds the line of key, or of its nearest written parent
// ("account[1].pool" falls back to the [[account]] header when pool was left
// out and a default was applied).
func lineOf(lines map[string]int, key string) int {
	for key != "" {
		if l, ok := lines[key]; ok && l > 0 {
			return l
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return 0
}
