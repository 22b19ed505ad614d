package adminapi

// tenantRegions answers GET /tenants/{id}/regions: where the tenant's data lives
// (tenancy.Residency).
func (s *Server) tenantRegions(c *call) error {
	r, err := s.Tenants.Residency(c.ctx(), c.tenant.ID)
	if err != nil {
		return err
	}
	return c.ok(200, r, nil)
}
