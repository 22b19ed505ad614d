package probe

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestCheck(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(status) }))
	defer srv.Close()
	ctx := context.Background()
	assert.NoError(t, Check(ctx, srv.URL+"/health", 5*time.Second))
	status = http.StatusServiceUnavailable
	assert.ErrorContains(t, Check(ctx, srv.URL+"/health", 5*time.Second), "503")
	srv.Close()
	assert.Error(t, Check(ctx, srv.URL+"/health", 5*time.Second), "nothing listening")
}
