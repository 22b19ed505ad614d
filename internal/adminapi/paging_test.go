package adminapi

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// page and page_size are bounded: a page whose offset would overflow is a 422, never a 500
// or a negative OFFSET.
func TestPagingBounds(t *testing.T) {
	e := newEnv(t)
	for _, path := range []string{"/api/v1/admin/database-connections", "/api/v1/admin/tenants", "/api/v1/admin/audit"} {
		for _, q := range []string{"page=92233720368547759", "page=9223372036854775807", "page=-1", "page=0", "page_size=0", "page_size=101", "page=1000001"} {
			r := e.do("GET", path+"?"+q, e.admin, nil)
			assert.Equal(t, 422, r.Status, "%s?%s: %s", path, q, r.Body)
		}
		assert.Equal(t, 200, e.do("GET", path+"?page=1000000&page_size=100", e.admin, nil).Status, path)
	}
}
