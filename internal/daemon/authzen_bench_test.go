package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	authzv1 "github.com/neofast/neoauthz/proto/neoauthz/v1"
)

// BenchmarkAuthZENEvaluationVsCheck compares, on one real pdp with a warm cache, the same
// decision (Morty may read the todos: todos.read.tenant) asked through AuthZEN
// (POST /access/v1/evaluation, PEP token, JSON over HTTP/1.1 keep-alive) and through
// neoauthz.v1 Check (token subject, gRPC). Client and pdp share the machine.
func BenchmarkAuthZENEvaluationVsCheck(b *testing.B) {
	const morty = "CiRmZDE2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs"
	tw := newTodoWorld(b)
	pdp := tw.start(b, "authzen.json")
	body, err := json.Marshal(map[string]any{
		"subject":  map[string]any{"type": "user", "id": morty},
		"action":   map[string]any{"name": "can_read_todos"},
		"resource": map[string]any{"type": "todo", "id": "todo-1"},
	})
	require.NoError(b, err)
	want := []byte(`"decision":true`)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.Cleanup(client.CloseIdleConnections)
	evaluate := func() error {
		req, err := http.NewRequest(http.MethodPost, pdp.base+"/access/v1/evaluation", bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+pdp.pep)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		out, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || !bytes.Contains(out, want) {
			b.Fatalf("got %d %s %v", resp.StatusCode, out, err)
		}
		return nil
	}
	require.NoError(b, evaluate()) // warm: token, tenant, permission set

	api := authzv1.NewAuthorizationServiceClient(pdp.grpc)
	tok, err := tw.idp.Mint("todo-realm", map[string]any{"sub": morty, "aud": "neoauthz"})
	require.NoError(b, err)
	creq := &authzv1.CheckRequest{Subject: &authzv1.Subject{Kind: &authzv1.Subject_Token{Token: tok}}, Permission: "todos.read.tenant"}
	check := func() {
		res, err := api.Check(context.Background(), creq)
		if err != nil || !res.GetAllowed() {
			b.Fatalf("got %v, %v", res, err)
		}
	}
	check()

	b.Run("authzen-evaluation", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := evaluate(); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("neoauthz.v1-check", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				check()
			}
		})
	})
}
