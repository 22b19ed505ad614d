package authn

// CachedTokenBytes is the verified-token cache's estimate of what it holds.
func CachedTokenBytes(v *Validator) int64 { return v.tokens.Bytes() }
