package decision

import (
	"fmt"
	"runtime"
	"testing"
)

// benchInput is a realistic heavy user: 150 grants (10 of them wildcards) through roles and
// direct permissions, 5 denies, team restrictions and memberships.
func benchInput() Input {
	f := tenantFx().teams().member("t1")
	var admin, editor []string
	for i := range 70 {
		admin = append(admin, fmt.Sprintf("res%d.act%d.tenant", i%35, i/35))
	}
	for i := range 60 {
		editor = append(editor, fmt.Sprintf("res%d.act%d.team", i%30, 2+i/30))
	}
	wild := []string{"docs.*.own", "*.export.team", "reports.*.*", "res1.*.tenant", "*.audit.own",
		"res2.act9.*", "res3.*.team", "*.list.tenant", "billing.*.own", "res4.act4.*"}
	f.role("admin", admin...).role("editor", editor...).role("wild", wild...).inherits("editor", "wild")
	f.assign("admin", "").assign("editor", "t2")
	for i := range 10 {
		f.grant(fmt.Sprintf("direct%d.read.team", i), "")
	}
	f.deny("res5.act0.tenant", "").deny("reports.delete.*", "").deny("res7.*.team", "t3").
		deny("docs.write.own", "").deny("*.purge.*", "")
	return f.in
}

func benchSet(tb testing.TB) *Set {
	set, err := Compile(benchInput(), t0)
	if err != nil {
		tb.Fatal(err)
	}
	return set
}

func benchRequests() map[string]Request {
	return map[string]Request{
		"code/allow":     {Permission: "res10.act1.team"},
		"code/wildcard":  {Permission: "reports.view.tenant"},
		"code/deny":      {Permission: "reports.delete.own"},
		"code/none":      {Permission: "nothing.here.own"},
		"resource/allow": {Permission: "res12.act3", HasResource: true, Resource: Resource{OwnerID: "u2", Group: "t3"}},
		"resource/deny":  {Permission: "res7.act2", HasResource: true, Resource: Resource{OwnerID: "u2", Group: "t3"}},
		"resource/none":  {Permission: "res12.act3", HasResource: true, Resource: Resource{OwnerID: "u2", Group: "t9"}},
	}
}

func BenchmarkCheck(b *testing.B) {
	set := benchSet(b)
	for name, req := range benchRequests() {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := set.Check(t0, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkCompile(b *testing.B) {
	in := benchInput()
	set := benchSet(b)
	enc, _ := set.MarshalBinary()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	keep := make([]*Set, 0, 64)
	for range 64 {
		s, _ := Compile(in, t0)
		keep = append(keep, s)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	heapPerSet := float64(after.HeapAlloc-before.HeapAlloc) / float64(len(keep))
	runtime.KeepAlive(keep)

	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(in, t0); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(enc)), "encoded-bytes/set")
	b.ReportMetric(heapPerSet, "heap-bytes/set")
}

func BenchmarkUnmarshalSet(b *testing.B) {
	enc, err := benchSet(b).MarshalBinary()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := UnmarshalSet(enc); err != nil {
			b.Fatal(err)
		}
	}
}
