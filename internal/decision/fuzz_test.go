package decision

import (
	"strings"
	"testing"
)

func FuzzParseCode(f *testing.F) {
	for _, s := range []string{"docs.read.own", "*.*.*", "a.b.platform", "a..b", "x.y.z.w", "A.b.own", "do*.r.own"} {
		f.Add(uint8(1), s)
		f.Add(uint8(2), s)
	}
	f.Fuzz(func(t *testing.T, level uint8, s string) {
		c, err := ParseCode(Level(level), s)
		if err != nil {
			return
		}
		if got := c.String(); got != s {
			t.Fatalf("got %q, want %q re-serialised", got, s)
		}
		// A concrete code is also a valid code-check request naming the same thing.
		if !c.AnyResource && !c.AnyAction && c.Scope != ScopeAny {
			r, a, sc, has, err := ParseRequest(Level(level), s)
			if err != nil || r != c.Resource || a != c.Action || sc != c.Scope || !has {
				t.Fatalf("request parse of %q: got %q %q %v %v %v", s, r, a, sc, has, err)
			}
		}
	})
}

func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{"docs.read.own", "docs.read", "*.read", "a.b.c.d", ".", "a.b.platform"} {
		f.Add(uint8(1), s)
		f.Add(uint8(2), s)
	}
	f.Fuzz(func(t *testing.T, level uint8, s string) {
		r, a, sc, has, err := ParseRequest(Level(level), s)
		if err != nil {
			return
		}
		if strings.Contains(s, "*") {
			t.Fatalf("accepted a wildcard in %q", s)
		}
		got := r + "." + a
		if has {
			got += "." + sc.Name(Level(level))
		}
		if got != s {
			t.Fatalf("got %q, want %q re-serialised", got, s)
		}
	})
}

func FuzzUnmarshalSet(f *testing.F) {
	for _, in := range []Input{
		tenantFx().role("ed", "docs.*.team", "x.y.own").assign("ed", "t1").deny("docs.write.*", "t2").member("t1").teams().in,
		platformFx().grant("*.*.platform", "acme").in,
		tenantFx().grant("Bad", "").in,
	} {
		set, err := Compile(in, t0)
		if err != nil {
			f.Fatal(err)
		}
		b, _ := set.MarshalBinary()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		set, err := UnmarshalSet(b)
		if err != nil {
			return
		}
		for _, p := range []string{"docs.read.own", "docs.read.platform", "docs.read", "x.y.team"} {
			_, _ = set.Check(t0, request(p, nil))
			_, _ = set.Check(t0, request(p, res("u1", "t1")))
		}
		_ = set.ListPermissions(t0, []string{"docs.read.own"})
		again, err := set.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := UnmarshalSet(again); err != nil {
			t.Fatalf("re-encoding of an accepted set does not decode: %v", err)
		}
	})
}
