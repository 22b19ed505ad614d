package registry

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// MaxServedRegions bounds how many regions one process may be limited to.
const MaxServedRegions = 64

// Regions is the set of regions a process serves (a pdp's -regions). The zero value serves
// every region; a non-empty set serves only its members, so data of another region is never
// read, listened to or connected to.
type Regions struct {
	codes []string // sorted, distinct; nil = every region
}

// ParseRegions reads a comma-separated list of region codes ("" or only spaces: every
// region). Each code must be a slug (ValidSlug: lowercase letters, digits, inner dashes, at
// most 63 characters); an empty element, a bad code or more than MaxServedRegions codes is an
// error naming the offending element by position, never echoing more than a valid code.
func ParseRegions(s string) (Regions, error) {
	if strings.TrimSpace(s) == "" {
		return Regions{}, nil
	}
	parts := strings.Split(s, ",")
	if len(parts) > MaxServedRegions {
		return Regions{}, fmt.Errorf("regions: at most %d region codes", MaxServedRegions)
	}
	codes := make([]string, 0, len(parts))
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if !ValidSlug(p) {
			return Regions{}, fmt.Errorf("regions: element %d is not a region code (lowercase letters, digits and inner dashes, at most 63 characters, e.g. eu-west-1)", i+1)
		}
		codes = append(codes, p)
	}
	slices.Sort(codes)
	return Regions{codes: slices.Compact(codes)}, nil
}

// All reports whether every region is served.
func (r Regions) All() bool { return r.codes == nil }

// Serves reports whether data of region code may be read: always with the zero value,
// otherwise only for a member. An empty code (no region known) is served only by the zero
// value, so an unknown placement is never taken for a served one.
func (r Regions) Serves(code string) bool {
	if r.codes == nil {
		return true
	}
	_, ok := slices.BinarySearch(r.codes, code)
	return ok
}

// Codes returns the served codes in order, nil for every region.
func (r Regions) Codes() []string { return slices.Clone(r.codes) }

// String is the comma-separated list ("" for every region), as ParseRegions reads it.
func (r Regions) String() string { return strings.Join(r.codes, ",") }

// ErrUnknownRegion is returned by CheckServedRegions for a code the registry does not hold.
var ErrUnknownRegion = errors.New("unknown region")

// CheckServedRegions compares r with the registry: a code that is not a registered region is
// an error (ErrUnknownRegion, naming every such code: a typo would otherwise leave a process
// serving nothing); inactive lists the codes of registered regions that are not active.
func (s *Store) CheckServedRegions(ctx context.Context, r Regions) (inactive []string, err error) {
	if r.All() {
		return nil, nil
	}
	regions, err := s.ListRegions(ctx)
	if err != nil {
		return nil, fmt.Errorf("read regions: %w", err)
	}
	known := make(map[string]bool, len(regions))
	for _, reg := range regions {
		known[reg.Code] = reg.IsActive
	}
	var unknown []string
	for _, code := range r.codes {
		active, ok := known[code]
		switch {
		case !ok:
			unknown = append(unknown, code)
		case !active:
			inactive = append(inactive, code)
		}
	}
	if len(unknown) > 0 {
		return inactive, fmt.Errorf("%w: %s (the admin database has no such region; create it first or correct -regions)",
			ErrUnknownRegion, strings.Join(unknown, ", "))
	}
	return inactive, nil
}

// AnalyticsDatabase returns the active analytics database of a region: the first by name, so
// the decision log's writers and readers pick the same one every time. ErrNotFound when the
// region has none.
func (s *Store) AnalyticsDatabase(ctx context.Context, region string) (Connection, error) {
	conns, err := s.ListConnections(ctx, ConnectionFilter{Type: TypeAnalytics, RegionCode: region, ActiveOnly: true})
	if err != nil {
		return Connection{}, err
	}
	if len(conns) == 0 {
		return Connection{}, fmt.Errorf("region %q has no active analytics database: %w", region, ErrNotFound)
	}
	return conns[0], nil
}
