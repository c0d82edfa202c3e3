package policy

// literalSet finds, in one pass over a reply, which of many literal strings
// occur in it (Aho-Corasick). Every rule's "match" and "unless" strings and
// the literals each regexp needs (prefilter) are registered once; a reply is
// then scanned once instead of once per literal, and a rule only asks whether
// its literals' bits are set.
//
// The automaton is a dense table over the bytes that occur in some literal
// (every other byte maps to class 0), so a step is one table lookup.
type literalSet struct {
	ids     map[string]int32
	lits    []string
	users   [][]int32 // per literal: the rules (by index) that read it
	class   [256]uint16
	classes int
	delta   []int32   // state*classes + class -> next state
	out     [][]int32 // per state: literal ids ending here, suffixes included
}

func newLiteralSet() *literalSet {
	return &literalSet{ids: map[string]int32{}}
}

// add registers a literal and returns its id.
func (ls *literalSet) add(s string) int32 {
	if id, ok := ls.ids[s]; ok {
		return id
	}
	id := int32(len(ls.lits))
	ls.ids[s] = id
	ls.lits = append(ls.lits, s)
	ls.users = append(ls.users, nil)
	return id
}

// use records that rule reads literal id.
func (ls *literalSet) use(id, rule int32) {
	u := ls.users[id]
	if len(u) == 0 || u[len(u)-1] != rule {
		ls.users[id] = append(u, rule)
	}
}

// words is the size of the bit set a scan fills.
func (ls *literalSet) words() int { return (len(ls.lits) + 63) / 64 }

// build compiles the automaton once every literal is added.
func (ls *literalSet) build() {
	ls.classes = 1
	for _, l := range ls.lits {
		for i := 0; i < len(l); i++ {
			if ls.class[l[i]] == 0 {
				ls.class[l[i]] = uint16(ls.classes)
				ls.classes++
			}
		}
	}
	k := ls.classes
	// The trie, with -1 for a missing edge.
	goto_ := []int32{}
	newState := func() int32 {
		for i := 0; i < k; i++ {
			goto_ = append(goto_, -1)
		}
		ls.out = append(ls.out, nil)
		return int32(len(ls.out) - 1)
	}
	newState()
	for id, l := range ls.lits {
		s := int32(0)
		for i := 0; i < len(l); i++ {
			c := int32(ls.class[l[i]])
			if goto_[s*int32(k)+c] < 0 {
				n := newState()
				goto_[s*int32(k)+c] = n
			}
			s = goto_[s*int32(k)+c]
		}
		ls.out[s] = append(ls.out[s], int32(id))
	}
	// Breadth-first: failure links turn the trie into a full transition
	// table, and each state inherits the outputs of its failure state.
	ls.delta = make([]int32, len(goto_))
	fail := make([]int32, len(ls.out))
	queue := []int32{}
	for c := 0; c < k; c++ {
		if n := goto_[c]; n >= 0 {
			ls.delta[c] = n
			queue = append(queue, n)
		}
	}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		if f := fail[s]; len(ls.out[f]) > 0 {
			ls.out[s] = append(ls.out[s], ls.out[f]...)
		}
		for c := 0; c < k; c++ {
			n := goto_[s*int32(k)+int32(c)]
			if n < 0 {
				ls.delta[s*int32(k)+int32(c)] = ls.delta[fail[s]*int32(k)+int32(c)]
				continue
			}
			ls.delta[s*int32(k)+int32(c)] = n
			fail[n] = ls.delta[fail[s]*int32(k)+int32(c)]
			queue = append(queue, n)
		}
	}
}

// scan sets in bits the ids of the literals that occur in text, and in
// rules the rules that read one of them.
func (ls *literalSet) scan(text []byte, bits, rules []uint64) {
	clear(bits)
	clear(rules)
	k := int32(ls.classes)
	s := int32(0)
	for _, b := range text {
		s = ls.delta[s*k+int32(ls.class[b])]
		for _, id := range ls.out[s] {
			if bits[id>>6]&(1<<(id&63)) != 0 {
				continue
			}
			bits[id>>6] |= 1 << (id & 63)
			for _, r := range ls.users[id] {
				rules[r>>6] |= 1 << (r & 63)
			}
		}
	}
}

func has(bits []uint64, id int32) bool { return bits[id>>6]&(1<<(id&63)) != 0 }

func hasAny(bits []uint64, ids []int32) bool {
	for _, id := range ids {
		if has(bits, id) {
			return true
		}
	}
	return false
}
