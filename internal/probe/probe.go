// Package probe is the health check the binaries run on themselves (`pdp probe`, `admin
// probe`): container images without a shell or curl use it for their HEALTHCHECK.
package probe

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// Check GETs url and succeeds on a 200 answer within timeout.
func Check(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}
